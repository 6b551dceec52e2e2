package authz_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"

	"github.com/gdprgate/gdprgate/authz"
	"github.com/gdprgate/gdprgate/authz/envoytest"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/gate"
)

// contactList is a backend answer for GET /api/contacts: c-1's health notes
// are not for an agent.
const contactList = `{"data":[{"id":"c-1","first_name":"Alice","health_notes":"asthma"},{"id":"c-2","first_name":"Bob","health_notes":"asthma again"}]}`

func envoyMode(body extprocfilterv3.ProcessingMode_BodySendMode) *extprocfilterv3.ProcessingMode {
	m := envoytest.DefaultProcessingMode()
	m.ResponseBodyMode = body
	return m
}

// whole stands for gate.RewriteStream saying an answer must be seen whole
// (a confirm subject, a communication, origin_from…).
func whole(context.Context, *gate.Exchange, *gate.Response) (authz.BodyStream, gate.Rewritten, bool) {
	return nil, gate.Rewritten{}, false
}

type streamCase struct {
	mode            extprocfilterv3.ProcessingMode_BodySendMode
	disallowOverrid bool
	body            string
	configure       func(*config.Config)
	hook            func(context.Context, *gate.Exchange, *gate.Response) (authz.BodyStream, gate.Rewritten, bool)
	chunk           int
	// short keeps body.stream_above at its default (1 MiB).
	short bool
	// trailers end the backend's answer; trailerMode is Envoy's response trailer mode.
	trailers    map[string]string
	trailerMode extprocfilterv3.ProcessingMode_HeaderSendMode
}

func runGate(t *testing.T, c streamCase) *envoytest.Response {
	t.Helper()
	sc := apptest.New(t, apptest.Options{Configure: func(cfg *config.Config) {
		if !c.short {
			// The test answers are short: stream them all the same.
			cfg.Body.StreamAbove = 1
		}
		if c.configure != nil {
			c.configure(cfg)
		}
	}})
	if c.hook != nil {
		authz.SetRewriteStream(sc.App.Authz, c.hook)
	}
	conn := sc.GRPC(t)
	mode := envoyMode(c.mode)
	mode.ResponseTrailerMode = c.trailerMode
	env := envoytest.New(envoytest.Options{
		Authz: conn, Proc: conn,
		Upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for k := range c.trailers {
				w.Header().Add("Trailer", k)
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(c.body))
			for k, v := range c.trailers {
				w.Header().Set(k, v)
			}
		}),
		ProcessingMode:       mode,
		DisallowModeOverride: c.disallowOverrid,
		ForwardAuthzMetadata: true,
		StreamChunkSize:      max(c.chunk, 16),
		MessageTimeout:       time.Minute, AuthzTimeout: time.Minute,
		SpuriousIsError: true,
	})
	t.Cleanup(env.Close)
	req, _ := http.NewRequest("GET", "http://crm.local/api/contacts", nil)
	req.Header.Set("x-gdpr-roles", "agent")
	resp, err := env.Do(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestStreamedModesAnswerAsBuffered: in every body mode Envoy may be set to,
// an answer that needs the whole body reaches the client as the BUFFERED
// rewrite has it — STREAMED through a BUFFERED mode_override (or, without
// allow_mode_override, collected chunk by chunk and released at the end),
// FULL_DUPLEX_STREAMED with the headers held until the body was checked.
func TestStreamedModesAnswerAsBuffered(t *testing.T) {
	want := runGate(t, streamCase{mode: extprocfilterv3.ProcessingMode_BUFFERED, body: contactList})
	if want.Status != 200 || strings.Contains(string(want.Body), "asthma") || !strings.Contains(string(want.Body), "Alice") {
		t.Fatalf("premise: buffered status %d body %s", want.Status, want.Body)
	}
	chunks := (len(contactList) + 15) / 16
	tests := []struct {
		name       string
		c          streamCase
		wantChunks int
	}{
		{"STREAMED rewrites chunk by chunk", streamCase{mode: extprocfilterv3.ProcessingMode_STREAMED}, chunks},
		{"FULL_DUPLEX_STREAMED rewrites chunk by chunk", streamCase{mode: extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED}, chunks},
		{"STREAMED asks Envoy to buffer an answer needed whole", streamCase{mode: extprocfilterv3.ProcessingMode_STREAMED, hook: whole}, 1},
		{"STREAMED without allow_mode_override collects the chunks", streamCase{mode: extprocfilterv3.ProcessingMode_STREAMED, disallowOverrid: true, hook: whole}, chunks},
		{"FULL_DUPLEX_STREAMED holds the headers", streamCase{mode: extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED, hook: whole}, chunks},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.body = contactList
			got := runGate(t, tc.c)
			if got.Status != 200 || got.Reset || !bytes.Equal(got.Body, want.Body) {
				t.Fatalf("status %d reset %v body %s, want %s (events %q)", got.Status, got.Reset, got.Body, want.Body, got.Events)
			}
			if got.BodyChunks != tc.wantChunks {
				t.Errorf("%d body messages, want %d", got.BodyChunks, tc.wantChunks)
			}
		})
	}
}

// TestStreamedRefusalsFailClosed: an answer refused after its headers went
// out resets the client's stream, after the redacted part released (a
// collected one releases nothing); a collected FULL_DUPLEX_STREAMED answer
// still gets an error status.
func TestStreamedRefusalsFailClosed(t *testing.T) {
	small := func(c *config.Config) { c.Body.MaxBytes, c.Body.StreamAbove = 64, 64 }
	// c-1's record is cut after its health notes: a streamed rewrite cannot
	// release it (it may not be valid), the collected one refuses it all.
	truncated := `{"data":[{"id":"c-2","first_name":"Bob"},{"id":"c-1","health_notes":"asthma"`
	tests := []struct {
		name       string
		c          streamCase
		wantStatus int
		wantReset  bool
	}{
		{"STREAMED invalid JSON resets", streamCase{mode: extprocfilterv3.ProcessingMode_STREAMED, body: truncated}, 200, true},
		{"FULL_DUPLEX invalid JSON resets", streamCase{mode: extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED, body: truncated}, 200, true},
		{"STREAMED collected invalid JSON resets", streamCase{mode: extprocfilterv3.ProcessingMode_STREAMED, disallowOverrid: true, body: truncated, hook: whole}, 200, true},
		{"STREAMED collected over body.max_bytes resets", streamCase{mode: extprocfilterv3.ProcessingMode_STREAMED, disallowOverrid: true, body: contactList, configure: small, hook: whole}, 200, true},
		{"FULL_DUPLEX collected invalid JSON is a 502", streamCase{mode: extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED, body: truncated, hook: whole}, 502, false},
		{"FULL_DUPLEX collected over body.max_bytes is a 502", streamCase{mode: extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED, body: contactList, configure: small, hook: whole}, 502, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := runGate(t, tc.c)
			if got.Status != tc.wantStatus || got.Reset != tc.wantReset {
				t.Fatalf("status %d reset %v details %q events %q", got.Status, got.Reset, got.Details, got.Events)
			}
			if strings.Contains(string(got.Body), "asthma") || tc.c.hook != nil && tc.wantReset && len(got.Body) != 0 {
				t.Fatalf("released %q", got.Body)
			}
		})
	}
}

// upperStream stands in for the streaming rewriter: it releases each chunk
// upper-cased and fails at the failAt-th chunk (0: never).
type upperStream struct {
	n, failAt int
}

func (u *upperStream) Write(dst, chunk []byte) ([]byte, error) {
	u.n++
	if u.n == u.failAt {
		return dst, gate.ErrStreamAborted
	}
	return append(dst, bytes.ToUpper(chunk)...), nil
}

func (u *upperStream) Close(dst []byte) ([]byte, error) { return append(dst, '!'), nil }

// TestStreamedChunksGoThroughTheBodyStream: when the rewriter can stream,
// every chunk Envoy sends is answered with what it releases — a body
// mutation (STREAMED; an empty one holds the chunk back) or a
// streamed_response (FULL_DUPLEX_STREAMED) — and a failure mid-way resets
// the client's stream after the chunks already released.
func TestStreamedChunksGoThroughTheBodyStream(t *testing.T) {
	hook := func(failAt int) func(context.Context, *gate.Exchange, *gate.Response) (authz.BodyStream, gate.Rewritten, bool) {
		return func(context.Context, *gate.Exchange, *gate.Response) (authz.BodyStream, gate.Rewritten, bool) {
			return &upperStream{failAt: failAt}, gate.Rewritten{RemoveHeaders: []string{"content-length"}}, true
		}
	}
	tests := []struct {
		name      string
		mode      extprocfilterv3.ProcessingMode_BodySendMode
		failAt    int
		wantBody  string
		wantReset bool
	}{
		{"STREAMED", extprocfilterv3.ProcessingMode_STREAMED, 0, strings.ToUpper(contactList) + "!", false},
		{"FULL_DUPLEX_STREAMED", extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED, 0, strings.ToUpper(contactList) + "!", false},
		{"STREAMED failure resets", extprocfilterv3.ProcessingMode_STREAMED, 3, strings.ToUpper(contactList[:32]), true},
		{"FULL_DUPLEX_STREAMED failure resets", extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED, 3, strings.ToUpper(contactList[:32]), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := runGate(t, streamCase{mode: tc.mode, body: contactList, hook: hook(tc.failAt)})
			if got.Status != 200 || got.Reset != tc.wantReset || string(got.Body) != tc.wantBody {
				t.Fatalf("status %d reset %v body %q, want %q (details %q events %q)", got.Status, got.Reset, got.Body, tc.wantBody, got.Details, got.Events)
			}
			if got.BodyChunks != (len(contactList)+15)/16 && !tc.wantReset {
				t.Errorf("%d chunks", got.BodyChunks)
			}
			if got.Header.Get("content-length") != "" {
				t.Errorf("content-length %q", got.Header.Get("content-length"))
			}
		})
	}
}

// TestShortAnswersAreRewrittenWhole: an answer whose content-length is at
// most body.stream_above is rewritten whole in either streamed mode (as the
// proxy does), so a refusal is an error status, not a reset.
func TestShortAnswersAreRewrittenWhole(t *testing.T) {
	truncated := `{"data":[{"id":"c-2","first_name":"Bob"},{"id":"c-1","health_notes":"asthma"`
	tests := []struct {
		name       string
		c          streamCase
		wantStatus int
		wantChunks int
	}{
		{"STREAMED goes BUFFERED", streamCase{mode: extprocfilterv3.ProcessingMode_STREAMED, body: contactList, short: true}, 200, 1},
		{"STREAMED invalid JSON is a 502", streamCase{mode: extprocfilterv3.ProcessingMode_STREAMED, body: truncated, short: true}, 502, 1},
		{"FULL_DUPLEX invalid JSON is a 502", streamCase{mode: extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED, body: truncated, short: true}, 502, (len(truncated) + 15) / 16},
		{"body.stream_above -1 never streams", streamCase{mode: extprocfilterv3.ProcessingMode_STREAMED, body: truncated, configure: func(c *config.Config) { c.Body.StreamAbove = -1 }}, 502, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := runGate(t, tc.c)
			if got.Status != tc.wantStatus || got.Reset || got.BodyChunks != tc.wantChunks || strings.Contains(string(got.Body), "asthma") {
				t.Fatalf("status %d reset %v chunks %d body %q (events %q)", got.Status, got.Reset, got.BodyChunks, got.Body, got.Events)
			}
		})
	}
}

// TestStreamedBigChunksAnswerAsBuffered: chunks big enough for the codec to
// send their output from its own buffer (not copied into the message) come
// out whole and in order: each answer's buffer lives until written.
func TestStreamedBigChunksAnswerAsBuffered(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"data":[`)
	for i := range 3000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"c-%d","first_name":"Alice %d","health_notes":"asthma, a long note to make the answer bigger"}`, i%3+1, i)
	}
	b.WriteString(`]}`)
	want := runGate(t, streamCase{mode: extprocfilterv3.ProcessingMode_BUFFERED, body: b.String()})
	if want.Status != 200 {
		t.Fatalf("premise: buffered status %d", want.Status)
	}
	for _, mode := range []extprocfilterv3.ProcessingMode_BodySendMode{extprocfilterv3.ProcessingMode_STREAMED, extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED} {
		got := runGate(t, streamCase{mode: mode, body: b.String(), chunk: 64 << 10})
		if got.Status != 200 || got.Reset || !bytes.Equal(got.Body, want.Body) {
			t.Fatalf("%v: status %d reset %v, %d bytes, want %d identical", mode, got.Status, got.Reset, len(got.Body), len(want.Body))
		}
	}
}

// TestFullDuplexLongAnswerInPieces: a collected FULL_DUPLEX_STREAMED answer
// goes back in streamed_response pieces of at most 64 KiB (Envoy's
// recommendation), whole and in order.
func TestFullDuplexLongAnswerInPieces(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"data":[`)
	for i := range 2000 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"id":"c-1","first_name":"Alice","health_notes":"asthma, a long note to make the answer bigger"}`)
	}
	b.WriteString(`]}`)
	want := runGate(t, streamCase{mode: extprocfilterv3.ProcessingMode_BUFFERED, body: b.String()})
	got := runGate(t, streamCase{mode: extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED, body: b.String()})
	if want.Status != 200 || len(want.Body) <= 64<<10 {
		t.Fatalf("premise: buffered status %d, %d bytes", want.Status, len(want.Body))
	}
	if got.Status != 200 || got.Reset || !bytes.Equal(got.Body, want.Body) {
		t.Fatalf("status %d reset %v, %d bytes, want %d (events %q)", got.Status, got.Reset, len(got.Body), len(want.Body), got.Events)
	}
}
