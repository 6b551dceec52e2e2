package authz

import (
	"bytes"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gdprgate/gdprgate/internal/gate"
)

// responseCorpus is the answers the processor sends (as extproc.go and
// extproc_stream.go build them) and odd ones: what the encoder leaves to
// proto.Marshal, and what proto.Marshal refuses.
func responseCorpus() map[string]*extprocv3.ProcessingResponse {
	big := bytes.Repeat([]byte(`{"id":"c-1","name":"x"},`), 2000)
	common := func(c *extprocv3.CommonResponse) *extprocv3.ProcessingResponse {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: c}}}
	}
	mut := &extprocv3.HeaderMutation{RemoveHeaders: slices.Clone(gate.Forgeable),
		SetHeaders: []*corev3.HeaderValueOption{setHeader(gate.HeaderDecisionID, "d-1"), setHeader("content-length", "12"), setHeader("", "")}}
	return map[string]*extprocv3.ProcessingResponse{
		"empty": {},
		"request headers": {Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{
			Response: &extprocv3.CommonResponse{HeaderMutation: mut}}},
			ModeOverride: &filterv3.ProcessingMode{ResponseHeaderMode: filterv3.ProcessingMode_SEND, ResponseBodyMode: filterv3.ProcessingMode_BUFFERED}},
		"empty mode override":    {Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}, ModeOverride: &filterv3.ProcessingMode{}},
		"all modes and drains":   {ModeOverride: &filterv3.ProcessingMode{RequestHeaderMode: 1, ResponseHeaderMode: 2, RequestBodyMode: 3, ResponseBodyMode: 4, RequestTrailerMode: 1, ResponseTrailerMode: -5}, RequestDrain: true, RequestDrainRequests: true, RequestDrainResponses: true},
		"response headers":       {Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{}}}}},
		"headers with a body":    {Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{Status: extprocv3.CommonResponse_CONTINUE_AND_REPLACE, BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: big}}}}}},
		"small body":             common(&extprocv3.CommonResponse{HeaderMutation: mut, BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: []byte(`{"data":[]}`)}}}),
		"big body":               common(&extprocv3.CommonResponse{HeaderMutation: mut, ClearRouteCache: true, BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: big}}}),
		"empty body (set)":       common(&extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{}}}),
		"clear body":             common(&extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_ClearBody{ClearBody: true}}}),
		"clear body false (set)": common(&extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_ClearBody{}}}),
		"no mutation":            common(&extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{}}),
		"empty body response":    {Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}},
		"request body":           {Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader(gate.HeaderCommSensitivity, "3")}}}}}},
		"chunk":                  chunkBody([]byte(`{"data":[{"id":1}`)),
		"big chunk":              chunkBody(big),
		"duplex body":            duplexBody([]byte("part"), false),
		"duplex end":             duplexBody(nil, true),
		"big duplex end":         duplexBody(big, true),
		"streamed flags":         common(&extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{EndOfStreamWithoutMessage: true, GrpcMessageCompressed: true, DrainComplete: true}}}}),
		"immediate":              immediate(403, []byte(`{"error":"denied"}`), "d-2", map[string]string{"www-authenticate": "Bearer", "content-type": "text/plain"}),
		"immediate empty":        {Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{}}},
		"immediate big body":     immediate(502, big, "d-3", nil),
		"request trailers":       {Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}},
		"response trailers":      {Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{HeaderMutation: &extprocv3.HeaderMutation{RemoveHeaders: gate.ContentDerived()}}}},
		"header value and raw":   {Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "k", Value: "v", RawValue: []byte("r")}, KeepEmptyValue: true}, {}}}}}}},
		// Left to proto.Marshal.
		"dynamic metadata":       {DynamicMetadata: &structpb.Struct{}},
		"typed dynamic metadata": {TypedDynamicMetadata: map[string]*anypb.Any{"k": {}}},
		"message timeout":        {OverrideMessageTimeout: durationpb.New(1)},
		"window update":          {ServerWindowUpdate: &extprocv3.ProcessingResponse_ServerWindowUpdate{}},
		"streamed immediate":     {Response: &extprocv3.ProcessingResponse_StreamedImmediateResponse{StreamedImmediateResponse: &extprocv3.StreamedImmediateResponse{}}},
		"nil headers response":   {Response: &extprocv3.ProcessingResponse_ResponseHeaders{}},
		"nil body response":      {Response: &extprocv3.ProcessingResponse_ResponseBody{}},
		"nil trailers response":  {Response: &extprocv3.ProcessingResponse_ResponseTrailers{}},
		"nil immediate":          {Response: &extprocv3.ProcessingResponse_ImmediateResponse{}},
		"nil streamed response":  common(&extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{}}}),
		"common trailers":        common(&extprocv3.CommonResponse{Trailers: &corev3.HeaderMap{}}),
		"grpc status":            {Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{GrpcStatus: &extprocv3.GrpcStatus{}}}},
		"header append":          common(&extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Append: wrapperspb.Bool(true)}}}}),
		"nil header option":      common(&extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{nil}}}),
		// Refused by proto.Marshal.
		"invalid utf-8 header key":    common(&extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("\xff", "v")}}}),
		"invalid utf-8 removal":       common(&extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{RemoveHeaders: []string{"ok", "\xc3"}}}),
		"invalid utf-8 details":       {Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{Details: "\xff", Status: &typev3.HttpStatus{Code: 500}}}},
		"invalid utf-8 in a big body": common(&extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{RemoveHeaders: []string{"\xff"}}, BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: big}}}),
	}
}

// The hand-written answers are proto.Marshal's: the same message, the same
// size, the body apart only when big enough, and nothing written that
// proto.Marshal refuses.
func TestProcessingResponseAsProto(t *testing.T) {
	written := 0
	for name, r := range responseCorpus() {
		t.Run(name, func(t *testing.T) {
			for _, apartMin := range []int{0, 1, zeroCopyMin} {
				if responseAsProto(t, r, apartMin) && apartMin == 0 {
					written++
				}
			}
		})
	}
	if written < 25 {
		t.Errorf("only %d answers written by hand", written)
	}
}

func FuzzProcessingResponseAsProto(f *testing.F) {
	for _, r := range responseCorpus() {
		if b, err := proto.Marshal(r); err == nil {
			f.Add(b, uint16(0))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, apartMin uint16) {
		var r extprocv3.ProcessingResponse
		if proto.Unmarshal(b, &r) != nil {
			return
		}
		responseAsProto(t, &r, int(apartMin))
	})
}

// responseAsProto compares appendProcessingResponse with proto.Marshal and
// reports whether the encoder wrote r.
func responseAsProto(t *testing.T, r *extprocv3.ProcessingResponse, apartMin int) bool {
	t.Helper()
	want, wantErr := proto.Marshal(r)
	prefix := []byte("prefix")
	out, apart, ok := appendProcessingResponse(prefix, r, apartMin)
	if !ok {
		return false
	}
	if wantErr != nil {
		t.Fatalf("wrote an answer proto.Marshal refuses (%v)", wantErr)
	}
	if !bytes.HasPrefix(out, prefix) {
		t.Fatal("the encoder did not append")
	}
	if apart != nil && (apartMin == 0 || len(apart) < apartMin) {
		t.Fatalf("a body of %d bytes apart with apartMin %d", len(apart), apartMin)
	}
	got := append(out[len(prefix):len(out):len(out)], apart...)
	if len(got) != len(want) {
		t.Errorf("%d bytes written, proto.Marshal writes %d", len(got), len(want))
	}
	var dec extprocv3.ProcessingResponse
	if err := proto.Unmarshal(got, &dec); err != nil {
		t.Fatalf("written answer does not decode: %v", err)
	}
	if !proto.Equal(&dec, r) {
		t.Fatalf("written answer decodes to\n%v\nwant\n%v", &dec, r)
	}
	return true
}

// Every field of the messages the encoder writes is either written or
// makes it give way to proto.Marshal: a field go-control-plane adds must be
// added to one of the two lists here, and to the encoder.
func TestProcessingWireCoversEveryField(t *testing.T) {
	known := map[protoreflect.Message][]protoreflect.Name{
		(&extprocv3.ProcessingResponse{}).ProtoReflect(): {"request_headers", "response_headers", "request_body", "response_body",
			"request_trailers", "response_trailers", "immediate_response", "mode_override", "request_drain", "request_drain_requests",
			"request_drain_responses",
			// given way:
			"streamed_immediate_response", "dynamic_metadata", "override_message_timeout", "typed_dynamic_metadata", "server_window_update"},
		(&filterv3.ProcessingMode{}).ProtoReflect():        {"request_header_mode", "response_header_mode", "request_body_mode", "response_body_mode", "request_trailer_mode", "response_trailer_mode"},
		(&extprocv3.HeadersResponse{}).ProtoReflect():      {"response"},
		(&extprocv3.BodyResponse{}).ProtoReflect():         {"response"},
		(&extprocv3.TrailersResponse{}).ProtoReflect():     {"header_mutation"},
		(&extprocv3.CommonResponse{}).ProtoReflect():       {"status", "header_mutation", "body_mutation", "clear_route_cache", "trailers"},
		(&extprocv3.HeaderMutation{}).ProtoReflect():       {"set_headers", "remove_headers"},
		(&extprocv3.BodyMutation{}).ProtoReflect():         {"body", "clear_body", "streamed_response"},
		(&extprocv3.StreamedBodyResponse{}).ProtoReflect(): {"body", "end_of_stream", "end_of_stream_without_message", "grpc_message_compressed", "drain_complete"},
		(&extprocv3.ImmediateResponse{}).ProtoReflect():    {"status", "headers", "body", "details", "grpc_status"},
		(&typev3.HttpStatus{}).ProtoReflect():              {"code"},
		(&corev3.HeaderValueOption{}).ProtoReflect():       {"header", "append", "append_action", "keep_empty_value"},
		(&corev3.HeaderValue{}).ProtoReflect():             {"key", "value", "raw_value"},
	}
	for m, names := range known {
		fields := m.Descriptor().Fields()
		for i := 0; i < fields.Len(); i++ {
			if name := fields.Get(i).Name(); !slices.Contains(names, name) {
				t.Errorf("%s.%s is new: teach the ext_proc encoder (extprocwire.go) about it", m.Descriptor().FullName(), name)
			}
		}
	}
}
