package envoytest

import (
	"context"
	"io"
	"net/http"
	"slices"
	"testing"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

// trailerProc answers every phase; the body unchanged (FULL_DUPLEX_STREAMED: echoed as
// streamed_response, ended only by the trailers), and the trailers answer removes
// x-digest — or, with immediate, is an ImmediateResponse.
func trailerProc(immediate bool) func(context.Context, *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
	duplex := false
	return func(ctx context.Context, req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
		if pc := req.GetProtocolConfig(); pc != nil {
			duplex = pc.GetResponseBodyMode() == extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED
		}
		switch {
		case req.GetResponseTrailers() != nil:
			if immediate {
				return []*extprocv3.ProcessingResponse{{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
					ImmediateResponse: &extprocv3.ImmediateResponse{Status: &typev3.HttpStatus{Code: 502}, Details: "trailers_refused"}}}}
			}
			return []*extprocv3.ProcessingResponse{{Response: &extprocv3.ProcessingResponse_ResponseTrailers{
				ResponseTrailers: &extprocv3.TrailersResponse{HeaderMutation: &extprocv3.HeaderMutation{RemoveHeaders: []string{"x-digest"}}}}}}
		case duplex && req.GetResponseBody() != nil:
			b := req.GetResponseBody()
			return []*extprocv3.ProcessingResponse{bodyResp(req, &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{
				StreamedResponse: &extprocv3.StreamedBodyResponse{Body: b.GetBody(), EndOfStream: b.GetEndOfStream()}}}})}
		}
		return passThrough(ctx, req)
	}
}

// TestResponseTrailers follows Envoy's ext_proc filter for answers that end with
// trailers (Filter::onTrailers, ProcessorState::finalizeBodyResponse,
// handleTrailersResponse): no body message says end_of_stream when trailers follow (the
// buffered body is sent whole without it); with the trailer mode SEND the trailers go to
// the processor after the body answers (FULL_DUPLEX_STREAMED: right behind the last chunk)
// and its mutation reaches the client; with SKIP they pass as they came; an answer without
// trailers gets no trailers message; an immediate response to the trailers of a streamed
// answer resets the stream.
func TestResponseTrailers(t *testing.T) {
	const body = streamBody
	for _, tc := range []struct {
		name        string
		bodyMode    extprocfilterv3.ProcessingMode_BodySendMode
		trailerMode extprocfilterv3.ProcessingMode_HeaderSendMode
		noTrailers  bool
		immediate   bool
		wantPhase   bool // a response_trailers message was sent
		wantDigest  bool // the client got x-digest
		wantReset   bool
		wantStatus  int
	}{
		{name: "buffered, SEND", bodyMode: extprocfilterv3.ProcessingMode_BUFFERED, trailerMode: extprocfilterv3.ProcessingMode_SEND, wantPhase: true},
		{name: "buffered, SKIP", bodyMode: extprocfilterv3.ProcessingMode_BUFFERED, trailerMode: extprocfilterv3.ProcessingMode_SKIP, wantDigest: true},
		{name: "no body processing, SEND", bodyMode: extprocfilterv3.ProcessingMode_NONE, trailerMode: extprocfilterv3.ProcessingMode_SEND, wantPhase: true},
		{name: "streamed, SEND", bodyMode: extprocfilterv3.ProcessingMode_STREAMED, trailerMode: extprocfilterv3.ProcessingMode_SEND, wantPhase: true},
		{name: "streamed, SKIP", bodyMode: extprocfilterv3.ProcessingMode_STREAMED, trailerMode: extprocfilterv3.ProcessingMode_SKIP, wantDigest: true},
		{name: "full duplex, SEND", bodyMode: extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED, trailerMode: extprocfilterv3.ProcessingMode_SEND, wantPhase: true},
		{name: "buffered, SEND, no trailers", bodyMode: extprocfilterv3.ProcessingMode_BUFFERED, trailerMode: extprocfilterv3.ProcessingMode_SEND, noTrailers: true},
		{name: "streamed, SEND, no trailers", bodyMode: extprocfilterv3.ProcessingMode_STREAMED, trailerMode: extprocfilterv3.ProcessingMode_SEND, noTrailers: true},
		{name: "buffered, immediate response to the trailers", bodyMode: extprocfilterv3.ProcessingMode_BUFFERED, trailerMode: extprocfilterv3.ProcessingMode_SEND, immediate: true, wantPhase: true, wantStatus: 502},
		{name: "streamed, immediate response to the trailers", bodyMode: extprocfilterv3.ProcessingMode_STREAMED, trailerMode: extprocfilterv3.ProcessingMode_SEND, immediate: true, wantPhase: true, wantReset: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &fakeProc{handle: trailerProc(tc.immediate)}
			mode := streamMode(tc.bodyMode)
			mode.ResponseTrailerMode = tc.trailerMode
			e := New(Options{
				Proc: procConn(t, p), ProcessingMode: mode, MessageTimeout: testTimeout, StreamChunkSize: 8,
				Upstream: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					if !tc.noTrailers {
						w.Header().Set("Trailer", "X-Digest, X-Keep")
					}
					w.Header().Set("content-type", "application/json")
					_, _ = io.WriteString(w, body)
					if !tc.noTrailers {
						w.Header().Set("X-Digest", "sha-256=abc")
						w.Header().Set("X-Keep", "1")
					}
				}),
			})
			defer e.Close()
			resp, err := e.Do(context.Background(), get(t, "/export", nil))
			if err != nil {
				t.Fatal(err)
			}
			if resp.Reset != tc.wantReset {
				t.Fatalf("reset %v, want %v (events %q)", resp.Reset, tc.wantReset, resp.Events)
			}
			if got := slices.Contains(resp.Phases, PhaseResponseTrailers); got != tc.wantPhase {
				t.Fatalf("phases %q: trailers message sent %v, want %v", resp.Phases, got, tc.wantPhase)
			}
			if _, eos := chunksOf(p.received()); len(eos) > 0 && eos[len(eos)-1] != tc.noTrailers {
				t.Fatalf("last body message end_of_stream %v (all %v); want it only when no trailers follow", eos[len(eos)-1], eos)
			}
			if tc.wantStatus != 0 {
				if resp.Status != tc.wantStatus || resp.Trailer != nil {
					t.Fatalf("status %d, trailers %v; want a local reply %d without trailers", resp.Status, resp.Trailer, tc.wantStatus)
				}
				return
			}
			if tc.wantReset {
				if resp.Trailer != nil {
					t.Fatalf("a reset stream got trailers %v", resp.Trailer)
				}
				return
			}
			if string(resp.Body) != body {
				t.Fatalf("body %q, want %q", resp.Body, body)
			}
			if tc.noTrailers {
				if resp.Trailer != nil {
					t.Fatalf("trailers %v from a backend that sent none", resp.Trailer)
				}
				return
			}
			if got := resp.Trailer.Get("x-digest") != ""; got != tc.wantDigest || resp.Trailer.Get("x-keep") != "1" {
				t.Fatalf("client trailers %v; want x-keep, and x-digest %v", resp.Trailer, tc.wantDigest)
			}
			if i := slices.Index(resp.Phases, PhaseResponseTrailers); i >= 0 && i != len(resp.Phases)-1 {
				t.Fatalf("phases %q: the trailers must come last", resp.Phases)
			}
		})
	}
}
