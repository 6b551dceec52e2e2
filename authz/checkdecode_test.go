package authz

import (
	"fmt"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// sampleHeaders are a request's headers with the odd ones a reader must
// keep: an empty name, an empty value, a long value.
func sampleHeaders() map[string]string {
	return map[string]string{":method": "GET", ":path": "/api/contacts/c-1", "x-gdpr-roles": "agent", "": "", "empty": "", "long": string(make([]byte, 300))}
}

// marshalCheck is r's wire form.
func marshalCheck(t testing.TB, r *authv3.CheckRequest) []byte {
	t.Helper()
	b, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sampleCheckRequest(headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 5555}}}}},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(timestamppb.Now().AsTime()),
			Http: &authv3.AttributeContext_HttpRequest{
				Id: "1", Method: "GET", Path: "/api/contacts/c-1", Host: "crm.local", Protocol: "HTTP/1.1",
				Headers: headers, Body: "b", RawBody: []byte("raw"),
			},
		},
		ContextExtensions: map[string]string{"k": "v"},
		MetadataContext:   &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"ns": {Fields: map[string]*structpb.Value{"a": structpb.NewStringValue("b")}}}},
	}}
}

// decodeCheckRequest reads every CheckRequest as proto.Unmarshal does:
// the same message from valid bytes (merged occurrences, unknown fields,
// odd map entries included), an error where it errs.
func TestDecodeCheckRequestAsProto(t *testing.T) {
	valid := func(r *authv3.CheckRequest) []byte { return marshalCheck(t, r) }
	base := valid(sampleCheckRequest(sampleHeaders()))
	// HttpRequest bytes inside the request, to build odd entries: a
	// second CheckRequest whose http holds only the given raw field.
	withHTTPField := func(field []byte) []byte {
		http := field
		req := protowire.AppendTag(nil, 2, protowire.BytesType)
		req = protowire.AppendBytes(req, http)
		attrs := protowire.AppendTag(nil, 4, protowire.BytesType)
		attrs = protowire.AppendBytes(attrs, req)
		top := protowire.AppendTag(nil, 1, protowire.BytesType)
		return protowire.AppendBytes(top, attrs)
	}
	entry := func(parts ...[]byte) []byte {
		var e []byte
		for _, p := range parts {
			e = append(e, p...)
		}
		f := protowire.AppendTag(nil, 3, protowire.BytesType)
		return protowire.AppendBytes(f, e)
	}
	str := func(num protowire.Number, s string) []byte {
		b := protowire.AppendTag(nil, num, protowire.BytesType)
		return protowire.AppendString(b, s)
	}
	cases := map[string][]byte{
		"no headers":           valid(sampleCheckRequest(nil)),
		"headers":              base,
		"empty":                {},
		"merged occurrences":   append(append([]byte{}, base...), valid(sampleCheckRequest(map[string]string{"x-gdpr-roles": "admin", "other": "1"}))...),
		"entry without key":    append(append([]byte{}, base...), withHTTPField(entry(str(2, "v")))...),
		"entry twice the key":  append(append([]byte{}, base...), withHTTPField(entry(str(1, "a"), str(1, "b"), str(2, "v")))...),
		"entry unknown field":  append(append([]byte{}, base...), withHTTPField(entry(str(1, "a"), str(3, "x")))...),
		"entry varint key":     append(append([]byte{}, base...), withHTTPField(entry(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 5)))...),
		"invalid utf-8 value":  append(append([]byte{}, base...), withHTTPField(entry(str(1, "a"), str(2, "\xff")))...),
		"invalid utf-8 key":    append(append([]byte{}, base...), withHTTPField(entry(str(1, "\xfe")))...),
		"headers as varint":    append(append([]byte{}, base...), withHTTPField(protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 1))...),
		"attributes as varint": append(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1), base...),
	}
	for i := 0; i < len(base); i += 7 {
		cases[fmt.Sprintf("truncated at %d", i)] = base[:i]
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			var want, got authv3.CheckRequest
			wantErr := proto.Unmarshal(b, &want)
			gotErr := decodeCheckRequest(b, &got)
			if (wantErr == nil) != (gotErr == nil) {
				t.Fatalf("error %v, proto.Unmarshal's %v", gotErr, wantErr)
			}
			if wantErr == nil && !proto.Equal(&got, &want) {
				t.Errorf("decoded\n%v\nproto.Unmarshal\n%v", &got, &want)
			}
		})
	}
}
