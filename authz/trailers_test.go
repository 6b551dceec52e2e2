package authz_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
)

func headerMap(kv ...string) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	for i := 0; i < len(kv); i += 2 {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return m
}

// rawExchange opens an ext_proc stream to a fresh gdprgate as Envoy would
// for an agent's GET of path with the given response body mode, and passes
// the request headers and the backend's 200 JSON response headers. It
// returns the stream, a send-then-receive step, and the response headers'
// answer.
func rawExchange(t *testing.T, mode extprocfilterv3.ProcessingMode_BodySendMode, path string) (extprocv3.ExternalProcessor_ProcessClient, func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse, *extprocv3.ProcessingResponse) {
	t.Helper()
	sc := apptest.New(t, apptest.Options{Configure: func(cfg *config.Config) { cfg.Body.StreamAbove = 1 }})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	proc, err := extprocv3.NewExternalProcessorClient(sc.GRPC(t)).Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	exchange := func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		t.Helper()
		if err := proc.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := proc.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := exchange(&extprocv3.ProcessingRequest{ProtocolConfig: &extprocv3.ProtocolConfiguration{ResponseBodyMode: mode},
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{EndOfStream: true,
			Headers: headerMap(":method", "GET", ":path", path, ":authority", "crm.local", ":scheme", "http", "x-gdpr-roles", "agent")}}}); r.GetImmediateResponse() != nil {
		t.Fatalf("request headers answered with %v", r)
	}
	r := exchange(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
		Headers: headerMap(":status", "200", "content-type", "application/json")}}})
	return proc, exchange, r
}

// TestStreamedAnswerEndingWithTrailersIsReset: in STREAMED mode a body
// that ends with trailers gets no chunk with end_of_stream, and a trailers
// answer cannot carry the rest of the rewrite (the list's end), so the
// answer is reset like any failure mid-way instead of ending normally with
// a truncated body.
func TestStreamedAnswerEndingWithTrailersIsReset(t *testing.T) {
	_, exchange, r := rawExchange(t, extprocfilterv3.ProcessingMode_STREAMED, "/api/contacts")
	if r.GetResponseHeaders() == nil || r.GetModeOverride() != nil {
		t.Fatalf("premise: the list streams; headers answered with %v", r)
	}
	r = exchange(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: []byte(contactList)}}})
	if r.GetResponseBody() == nil {
		t.Fatalf("body chunk answered with %v", r)
	}
	r = exchange(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{
		Trailers: headerMap("x-checksum", "1")}}})
	if r.GetImmediateResponse() == nil {
		t.Fatalf("trailers of an unfinished streamed answer answered with %v; want an immediate response (Envoy resets the stream)", r)
	}
}

// TestTrailersOfARewrittenAnswerLoseTheBodysDigest: a backend may end its
// answer with trailers computed from the body (Digest, Content-Digest,
// Repr-Digest, an ETag); once the body is redacted, such a trailer is a
// hash of the original that lets a client confirm guesses of the redacted
// values. When Envoy sends the trailers (response_trailer_mode SEND), the
// trailers answer removes them, in the buffered and streamed modes alike;
// an answer left as it came keeps its trailers.
func TestTrailersOfARewrittenAnswerLoseTheBodysDigest(t *testing.T) {
	for _, tc := range []struct {
		name       string
		mode       extprocfilterv3.ProcessingMode_BodySendMode
		path       string
		wantRemove bool
	}{
		{"buffered, redacted", extprocfilterv3.ProcessingMode_BUFFERED, "/api/contacts", true},
		{"buffered whole body without end_of_stream, redacted", extprocfilterv3.ProcessingMode_BUFFERED, "/api/contacts", true},
		{"full duplex, redacted", extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED, "/api/contacts", true},
		{"buffered, nothing to redact", extprocfilterv3.ProcessingMode_BUFFERED, "/health", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proc, exchange, r := rawExchange(t, tc.mode, tc.path)
			if r.GetImmediateResponse() != nil {
				t.Fatalf("response headers answered with %v", r)
			}
			body := contactList
			if tc.path == "/health" {
				body = `{"status":"ok"}`
			}
			if tc.mode == extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED {
				// In this mode the body ends with the trailers, not with
				// end_of_stream; the redacted body comes before the trailers
				// answer.
				if err := proc.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
					ResponseBody: &extprocv3.HttpBody{Body: []byte(body)}}}); err != nil {
					t.Fatal(err)
				}
			} else {
				// Envoy releases announced BUFFERED bodies whole; older
				// releases marked the one before trailers end_of_stream,
				// newer ones do not (Filter::onTrailers).
				eos := !strings.Contains(tc.name, "without end_of_stream")
				r := exchange(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
					ResponseBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: eos}}})
				if r.GetResponseBody() == nil {
					t.Fatalf("buffered body answered with %v; want a body answer", r)
				}
				out := string(r.GetResponseBody().GetResponse().GetBodyMutation().GetBody())
				if tc.wantRemove && (out == "" || strings.Contains(out, "asthma")) {
					t.Fatalf("buffered body not redacted: %q", out)
				}
			}
			if err := proc.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{
				Trailers: headerMap("digest", "sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=", "x-other", "kept")}}}); err != nil {
				t.Fatal(err)
			}
			var tr *extprocv3.TrailersResponse
			for tr == nil {
				resp, err := proc.Recv()
				if err != nil {
					t.Fatal(err)
				}
				tr = resp.GetResponseTrailers()
			}
			removed := tr.GetHeaderMutation().GetRemoveHeaders()
			if got := slices.Contains(removed, "digest") && slices.Contains(removed, "content-digest"); got != tc.wantRemove {
				t.Fatalf("trailers answer removes %q; want the body's digests removed: %v", removed, tc.wantRemove)
			}
			if slices.Contains(removed, "x-other") {
				t.Fatalf("trailers answer removes %q: only trailers derived from the body go", removed)
			}
		})
	}
}

// TestBodyWithoutEndOfStreamInAModeNotAnnouncedBufferedIsRefused: only a
// mode Envoy announced as BUFFERED makes a body without end_of_stream a
// whole one; without protocol_config (an older Envoy) or in STREAMED mode
// with the streaming rewriter off, such a chunk may be the first of many,
// and redacting it as a whole would let the rest through unchecked.
func TestBodyWithoutEndOfStreamInAModeNotAnnouncedBufferedIsRefused(t *testing.T) {
	for _, mode := range []extprocfilterv3.ProcessingMode_BodySendMode{extprocfilterv3.ProcessingMode_NONE, extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL} {
		t.Run(mode.String(), func(t *testing.T) {
			_, exchange, r := rawExchange(t, mode, "/api/contacts")
			if r.GetImmediateResponse() != nil {
				t.Fatalf("response headers answered with %v", r)
			}
			r = exchange(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
				ResponseBody: &extprocv3.HttpBody{Body: []byte(contactList[:40])}}})
			if r.GetImmediateResponse() == nil {
				t.Fatalf("a body chunk without end_of_stream in mode %v answered with %v; want it refused", mode, r)
			}
		})
	}
}

// TestAnswersEndingWithTrailersThroughEnvoy drives gdprgate with the Envoy
// emulator and a backend whose answer ends with trailers, in each body and
// trailer mode: the client never gets an unredacted byte nor the backend's
// digest of the unredacted body when gdprgate sees the trailers; an answer
// that cannot be completed is reset, and the documented SKIP cases behave
// as the README says.
func TestAnswersEndingWithTrailersThroughEnvoy(t *testing.T) {
	want := runGate(t, streamCase{mode: extprocfilterv3.ProcessingMode_BUFFERED, body: contactList})
	if want.Status != 200 || strings.Contains(string(want.Body), "asthma") {
		t.Fatalf("premise: buffered status %d body %s", want.Status, want.Body)
	}
	const send, skip = extprocfilterv3.ProcessingMode_SEND, extprocfilterv3.ProcessingMode_SKIP
	for _, tc := range []struct {
		name string
		c    streamCase
		// whole: the client gets the buffered rewrite; digest: and the digest
		// trailer; reset: the stream is reset; status: a local reply instead.
		whole, digest, reset bool
		status               int
	}{
		{name: "BUFFERED, trailers sent", c: streamCase{mode: extprocfilterv3.ProcessingMode_BUFFERED, trailerMode: send}, whole: true},
		{name: "BUFFERED, trailers skipped pass unseen", c: streamCase{mode: extprocfilterv3.ProcessingMode_BUFFERED, trailerMode: skip}, whole: true, digest: true},
		{name: "FULL_DUPLEX_STREAMED", c: streamCase{mode: extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED, trailerMode: send}, whole: true},
		{name: "FULL_DUPLEX_STREAMED, answer needed whole", c: streamCase{mode: extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED, trailerMode: send, hook: whole}, whole: true},
		{name: "STREAMED, trailers sent: reset", c: streamCase{mode: extprocfilterv3.ProcessingMode_STREAMED, trailerMode: send}, reset: true},
		{name: "STREAMED, answer needed whole, trailers sent", c: streamCase{mode: extprocfilterv3.ProcessingMode_STREAMED, trailerMode: send, hook: whole}, status: 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.body = contactList
			tc.c.trailers = map[string]string{"Digest": "sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=", "X-Other": "kept"}
			got := runGate(t, tc.c)
			t.Logf("status %d reset %v body %q trailers %v phases %q events %q", got.Status, got.Reset, got.Body, got.Trailer, got.Phases, got.Events)
			if strings.Contains(string(got.Body), "asthma") {
				t.Fatalf("unredacted bytes reached the client: %s", got.Body)
			}
			if got.Reset != tc.reset {
				t.Fatalf("reset %v, want %v", got.Reset, tc.reset)
			}
			if tc.status != 0 && got.Status != tc.status {
				t.Fatalf("status %d, want %d", got.Status, tc.status)
			}
			if tc.whole && (got.Status != 200 || !bytes.Equal(got.Body, want.Body)) {
				t.Fatalf("status %d body %s, want the buffered rewrite %s", got.Status, got.Body, want.Body)
			}
			if tc.whole && got.Trailer.Get("x-other") != "kept" {
				t.Fatalf("trailers %v: x-other lost", got.Trailer)
			}
			if has := got.Trailer.Get("digest") != ""; has != tc.digest {
				t.Fatalf("trailers %v: digest present %v, want %v", got.Trailer, has, tc.digest)
			}
		})
	}
}
