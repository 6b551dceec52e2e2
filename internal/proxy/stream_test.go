package proxy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"

	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/gate"
	"github.com/gdprgate/gdprgate/internal/proxy"
)

// genList writes a deterministic contact list of about size bytes to w in
// pieces (ids after the fields in every third item).
func genList(w io.Writer, size int, tail string) {
	var b []byte
	b = append(b, `{"data":[`...)
	n := 0
	for i := 0; n+len(b) < size; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		if i%3 == 2 {
			b = fmt.Appendf(b, `{"name":"Name %d","email":"e%d@example.com","phone":"+44 %d","health_notes":"notes %d","created_at":"2024-05-01T10:00:00Z","id":"c-%d"}`, i, i, i, i, i%7+1)
		} else {
			b = fmt.Appendf(b, `{"id":"c-%d","name":"Name %d","email":"e%d@example.com","phone":"+44 %d","health_notes":"notes %d","created_at":"2024-05-01T10:00:00Z"}`, i%7+1, i, i, i, i)
		}
		if len(b) >= 32<<10 {
			w.Write(b)
			n += len(b)
			b = b[:0]
		}
	}
	b = append(b, tail...)
	w.Write(b)
}

const listTail = `],"page":1}`

type streamEnv struct {
	url string
	g   *gate.Gate
	sc  *apptest.Scenario
}

// streamServe is the proxy over real sockets in front of a backend that
// serves a generated list at /api/contacts?size=N (chunked, no length),
// and the same list turning invalid mid-way with &bad=1.
func streamServe(t *testing.T) *streamEnv {
	t.Helper()
	sc := apptest.New(t, apptest.Options{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var size int
		fmt.Sscan(r.URL.Query().Get("size"), &size)
		if r.URL.Query().Get("hints") != "" {
			w.Header().Set("link", "</app.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("link")
		}
		w.Header().Set("content-type", "application/json")
		tail := listTail
		if r.URL.Query().Get("bad") != "" {
			tail = `,{"id":"c-1","health_notes":"SECRET"}}` + listTail
		}
		genList(w, size, tail)
	}))
	t.Cleanup(backend.Close)
	cfg := sc.App.Config
	p, err := proxy.New(proxy.Options{Gate: sc.App.Gate, Upstream: backend.URL, Logger: apptest.Quiet(),
		MaxRequestBytes: cfg.Body.MaxRequestBytes, MaxBodyBytes: 1 << 20, StreamAbove: 256 << 10,
		IdentityHeaders: []string{cfg.Identity.RolesHeader, cfg.Identity.CallerHeader, cfg.Identity.ProjectHeader}})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	return &streamEnv{url: front.URL, g: sc.App.Gate, sc: sc}
}

// reference is the buffered rewrite of the list the backend serves.
func (e *streamEnv) reference(t *testing.T, size int) []byte {
	t.Helper()
	var body bytes.Buffer
	genList(&body, size, listTail)
	e.sc.App.Config.Body.MaxBytes = body.Len() + 1
	defer func() { e.sc.App.Config.Body.MaxBytes = 1 << 20 }()
	ex := e.g.Check(context.Background(), &gate.Request{Method: "GET", Path: "/api/contacts", Header: func(n string) string {
		if n == "x-gdpr-roles" {
			return "agent"
		}
		return ""
	}})
	rw := e.g.Rewrite(context.Background(), ex, &gate.Response{Status: 200, Body: body.Bytes(),
		Header: func(n string) string {
			if n == "content-type" {
				return "application/json"
			}
			return ""
		}})
	if !rw.Modified {
		t.Fatalf("premise: the list is redacted: %+v", rw)
	}
	return rw.Body
}

func (e *streamEnv) get(t *testing.T, query string, sum hash.Hash) (*http.Response, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest("GET", e.url+"/api/contacts?"+query, nil)
	req.Header.Set("x-gdpr-roles", "agent")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var head bytes.Buffer
	w := io.Writer(&head)
	if sum != nil {
		w = io.MultiWriter(sum, &limitWriter{&head, 1 << 20})
	}
	_, err = io.Copy(w, resp.Body)
	return resp, head.Bytes(), err
}

type limitWriter struct {
	w *bytes.Buffer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.w.Len() < l.n {
		l.w.Write(p[:min(len(p), l.n-l.w.Len())])
	}
	return len(p), nil
}

// A mapped list beyond body.max_bytes streams through the proxy, redacted
// byte for byte as the buffered rewrite; a short one is rewritten whole.
func TestProxyStreamsLongMappedAnswers(t *testing.T) {
	e := streamServe(t)
	big := 50 << 20
	if raceEnabled {
		big = 4 << 20 // the race detector makes it ten times slower
	}
	for _, size := range []int{100 << 10, big} {
		want := sha256.Sum256(e.reference(t, size))
		sum := sha256.New()
		resp, head, err := e.get(t, fmt.Sprintf("size=%d", size), sum)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%d bytes: status %d, err %v", size, resp.StatusCode, err)
		}
		if !bytes.Equal(sum.Sum(nil), want[:]) {
			t.Fatalf("%d bytes: the streamed answer differs from the buffered rewrite (starts %.300s)", size, head)
		}
		streamed := resp.Header.Get("x-gdpr-redacted") == ""
		if streamed != (size > 256<<10) {
			t.Fatalf("%d bytes: streamed %v (headers %v)", size, streamed, resp.Header)
		}
	}
}

// A mapped answer rewritten whole goes out in one piece after its final
// status — not after a 1xx the backend sent first — under its exact
// content-length, as the buffered rewrite.
func TestProxySendsAWholeRewriteAfterItsFinalStatus(t *testing.T) {
	e := streamServe(t)
	for _, size := range []int{100 << 10, 200 << 10} {
		for _, q := range []string{"", "&hints=1"} {
			want := e.reference(t, size)
			var got bytes.Buffer
			var early int
			req, _ := http.NewRequest("GET", e.url+fmt.Sprintf("/api/contacts?size=%d%s", size, q), nil)
			req.Header.Set("x-gdpr-roles", "agent")
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
				Got1xxResponse: func(code int, _ textproto.MIMEHeader) error { early++; return nil },
			}))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.Copy(&got, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%d%s: status %d, err %v", size, q, resp.StatusCode, err)
			}
			if resp.ContentLength != int64(len(want)) || !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("%d%s: %d bytes under content-length %d, want the buffered rewrite's %d bytes", size, q, got.Len(), resp.ContentLength, len(want))
			}
			if wantEarly := q != ""; (early == 1) != wantEarly {
				t.Fatalf("%d%s: %d 1xx answers relayed", size, q, early)
			}
		}
	}
}

// A body that turns invalid mid-way is cut: the client gets an aborted
// response holding only redacted items, never the unredacted one.
func TestProxyAbortsAnAnswerThatTurnsInvalid(t *testing.T) {
	e := streamServe(t)
	resp, got, err := e.get(t, fmt.Sprintf("size=%d&bad=1", 2<<20), nil)
	if resp.StatusCode != 200 || err == nil {
		t.Fatalf("status %d, err %v: want a 200 cut short", resp.StatusCode, err)
	}
	if bytes.Contains(got, []byte("SECRET")) || bytes.Contains(got, []byte(`"notes 1"`)) {
		t.Fatal("an unredacted item reached the client")
	}
	if !strings.HasPrefix(string(got), `{"data":[{"id":"c-1"`) || len(got) < 1<<20 {
		t.Fatalf("the redacted items before the fault were not released (%d bytes)", len(got))
	}
}
