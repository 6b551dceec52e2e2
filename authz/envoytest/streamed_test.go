package envoytest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// streamBody is what the streaming tests' backend returns: 37 bytes, five 8-byte chunks.
const streamBody = `aaaaaaaabbbbbbbbccccccccddddddddeeeee`

func streamMode(body extprocfilterv3.ProcessingMode_BodySendMode) *extprocfilterv3.ProcessingMode {
	return &extprocfilterv3.ProcessingMode{
		RequestHeaderMode:  extprocfilterv3.ProcessingMode_SEND,
		ResponseHeaderMode: extprocfilterv3.ProcessingMode_SEND,
		ResponseBodyMode:   body,
	}
}

// runStreamed sends GET /export through an emulator whose backend answers body with a
// content-length, chunked by 8 bytes.
func runStreamed(t *testing.T, p *fakeProc, opts Options, body string) *Response {
	t.Helper()
	opts.Proc = procConn(t, p)
	opts.Upstream = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("content-type", "application/json")
		_, _ = io.WriteString(w, body)
	})
	if opts.MessageTimeout == 0 {
		opts.MessageTimeout = testTimeout
	}
	if opts.StreamChunkSize == 0 {
		opts.StreamChunkSize = 8
	}
	e := New(opts)
	defer e.Close()
	resp, err := e.Do(context.Background(), get(t, "/export", nil))
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func chunksOf(reqs []*extprocv3.ProcessingRequest) (chunks []string, eos []bool) {
	for _, r := range reqs {
		if b := r.GetResponseBody(); b != nil {
			chunks = append(chunks, string(b.GetBody()))
			eos = append(eos, b.GetEndOfStream())
		}
	}
	return chunks, eos
}

// perChunk answers every response body chunk with f(chunk) as its body_mutation.
func perChunk(f func(string) *extprocv3.BodyMutation) func(context.Context, *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
	return func(ctx context.Context, req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
		if b := req.GetResponseBody(); b != nil {
			return []*extprocv3.ProcessingResponse{bodyResp(req, &extprocv3.CommonResponse{BodyMutation: f(string(b.GetBody()))})}
		}
		return passThrough(ctx, req)
	}
}

func TestStreamedSendsChunksAndAppliesEachAnswerToItsChunk(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(string) *extprocv3.BodyMutation
		wantBody string
	}{
		{"no mutation passes the chunk", func(string) *extprocv3.BodyMutation { return nil }, streamBody},
		{"body replaces the chunk, larger or empty", func(c string) *extprocv3.BodyMutation {
			switch c[0] {
			case 'b':
				return newBody("")
			case 'c':
				return newBody("[" + strings.ToUpper(c) + "]")
			}
			return newBody(c)
		}, "aaaaaaaa[CCCCCCCC]ddddddddeeeee"},
		{"clear_body drops the chunk", func(c string) *extprocv3.BodyMutation {
			if c[0] == 'a' {
				return &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_ClearBody{ClearBody: true}}
			}
			return nil
		}, streamBody[8:]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &fakeProc{handle: perChunk(tc.mutate)}
			resp := runStreamed(t, p, Options{ProcessingMode: streamMode(extprocfilterv3.ProcessingMode_STREAMED)}, streamBody)
			if resp.Status != 200 || resp.Reset || string(resp.Body) != tc.wantBody {
				t.Fatalf("status %d reset %v body %q, want %q (events %q)", resp.Status, resp.Reset, resp.Body, tc.wantBody, resp.Events)
			}
			if resp.Header.Get("content-length") != "" {
				t.Errorf("content-length %q kept in STREAMED mode", resp.Header.Get("content-length"))
			}
			chunks, eos := chunksOf(p.received())
			if len(chunks) != 5 || resp.BodyChunks != 5 || chunks[0] != "aaaaaaaa" || chunks[4] != "eeeee" {
				t.Fatalf("chunks %q (%d counted)", chunks, resp.BodyChunks)
			}
			for i, e := range eos {
				if e != (i == 4) {
					t.Errorf("end_of_stream %v on chunk %d", e, i)
				}
			}
			if got := strings.Join(resp.Phases, ","); got != "request_headers,response_headers,response_body" {
				t.Errorf("phases %s", got)
			}
		})
	}
}

func TestStreamedPipelinesChunksWithoutWaitingForAnswers(t *testing.T) {
	// The processor answers nothing until it has the last chunk: Envoy must have sent
	// every chunk without waiting (handleDataStreamedModeBase continues the chain).
	var mu sync.Mutex
	var held []*extprocv3.ProcessingRequest
	p := &fakeProc{handle: func(ctx context.Context, req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
		b := req.GetResponseBody()
		if b == nil {
			return passThrough(ctx, req)
		}
		mu.Lock()
		defer mu.Unlock()
		held = append(held, req)
		if !b.GetEndOfStream() {
			return nil
		}
		var out []*extprocv3.ProcessingResponse
		for _, r := range held {
			out = append(out, bodyResp(r, &extprocv3.CommonResponse{BodyMutation: newBody(strings.ToUpper(string(r.GetResponseBody().GetBody())))}))
		}
		return out
	}}
	resp := runStreamed(t, p, Options{ProcessingMode: streamMode(extprocfilterv3.ProcessingMode_STREAMED)}, streamBody)
	if resp.Reset || string(resp.Body) != strings.ToUpper(streamBody) {
		t.Fatalf("reset %v body %q events %q", resp.Reset, resp.Body, resp.Events)
	}
}

func TestStreamedWatermarkStopsReadingTheBackend(t *testing.T) {
	// Same processor, but with a 16-byte buffer limit: once more than 16 bytes wait for
	// answers Envoy stops reading the backend, the last chunk never comes, the processor
	// never answers and the message timer (armed at the last send) fires — after the
	// headers went out, so the client's stream is reset.
	p := &fakeProc{handle: func(ctx context.Context, req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
		if req.GetResponseBody() != nil {
			return nil
		}
		return passThrough(ctx, req)
	}}
	resp := runStreamed(t, p, Options{ProcessingMode: streamMode(extprocfilterv3.ProcessingMode_STREAMED), BufferLimit: 16, MessageTimeout: 100 * time.Millisecond}, streamBody)
	if !resp.Reset || resp.Status != 200 || len(resp.Body) != 0 || !strings.Contains(resp.Details, "per-message_timeout") {
		t.Fatalf("reset %v status %d body %q details %q", resp.Reset, resp.Status, resp.Body, resp.Details)
	}
	if resp.BodyChunks != 3 || !hasEvent(resp, "watermark raised") {
		t.Fatalf("%d chunks sent, events %q; want 3 (24 bytes > 16) then a watermark", resp.BodyChunks, resp.Events)
	}
}

func TestStreamedFailuresMidBody(t *testing.T) {
	// Each processor answers the first chunk, then misbehaves on the second.
	second := func(bad func(*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse) handler {
		n := 0
		return func(ctx context.Context, req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
			b := req.GetResponseBody()
			if b == nil {
				return passThrough(ctx, req)
			}
			n++
			if n == 2 {
				return bad(req)
			}
			return []*extprocv3.ProcessingResponse{bodyResp(req, &extprocv3.CommonResponse{BodyMutation: newBody(strings.ToUpper(string(b.GetBody())))})}
		}
	}
	immediate := func() handler {
		return second(func(*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
			return []*extprocv3.ProcessingResponse{{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_BadGateway}, Details: "redaction_failed"}}}}
		})
	}
	streamedResp := func() handler {
		return second(func(req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
			return []*extprocv3.ProcessingResponse{bodyResp(req, &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{
				Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{Body: []byte("x")}}}})}
		})
	}
	headers := func() handler {
		return second(func(req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
			return []*extprocv3.ProcessingResponse{{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}}
		})
	}
	tests := []struct {
		name       string
		mk         func() handler
		opts       Options
		wantReset  bool
		wantBody   string
		wantDetail string
		wantEvent  string
	}{
		{"immediate response resets the stream after the released chunk", immediate, Options{}, true, "AAAAAAAA", "redaction_failed", "immediate response"},
		{"streamed_response outside FULL_DUPLEX is spurious: the rest passes unprocessed", streamedResp, Options{}, false, "AAAAAAAA" + streamBody[8:], "", "UNPROCESSED"},
		{"streamed_response outside FULL_DUPLEX with SpuriousIsError resets", streamedResp, Options{SpuriousIsError: true}, true, "AAAAAAAA", "spurious", "streamed_response is received"},
		{"a headers answer mid-body is spurious", headers, Options{SpuriousIsError: true}, true, "AAAAAAAA", "spurious", "response_headers answer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.ProcessingMode = streamMode(extprocfilterv3.ProcessingMode_STREAMED)
			resp := runStreamed(t, &fakeProc{handle: tc.mk()}, tc.opts, streamBody)
			if resp.Reset != tc.wantReset || string(resp.Body) != tc.wantBody || resp.Status != 200 {
				t.Fatalf("reset %v status %d body %q, want reset %v body %q (events %q)", resp.Reset, resp.Status, resp.Body, tc.wantReset, tc.wantBody, resp.Events)
			}
			if !strings.Contains(resp.Details, tc.wantDetail) || tc.wantEvent != "" && !hasEvent(resp, tc.wantEvent) {
				t.Errorf("details %q events %q, want %q / %q", resp.Details, resp.Events, tc.wantDetail, tc.wantEvent)
			}
		})
	}
}

type handler = func(context.Context, *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse

// failingProc answers the headers phases, then ends the stream with err (or closes it
// with OK when err is nil) at the second body chunk, having answered the first.
type failingProc struct {
	extprocv3.UnimplementedExternalProcessorServer
	err    error
	duplex bool
}

func (f *failingProc) Process(s extprocv3.ExternalProcessor_ProcessServer) error {
	n := 0
	for {
		req, err := s.Recv()
		if err != nil {
			return nil
		}
		if b := req.GetResponseBody(); b != nil {
			n++
			if n == 2 {
				return f.err
			}
			bm := newBody(strings.ToUpper(string(b.GetBody())))
			if f.duplex {
				bm = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{Body: bm.GetBody()}}}
			}
			_ = s.Send(bodyResp(req, &extprocv3.CommonResponse{BodyMutation: bm}))
			continue
		}
		for _, r := range passThrough(s.Context(), req) {
			_ = s.Send(r)
		}
	}
}

func TestStreamedProcessorGoneMidBody(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		allow     bool
		wantReset bool
		wantBody  string
	}{
		{"gRPC error resets the stream", status.Error(codes.Internal, "boom"), false, true, "AAAAAAAA"},
		{"gRPC error with failure_mode_allow lets the rest through unprocessed", status.Error(codes.Internal, "boom"), true, false, "AAAAAAAA" + streamBody[8:]},
		{"a closed stream lets the rest through unprocessed", nil, false, false, "AAAAAAAA" + streamBody[8:]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &failingProc{err: tc.err}
			opts := Options{ProcessingMode: streamMode(extprocfilterv3.ProcessingMode_STREAMED), FailureModeAllow: tc.allow}
			opts.Proc = serve(t, func(s *grpc.Server) { extprocv3.RegisterExternalProcessorServer(s, p) })
			resp := runStreamedConn(t, opts, streamBody)
			if resp.Reset != tc.wantReset || string(resp.Body) != tc.wantBody {
				t.Fatalf("reset %v body %q details %q events %q", resp.Reset, resp.Body, resp.Details, resp.Events)
			}
		})
	}
}

func runStreamedConn(t *testing.T, opts Options, body string) *Response {
	t.Helper()
	opts.Upstream = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, body) })
	if opts.MessageTimeout == 0 {
		opts.MessageTimeout = testTimeout
	}
	if opts.StreamChunkSize == 0 {
		opts.StreamChunkSize = 8
	}
	e := New(opts)
	defer e.Close()
	resp, err := e.Do(context.Background(), get(t, "/export", nil))
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// duplexProc is a FULL_DUPLEX_STREAMED processor that holds the response headers answer
// until it has the whole body, then answers headers and the body in streamed_response
// pieces of 10 bytes (not aligned with Envoy's chunks).
func duplexProc(transform func(string) string, seen *[]string) func(context.Context, *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
	var body bytes.Buffer
	var hdrReq *extprocv3.ProcessingRequest
	return func(ctx context.Context, req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
		switch {
		case req.GetResponseHeaders() != nil:
			hdrReq = req
			*seen = append(*seen, "headers")
			return nil
		case req.GetResponseBody() != nil:
			*seen = append(*seen, "chunk")
			body.Write(req.GetResponseBody().GetBody())
			if !req.GetResponseBody().GetEndOfStream() {
				return nil
			}
			out := []*extprocv3.ProcessingResponse{headersResp(hdrReq, &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: nil}})}
			b := transform(body.String())
			for i := 0; i < len(b); i += 10 {
				end := min(i+10, len(b))
				out = append(out, bodyResp(req, &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{
					StreamedResponse: &extprocv3.StreamedBodyResponse{Body: []byte(b[i:end]), EndOfStream: end == len(b)}}}}))
			}
			return out
		}
		return passThrough(ctx, req)
	}
}

func TestFullDuplexStreamsBodyBeforeTheHeadersAnswer(t *testing.T) {
	var seen []string
	p := &fakeProc{handle: duplexProc(strings.ToUpper, &seen)}
	resp := runStreamed(t, p, Options{ProcessingMode: streamMode(extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED)}, streamBody)
	if resp.Reset || resp.Status != 200 || string(resp.Body) != strings.ToUpper(streamBody) {
		t.Fatalf("reset %v status %d body %q events %q", resp.Reset, resp.Status, resp.Body, resp.Events)
	}
	if got := strings.Join(seen, ","); got != "headers,chunk,chunk,chunk,chunk,chunk" {
		t.Errorf("processor saw %s", got)
	}
	if resp.Header.Get("content-length") != "" {
		t.Errorf("content-length kept")
	}
}

func TestFullDuplexProtocolRules(t *testing.T) {
	immediateAtEnd := func(ctx context.Context, req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
		if req.GetResponseHeaders() != nil {
			return nil
		}
		if b := req.GetResponseBody(); b != nil {
			if !b.GetEndOfStream() {
				return nil
			}
			return []*extprocv3.ProcessingResponse{{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_BadGateway}, Body: []byte(`{"error":"x"}`), Details: "gdprgate"}}}}
		}
		return passThrough(ctx, req)
	}
	normalBody := func(ctx context.Context, req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
		return passThrough(ctx, req) // empty BodyResponse: not a streamed_response
	}
	bodyFirst := func(ctx context.Context, req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
		if req.GetResponseHeaders() != nil {
			return nil
		}
		if b := req.GetResponseBody(); b != nil {
			return []*extprocv3.ProcessingResponse{bodyResp(req, &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{
				StreamedResponse: &extprocv3.StreamedBodyResponse{Body: b.GetBody(), EndOfStream: b.GetEndOfStream()}}}})}
		}
		return passThrough(ctx, req)
	}
	tests := []struct {
		name       string
		handle     func(context.Context, *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse
		strict     bool
		wantStatus int
		wantReset  bool
		wantBody   string
		wantEvent  string
	}{
		{"immediate response before the headers answer is a real local reply", immediateAtEnd, false, 502, false, `{"error":"x"}`, ""},
		{"a body answer without streamed_response is spurious", normalBody, true, 200, true, "", "Normal body mutation"},
		{"a body answer before the headers answer is spurious", bodyFirst, true, 500, false, "", "before the response_headers answer"},
		{"spurious without fail-close loses the chunks already sent", normalBody, false, 200, false, "*", "lost"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := runStreamed(t, &fakeProc{handle: tc.handle}, Options{ProcessingMode: streamMode(extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED), SpuriousIsError: tc.strict}, streamBody)
			if resp.Status != tc.wantStatus || resp.Reset != tc.wantReset || string(resp.Body) != tc.wantBody && (tc.wantBody != "*" || !strings.HasSuffix(streamBody, string(resp.Body)) || len(resp.Body) == len(streamBody)) {
				t.Fatalf("status %d reset %v body %q details %q events %q", resp.Status, resp.Reset, resp.Body, resp.Details, resp.Events)
			}
			if tc.wantEvent != "" && !hasEvent(resp, tc.wantEvent) {
				t.Errorf("events %q, want %q", resp.Events, tc.wantEvent)
			}
		})
	}
}

func TestFullDuplexIgnoresFailureModeAllowOnceBodyWasSent(t *testing.T) {
	p := &failingProc{err: status.Error(codes.Internal, "boom"), duplex: true}
	opts := Options{ProcessingMode: streamMode(extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED), FailureModeAllow: true}
	opts.Proc = serve(t, func(s *grpc.Server) { extprocv3.RegisterExternalProcessorServer(s, p) })
	resp := runStreamedConn(t, opts, streamBody)
	type handler = func(context.Context, *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse

	// failingProc answers the headers at once, so they are downstream: a reset.
	if !resp.Reset || !strings.Contains(resp.Details, "gRPC_error_13") || string(resp.Body) != "AAAAAAAA" {
		t.Fatalf("reset %v status %d details %q events %q", resp.Reset, resp.Status, resp.Details, resp.Events)
	}
}

func TestStreamedModeOverrideRules(t *testing.T) {
	override := func(mo *extprocfilterv3.ProcessingMode) func(context.Context, *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
		return func(ctx context.Context, req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
			out := passThrough(ctx, req)
			if req.GetRequestHeaders() != nil {
				out[0].ModeOverride = mo
			}
			return out
		}
	}
	buffered := &extprocfilterv3.ProcessingMode{ResponseBodyMode: extprocfilterv3.ProcessingMode_BUFFERED}
	streamed := &extprocfilterv3.ProcessingMode{ResponseBodyMode: extprocfilterv3.ProcessingMode_STREAMED}
	tests := []struct {
		name       string
		filter     *extprocfilterv3.ProcessingMode
		route      *extprocfilterv3.ProcessingMode
		allowed    []*extprocfilterv3.ProcessingMode
		override   *extprocfilterv3.ProcessingMode
		wantChunks int
		wantEvent  string
	}{
		{"a route's STREAMED mode streams", streamMode(extprocfilterv3.ProcessingMode_BUFFERED), streamMode(extprocfilterv3.ProcessingMode_STREAMED), nil, nil, 5, ""},
		{"an override's body mode replaces the route's", streamMode(extprocfilterv3.ProcessingMode_BUFFERED), streamMode(extprocfilterv3.ProcessingMode_STREAMED), nil, buffered, 1, "mode_override applied"},
		{"an override leaving header modes DEFAULT keeps the filter's", streamMode(extprocfilterv3.ProcessingMode_BUFFERED), nil, nil, streamed, 5, "mode_override applied"},
		{"an override is ignored when the filter is FULL_DUPLEX_STREAMED", streamMode(extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED), streamMode(extprocfilterv3.ProcessingMode_STREAMED), nil, buffered, 5, "filter's mode is FULL_DUPLEX_STREAMED"},
		{"an override outside allowed_override_modes is ignored", streamMode(extprocfilterv3.ProcessingMode_STREAMED), nil, []*extprocfilterv3.ProcessingMode{streamMode(extprocfilterv3.ProcessingMode_NONE)}, buffered, 5, "allowed_override_modes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &fakeProc{handle: override(tc.override)}
			opts := Options{ProcessingMode: tc.filter, AllowedOverrideModes: tc.allowed}
			if tc.route != nil {
				opts.RouteProcessingMode = func(_, path string) *extprocfilterv3.ProcessingMode {
					if path == "/export" {
						return tc.route
					}
					return nil
				}
			}
			resp := runStreamed(t, p, opts, streamBody)
			chunks, _ := chunksOf(p.received())
			if len(chunks) != tc.wantChunks || string(resp.Body) != streamBody {
				t.Fatalf("chunks %q body %q events %q", chunks, resp.Body, resp.Events)
			}
			if tc.wantEvent != "" && !hasEvent(resp, tc.wantEvent) {
				t.Errorf("events %q, want %q", resp.Events, tc.wantEvent)
			}
			if tc.route != nil {
				if got := p.received()[0].GetProtocolConfig().GetResponseBodyMode(); got != tc.route.GetResponseBodyMode() {
					t.Errorf("protocol_config response_body_mode %v, want the route's %v", got, tc.route.GetResponseBodyMode())
				}
			}
		})
	}
}

func TestDoToWritesTheStreamedBody(t *testing.T) {
	p := &fakeProc{handle: perChunk(func(c string) *extprocv3.BodyMutation { return newBody(strings.ToUpper(c)) })}
	opts := Options{ProcessingMode: streamMode(extprocfilterv3.ProcessingMode_STREAMED), StreamChunkSize: 8, MessageTimeout: testTimeout}
	opts.Proc = procConn(t, p)
	opts.Upstream = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, streamBody) })
	e := New(opts)
	defer e.Close()
	var out bytes.Buffer
	resp, err := e.DoTo(context.Background(), get(t, "/export", nil), &out)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != strings.ToUpper(streamBody) || len(resp.Body) != 0 || resp.BodyBytes != int64(len(streamBody)) {
		t.Fatalf("wrote %q, body %q, %d bytes counted", out.String(), resp.Body, resp.BodyBytes)
	}
}
