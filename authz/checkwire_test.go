package authz

import (
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The hand-written Check answer decodes to exactly the message it was
// written from, whatever its shape: allow, deny, error, nested metadata,
// lengths that need one, two and three varint bytes.
func TestCheckWireDecodesToTheSameMessage(t *testing.T) {
	long := strings.Repeat("v", 200)
	huge := strings.Repeat("é", 20000)
	cases := map[string]*authv3.CheckResponse{
		"empty":           {},
		"empty parts":     {Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}, DynamicMetadata: &structpb.Struct{}},
		"negative status": {Status: &rpcstatus.Status{Code: -3, Message: "odd"}},
		"allow": {
			Status: &rpcstatus.Status{Code: 0},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers:                 []*corev3.HeaderValueOption{header("x-gdpr-decision-id", "d-1"), {Header: &corev3.HeaderValue{Key: "k", RawValue: []byte("raw")}, KeepEmptyValue: true}},
				HeadersToRemove:         []string{"x-gdpr-coverage", "", long},
				ResponseHeadersToAdd:    []*corev3.HeaderValueOption{header("x-gdpr-coverage", long), {Header: &corev3.HeaderValue{Key: "p", Value: "v"}}, {}},
				QueryParametersToRemove: []string{"q"},
			}},
			DynamicMetadata: mustStruct(t, map[string]any{
				"decision_id": "d-1", "plan": huge, "empty": "", "n": 3.5, "zero": 0.0, "t": true, "f": false, "null": nil,
				"nested": map[string]any{"a": []any{"x", 1.0, false, nil, map[string]any{}, []any{}}},
			}),
		},
		"deny": {
			Status: &rpcstatus.Status{Code: 7, Message: "route_not_mapped"},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}, Headers: []*corev3.HeaderValueOption{header("content-type", "application/json")}, Body: huge,
			}},
			DynamicMetadata: mustStruct(t, map[string]any{"decision_id": "d-2"}),
		},
		"deny without status": {HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{Status: &typev3.HttpStatus{}}}},
		"error":               {HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{Body: "x"}}},
		"empty value":         {DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{"k": {}}}},
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			b, ok := appendCheckResponse([]byte("prefix"), want)
			if !ok {
				t.Fatal("not written")
			}
			if string(b[:6]) != "prefix" {
				t.Fatal("prefix lost")
			}
			got := &authv3.CheckResponse{}
			if err := proto.Unmarshal(b[6:], got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, want) {
				t.Errorf("decodes to\n%v\nwant\n%v", got, want)
			}
			std, err := proto.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			if len(std) != len(b)-6 {
				t.Errorf("%d bytes, proto.Marshal writes %d", len(b)-6, len(std))
			}
		})
	}
}

// What the encoder does not write is left to proto.Marshal, which also
// reports invalid UTF-8 as it always did.
func TestCheckWireLeavesTheRestToProto(t *testing.T) {
	ok := func(o *authv3.OkHttpResponse) *authv3.CheckResponse {
		return &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: o}}
	}
	cases := map[string]*authv3.CheckResponse{
		"status details":        {Status: &rpcstatus.Status{Details: []*anypb.Any{{}}}},
		"deprecated append":     ok(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "k"}, Append: wrapperspb.Bool(true)}}}),
		"query parameter set":   ok(&authv3.OkHttpResponse{QueryParametersToSet: []*corev3.QueryParameter{{Key: "k"}}}),
		"ok dynamic metadata":   ok(&authv3.OkHttpResponse{DynamicMetadata: &structpb.Struct{}}),
		"nil ok response":       ok(nil),
		"nil header option":     ok(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{nil}}),
		"invalid utf-8 header":  ok(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{header("k", "\xff")}}),
		"invalid utf-8 remove":  ok(&authv3.OkHttpResponse{HeadersToRemove: []string{"\xff"}}),
		"invalid utf-8 message": {Status: &rpcstatus.Status{Message: "\xfe"}},
		"invalid utf-8 key":     {DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{"\xff": structpb.NewStringValue("v")}}},
		"nil metadata value":    {DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{"k": nil}}},
		"nil list item":         {DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{"k": structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{nil}})}}},
		"nil denied":            {HttpResponse: &authv3.CheckResponse_DeniedResponse{}},
	}
	for name, r := range cases {
		t.Run(name, func(t *testing.T) {
			if _, ok := appendCheckResponse(nil, r); ok {
				t.Error("written by hand")
			}
		})
	}
}

// The encoder knows every field of the messages it writes: a new field in
// go-control-plane (or protobuf's well-known types) must be added to it,
// or to its list of fields left to proto.Marshal, before it can be lost.
func TestCheckWireCoversEveryField(t *testing.T) {
	known := []struct {
		m      proto.Message
		fields []protoreflect.FieldNumber
	}{
		{&authv3.CheckResponse{}, []protoreflect.FieldNumber{1, 2, 3, 4, 5}},
		{&rpcstatus.Status{}, []protoreflect.FieldNumber{1, 2, 3}},
		{&authv3.OkHttpResponse{}, []protoreflect.FieldNumber{2, 3, 5, 6, 7, 8}},
		{&authv3.DeniedHttpResponse{}, []protoreflect.FieldNumber{1, 2, 3}},
		{&typev3.HttpStatus{}, []protoreflect.FieldNumber{1}},
		{&corev3.HeaderValueOption{}, []protoreflect.FieldNumber{1, 2, 3, 4}},
		{&corev3.HeaderValue{}, []protoreflect.FieldNumber{1, 2, 3}},
		{&structpb.Struct{}, []protoreflect.FieldNumber{1}},
		{&structpb.Value{}, []protoreflect.FieldNumber{1, 2, 3, 4, 5, 6}},
		{&structpb.ListValue{}, []protoreflect.FieldNumber{1}},
	}
	for _, k := range known {
		fds := k.m.ProtoReflect().Descriptor().Fields()
		var have []protoreflect.FieldNumber
		for i := range fds.Len() {
			have = append(have, fds.Get(i).Number())
		}
		slices.Sort(have)
		if !slices.Equal(have, k.fields) {
			t.Errorf("%s has fields %v, the encoder knows %v", k.m.ProtoReflect().Descriptor().FullName(), have, k.fields)
		}
	}
}
