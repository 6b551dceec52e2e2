package authz

import (
	"bytes"
	"fmt"
	"maps"
	"testing"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// processingCorpus is valid and odd ProcessingRequests: what Envoy sends
// for each phase, then merged and repeated fields, oneof fields replacing
// each other, unknown fields, declared fields of another wire type,
// headers protobuf reads but headerMap folds (case, repeats, raw values),
// invalid UTF-8, open enum values, truncations.
func processingCorpus(t testing.TB) map[string][]byte {
	valid := func(r *extprocv3.ProcessingRequest) []byte {
		b, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	plan, err := structpb.NewStruct(map[string]any{"plan": "sealed-plan-bytes", "rectify": map[string]any{"a": 1.5, "b": []any{"x", true, nil}}})
	if err != nil {
		t.Fatal(err)
	}
	md := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.filters.http.ext_authz": plan}}
	hm := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":authority", RawValue: []byte("crm.internal")}, {Key: ":path", RawValue: []byte("/api/contacts")},
		{Key: ":method", RawValue: []byte("GET")}, {Key: ":scheme", RawValue: []byte("http")},
		{Key: "x-gdpr-roles", RawValue: []byte("agent")}, {Key: "X-Request-Id", Value: "lg-1"},
		{Key: "accept", Value: "a", RawValue: []byte("b")}, {Key: "accept", Value: "c"}, {Key: ":path", RawValue: []byte("/again")},
		{Key: "", Value: ""}, {Key: "Ünïcode", RawValue: []byte("\xff raw bytes")},
	}}
	pc := &extprocv3.ProtocolConfiguration{ResponseBodyMode: filterv3.ProcessingMode_STREAMED, RequestBodyMode: filterv3.ProcessingMode_BUFFERED, SendBodyWithoutWaitingForHeaderResponse: true}
	reqHeaders := valid(&extprocv3.ProcessingRequest{
		Request:         &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: hm, EndOfStream: true}},
		MetadataContext: md, ProtocolConfig: pc,
	})
	respHeaders := valid(&extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: ":status", RawValue: []byte("200")}, {Key: "content-type", RawValue: []byte("application/json")},
		}}}},
		MetadataContext: md,
	})
	respBody := valid(&extprocv3.ProcessingRequest{
		Request:         &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte(`{"data":[]}`), EndOfStream: true}},
		MetadataContext: md, ObservabilityMode: true,
	})
	reqBody := valid(&extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte(`{"phone":"1"}`), EndOfStream: true,
			EndOfStreamWithoutMessage: true, GrpcMessageCompressed: true, DrainComplete: true}},
	})
	trailers := valid(&extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{Trailers: hm}},
	})
	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	bytesField := func(num protowire.Number, parts ...[]byte) []byte {
		var v []byte
		for _, p := range parts {
			v = append(v, p...)
		}
		return protowire.AppendBytes(tag(num, protowire.BytesType), v)
	}
	varint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(tag(num, protowire.VarintType), v)
	}
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	// headers wraps HeaderValue entries into a request headers message.
	headers := func(entries ...[]byte) []byte {
		return bytesField(2, bytesField(1, entries...))
	}
	entry := func(fields ...[]byte) []byte { return bytesField(1, fields...) }
	cases := map[string][]byte{
		"empty":                          {},
		"request headers":                reqHeaders,
		"response headers":               respHeaders,
		"response body":                  respBody,
		"request body":                   reqBody,
		"trailers (proto's)":             trailers,
		"empty headers message":          bytesField(2),
		"empty header map":               bytesField(3, bytesField(1)),
		"empty body":                     bytesField(5),
		"body then headers (oneof)":      cat(respBody, respHeaders),
		"headers twice (merged)":         cat(reqHeaders, reqHeaders),
		"header map twice":               bytesField(2, bytesField(1, entry(bytesField(1, []byte("a")))), bytesField(1, entry(bytesField(1, []byte("a"))))),
		"body twice, same field":         cat(respBody, respBody),
		"body field twice":               bytesField(5, bytesField(1, []byte("a")), bytesField(1, []byte("bb")), varint(2, 1)),
		"metadata twice":                 cat(respBody, bytesField(8, bytesField(1, bytesField(1, []byte("k"))))),
		"protocol config twice":          cat(reqHeaders, bytesField(11, varint(1, 2))),
		"enum out of range":              bytesField(11, varint(2, 1<<40|7)),
		"negative enum":                  bytesField(11, varint(2, 0xffffffffffffffff)),
		"bool as 2":                      cat(varint(10, 2), bytesField(5, varint(2, 300))),
		"observability as bytes":         cat(respBody, bytesField(10, []byte("x"))),
		"headers as varint":              varint(2, 1),
		"body as fixed32":                protowire.AppendFixed32(tag(5, protowire.Fixed32Type), 1),
		"eos as bytes":                   bytesField(5, bytesField(2, []byte("x"))),
		"unknown top-level field":        cat(respBody, bytesField(99, []byte("x"))),
		"unknown varint field":           cat(varint(98, 1), respHeaders),
		"attributes":                     cat(respHeaders, bytesField(9, bytesField(1, []byte("k")))),
		"flow control":                   cat(respHeaders, bytesField(12)),
		"headers attributes":             bytesField(3, bytesField(2, bytesField(1, []byte("k")))),
		"unknown header value field":     headers(entry(bytesField(1, []byte("a")), bytesField(4, []byte("x")))),
		"header value key as varint":     headers(entry(varint(1, 1))),
		"header key twice":               headers(entry(bytesField(1, []byte("a")), bytesField(1, []byte("B")), bytesField(2, []byte("v")))),
		"raw value empty keeps value":    headers(entry(bytesField(1, []byte("a")), bytesField(2, []byte("v")), bytesField(3))),
		"value after raw value":          headers(entry(bytesField(3, []byte("r")), bytesField(2, []byte("v")), bytesField(1, []byte("k")))),
		"repeated header joined":         headers(entry(bytesField(1, []byte("Set")), bytesField(2, []byte("1"))), entry(bytesField(1, []byte("set")), bytesField(2, []byte("2")))),
		"repeated pseudo header":         headers(entry(bytesField(1, []byte(":path")), bytesField(2, []byte("/a"))), entry(bytesField(1, []byte(":PATH")), bytesField(2, []byte("/b")))),
		"header entry not HeaderValue":   bytesField(2, bytesField(1, varint(1, 1))),
		"invalid utf-8 header key":       headers(entry(bytesField(1, []byte("\xff")))),
		"invalid utf-8 header value":     headers(entry(bytesField(1, []byte("a")), bytesField(2, []byte("\xc3")))),
		"invalid utf-8 raw value":        headers(entry(bytesField(1, []byte("a")), bytesField(3, []byte("\xc3")))),
		"invalid utf-8 metadata key":     cat(respBody, bytesField(8, bytesField(1, bytesField(1, []byte("\xff"))))),
		"group":                          cat(respBody, tag(50, protowire.StartGroupType), tag(50, protowire.EndGroupType)),
		"field number 0":                 cat(respBody, []byte{0x02, 0x00}),
		"bad length":                     cat(respBody, []byte{0x2a, 0x7f}),
		"bad varint":                     cat(respBody, []byte{0x50, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}),
		"metadata before the oneof":      cat(bytesField(8), bytesField(3)),
		"metadata with typed metadata":   cat(respBody, bytesField(8, bytesField(2, bytesField(1, []byte("k"))))),
		"request body then request body": cat(reqBody, bytesField(4, bytesField(1, []byte("x")))),
	}
	// Metadata by hand: md(namespace entries...), ns(key, struct
	// fields...), sf(key, value fields...) a Struct entry.
	str := func(num protowire.Number, v string) []byte { return bytesField(num, []byte(v)) }
	sf := func(key string, value ...[]byte) []byte {
		return bytesField(1, str(1, key), bytesField(2, value...))
	}
	ns := func(key string, fields ...[]byte) []byte { return bytesField(1, str(1, key), bytesField(2, fields...)) }
	mdMsg := func(entries ...[]byte) []byte {
		return cat(bytesField(8, entries...), bytesField(5, varint(2, 1)))
	}
	number := protowire.AppendFixed64(tag(2, protowire.Fixed64Type), 0x400921fb54442d18)
	deep := str(3, "leaf")
	for i := 0; i < maxValidDepth+3; i++ {
		deep = bytesField(5, sf("k", deep))
	}
	for name, b := range map[string][]byte{
		"metadata kinds":                  mdMsg(ns("a", sf("n", number), sf("s", str(3, "x")), sf("b", varint(4, 1)), sf("z", varint(1, 0)), sf("l", bytesField(6, bytesField(1, str(3, "y")), bytesField(1), bytesField(1, bytesField(6)))), sf("st", bytesField(5)))),
		"metadata empty value":            mdMsg(ns("a", sf("e"))),
		"metadata null out of range":      mdMsg(ns("a", sf("z", varint(1, 1<<33|5)))),
		"metadata key twice in a struct":  mdMsg(ns("a", sf("k", str(3, "1")), sf("k", str(3, "2")))),
		"metadata namespace twice":        mdMsg(ns("a", sf("k", str(3, "1"))), ns("a", sf("j", str(3, "2")))),
		"metadata entry without value":    mdMsg(bytesField(1, str(1, "a"))),
		"metadata entry without key":      mdMsg(bytesField(1, bytesField(2, sf("k", str(3, "v"))))),
		"metadata entry key twice":        mdMsg(bytesField(1, str(1, "a"), str(1, "b"), bytesField(2))),
		"metadata entry value first":      mdMsg(bytesField(1, bytesField(2, sf("k", varint(4, 0))), str(1, "a"))),
		"metadata entry value twice":      mdMsg(bytesField(1, str(1, "a"), bytesField(2, sf("k", varint(4, 1))), bytesField(2, sf("j", varint(4, 1))))),
		"metadata entry unknown field":    mdMsg(bytesField(1, str(1, "a"), str(3, "x"))),
		"metadata entry key as varint":    mdMsg(bytesField(1, varint(1, 1))),
		"struct entry without value":      mdMsg(ns("a", bytesField(1, str(1, "k")))),
		"struct entry value twice":        mdMsg(ns("a", bytesField(1, str(1, "k"), bytesField(2, str(3, "a")), bytesField(2, varint(4, 1))))),
		"value of two kinds":              mdMsg(ns("a", sf("k", str(3, "a"), varint(4, 1)))),
		"value string twice":              mdMsg(ns("a", sf("k", str(3, "a"), str(3, "b")))),
		"value struct twice (merged)":     mdMsg(ns("a", sf("k", bytesField(5, sf("x", varint(4, 1))), bytesField(5, sf("y", varint(4, 1)))))),
		"value unknown field":             mdMsg(ns("a", sf("k", str(9, "a")))),
		"value string as varint":          mdMsg(ns("a", sf("k", varint(3, 1)))),
		"value number as varint":          mdMsg(ns("a", sf("k", varint(2, 1)))),
		"value invalid utf-8 string":      mdMsg(ns("a", sf("k", str(3, "\xff")))),
		"struct invalid utf-8 key":        mdMsg(ns("a", sf("\xc3", varint(4, 1)))),
		"namespace invalid utf-8 key":     mdMsg(ns("\xfe")),
		"list of a non-value":             mdMsg(ns("a", sf("l", bytesField(6, varint(1, 1))))),
		"list unknown field":              mdMsg(ns("a", sf("l", bytesField(6, str(2, "x"))))),
		"deep metadata":                   mdMsg(ns("a", sf("k", deep))),
		"struct unknown field":            mdMsg(ns("a", str(2, "x"))),
		"metadata truncated struct entry": mdMsg(ns("a", []byte{0x0a, 0x05, 0x0a})),
	} {
		cases[name] = b
	}
	for _, base := range []struct {
		name string
		b    []byte
	}{{"request headers", reqHeaders}, {"response body", respBody}} {
		for i := 0; i < len(base.b); i += 7 {
			cases[fmt.Sprintf("%s truncated at %d", base.name, i)] = base.b[:i]
		}
	}
	return cases
}

// The fast reading of a ProcessingRequest is proto.Unmarshal's: it accepts
// exactly what proto.Unmarshal accepts, and gives the same message, the
// headers aside, which it gives as headerMap reads proto's.
func TestProcessingRequestAsProto(t *testing.T) {
	fast := 0
	for name, b := range processingCorpus(t) {
		t.Run(name, func(t *testing.T) {
			if processingAsProto(t, b) {
				fast++
			}
		})
	}
	if fast < 30 {
		t.Errorf("only %d cases took the fast path", fast)
	}
}

func FuzzProcessingRequestAsProto(f *testing.F) {
	for _, b := range processingCorpus(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { processingAsProto(t, b) })
}

// processingAsProto compares decodeInbound with proto.Unmarshal on b and
// reports whether the fast path took it.
func processingAsProto(t *testing.T, b []byte) bool {
	t.Helper()
	var want extprocv3.ProcessingRequest
	wantErr := proto.Unmarshal(b, &want)
	in := &inbound{}
	aliased, gotErr := decodeInbound(b, in)
	if (wantErr == nil) != (gotErr == nil) {
		t.Fatalf("error %v (fast %v), proto.Unmarshal's %v", gotErr, in.fast, wantErr)
	}
	if wantErr != nil {
		return false
	}
	// Not aliased, the received bytes are freed at once: nothing may point
	// into them.
	if body := in.req.GetResponseBody().GetBody(); aliased != within(body, b) {
		t.Fatalf("aliased %v, the body in the received bytes %v", aliased, within(body, b))
	}
	if in.fast && aliased != (len(want.GetResponseBody().GetBody()) > 0) {
		t.Fatalf("the fast reading aliased %v a response body of %d bytes", aliased, len(want.GetResponseBody().GetBody()))
	}
	if body := in.req.GetRequestBody().GetBody(); len(body) > 0 && within(body, b) {
		t.Fatal("a request body aliases the received bytes: it must outlive them")
	}
	for _, h := range []*extprocv3.HttpHeaders{want.GetRequestHeaders(), want.GetResponseHeaders()} {
		if h == nil {
			continue
		}
		gotH := in.req.GetRequestHeaders()
		if gotH == nil {
			gotH = in.req.GetResponseHeaders()
		}
		if got, exp := in.headers(gotH), headerMap(h.GetHeaders()); !maps.Equal(got, exp) {
			t.Fatalf("headers\n%q\nheaderMap of proto.Unmarshal's\n%q", got, exp)
		}
		if in.fast {
			// The fast reading leaves the list out: compare the rest.
			h.Headers = nil
		}
	}
	if !proto.Equal(&in.req, &want) {
		t.Fatalf("decoded (fast %v)\n%v\nproto.Unmarshal\n%v", in.fast, &in.req, &want)
	}
	// The metadata outlives the received bytes (the stream keeps it):
	// none of its strings may point into them.
	c := bytes.Clone(b)
	in2 := &inbound{}
	if _, err := decodeInbound(c, in2); err != nil {
		t.Fatal(err)
	}
	for i := range c {
		c[i] = 0xee
	}
	if !proto.Equal(in2.req.GetMetadataContext(), want.GetMetadataContext()) {
		t.Fatalf("metadata changed with the received bytes\n%v\nproto.Unmarshal\n%v", in2.req.GetMetadataContext(), want.GetMetadataContext())
	}
	return in.fast
}

func within(sub, b []byte) bool {
	if len(sub) == 0 || len(b) == 0 {
		return false
	}
	p, lo := uintptr(unsafe.Pointer(&sub[0])), uintptr(unsafe.Pointer(&b[0]))
	return p >= lo && p < lo+uintptr(len(b))
}

// Envoy sends the same metadata with every message of a stream: it is
// decoded once, and decoded again when it changes.
func TestProcessingMetadataDecodedOncePerStream(t *testing.T) {
	msg := func(plan string) []byte {
		s, err := structpb.NewStruct(map[string]any{"plan": plan})
		if err != nil {
			t.Fatal(err)
		}
		b, err := proto.Marshal(&extprocv3.ProcessingRequest{
			Request:         &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{EndOfStream: true}},
			MetadataContext: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"ns": s}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	in := &inbound{}
	read := func(b []byte) *corev3.Metadata {
		t.Helper()
		if _, err := decodeInbound(b, in); err != nil {
			t.Fatal(err)
		}
		if !in.fast {
			t.Fatal("not read by the fast path")
		}
		md := in.req.GetMetadataContext()
		in.release()
		return md
	}
	first := read(msg("a"))
	if read(msg("a")) != first {
		t.Error("the same metadata was decoded again")
	}
	second := read(msg("b"))
	if second == first || second.GetFilterMetadata()["ns"].GetFields()["plan"].GetStringValue() != "b" {
		t.Errorf("changed metadata read as %v", second)
	}
	if first.GetFilterMetadata()["ns"].GetFields()["plan"].GetStringValue() != "a" {
		t.Errorf("the earlier metadata changed: %v", first)
	}
}
