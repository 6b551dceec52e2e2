package app_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/adminapi"
	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/app"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/httpauthz"
	"github.com/gdprgate/gdprgate/internal/proxy"
)

// safety bounds how long a test waits for the server to act. It is never
// the assertion: a test passes when the server closes the connection, and
// fails when it does not within this (generous) bound.
const safety = 2 * time.Minute

// serveOn runs handler with limits on a loopback listener until the test
// ends and returns its address.
func serveOn(t *testing.T, handler http.Handler, limits config.HTTPLimits) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = app.Serve(ctx, lis, handler, limits); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return lis.Addr().String()
}

// patient are limits long enough that only what is under test closes a
// connection.
func patient() config.HTTPLimits {
	return config.HTTPLimits{ReadHeaderTimeout: 10 * time.Minute, ReadTimeout: 10 * time.Minute,
		WriteTimeout: 10 * time.Minute, IdleTimeout: 10 * time.Minute, MaxHeaderBytes: 64 << 10}
}

// rawExchange writes req on a fresh connection and never sends more, then
// reads what the server answers until it closes the connection. closed is
// false when the safety bound passed first.
func rawExchange(t *testing.T, addr, req string) (answer string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(safety))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return string(b), false
	}
	// EOF or a reset: the server closed the connection.
	return string(b), err == nil || errors.Is(err, syscall.ECONNRESET)
}

func statusLine(answer string) string {
	line, _, _ := strings.Cut(answer, "\r\n")
	return line
}

// TestSlowBodyWithBadTokenIsCutOff: a client announces a body, sends the
// headers with a wrong token and a byte of the body, and stalls. The admin
// API refuses it (401) without reading the body; the server must close the
// connection instead of waiting to drain the rest (issue 10 §6: 30 s per
// connection). The listener's timeouts are ten minutes here, so only the
// close-on-refusal can end the exchange.
func TestSlowBodyWithBadTokenIsCutOff(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	addr := serveOn(t, sc.App.Admin, patient())
	for name, req := range map[string]string{
		"content-length": "POST /v1/purposes HTTP/1.1\r\nHost: gdprgate\r\nAuthorization: Bearer guess\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
		"chunked":        "POST /v1/purposes HTTP/1.1\r\nHost: gdprgate\r\nAuthorization: Bearer guess\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			answer, closed := rawExchange(t, addr, req)
			if !closed {
				t.Fatalf("connection still open after the refusal; got %q", answer)
			}
			if !strings.HasPrefix(statusLine(answer), "HTTP/1.1 401") || !strings.Contains(answer, "Connection: close") {
				t.Fatalf("answer %q, want a 401 with Connection: close", answer)
			}
		})
	}
}

// TestOversizedSlowBodyIsCutOff: the body grows past admin.max_body_bytes,
// the API answers 413 and the rest (which would be drained) never comes.
func TestOversizedSlowBodyIsCutOff(t *testing.T) {
	sc := apptest.New(t, apptest.Options{Configure: func(c *config.Config) {
		c.Admin.MaxBodyBytes = 1024
		c.Admin.Tokens = []config.AdminToken{{Name: "ops", SHA256: adminapi.HashToken("secret"), Scopes: []string{"admin"}}}
	}})
	addr := serveOn(t, sc.App.Admin, patient())
	req := "POST /v1/purposes HTTP/1.1\r\nHost: gdprgate\r\nAuthorization: Bearer secret\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n" +
		`{"id":"p","name":"` + strings.Repeat("a", 1100)
	answer, closed := rawExchange(t, addr, req)
	if !closed || !strings.HasPrefix(statusLine(answer), "HTTP/1.1 413") {
		t.Fatalf("closed=%v answer %q, want a 413 and the connection closed", closed, answer)
	}
}

// TestProxyRefusalBeforeBodyClosesConnection: a GET with a body the client
// never finishes, refused 401 (no identity) on a mapped route.
func TestProxyRefusalBeforeBodyClosesConnection(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	backend := serveOn(t, crm.New(sc.Now), patient())
	p, err := proxy.New(proxy.Options{Gate: sc.App.Gate, Upstream: "http://" + backend, Logger: apptest.Quiet(),
		MaxRequestBytes: sc.App.Config.Body.MaxRequestBytes, MaxBodyBytes: sc.App.Config.Body.MaxBytes})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveOn(t, p, patient())
	answer, closed := rawExchange(t, addr, "GET /api/contacts/c-1 HTTP/1.1\r\nHost: crm\r\nContent-Length: 500\r\n\r\nx")
	if !closed || !strings.HasPrefix(statusLine(answer), "HTTP/1.1 401") {
		t.Fatalf("closed=%v answer %q, want a 401 and the connection closed", closed, answer)
	}
}

// TestListenersCutOffStalledClients: on every HTTP listener a client that
// stalls inside its headers, or inside a body the handler waits for, is
// cut off by the configured timeouts; an idle keep-alive connection too.
func TestListenersCutOffStalledClients(t *testing.T) {
	sc := apptest.New(t, apptest.Options{Configure: func(c *config.Config) {
		c.Admin.Tokens = []config.AdminToken{{Name: "ops", SHA256: adminapi.HashToken("secret"), Scopes: []string{"admin"}}}
	}})
	backend := serveOn(t, crm.New(sc.Now), patient())
	p, err := proxy.New(proxy.Options{Gate: sc.App.Gate, Upstream: "http://" + backend, Logger: apptest.Quiet(),
		MaxRequestBytes: sc.App.Config.Body.MaxRequestBytes, MaxBodyBytes: sc.App.Config.Body.MaxBytes})
	if err != nil {
		t.Fatal(err)
	}
	short := config.HTTPLimits{ReadHeaderTimeout: 200 * time.Millisecond, ReadTimeout: 300 * time.Millisecond,
		WriteTimeout: 10 * time.Minute, IdleTimeout: 300 * time.Millisecond, MaxHeaderBytes: 64 << 10}
	listeners := map[string]struct {
		handler http.Handler
		body    string // a request whose body the handler reads
	}{
		"proxy": {p, "POST /api/outbound/calls HTTP/1.1\r\nHost: crm\r\nx-gdpr-roles: marketer\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"contact_id\""},
		"admin": {sc.App.Admin, "POST /v1/purposes HTTP/1.1\r\nHost: gdprgate\r\nAuthorization: Bearer secret\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\""},
		"http_authz": {httpauthz.New(sc.App.Gate, httpauthz.Options{PathPrefix: "/authz", Logger: apptest.Quiet()}),
			"POST /authz/api/outbound/calls HTTP/1.1\r\nHost: gdprgate\r\nx-gdpr-roles: marketer\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"contact_id\""},
	}
	for name, l := range listeners {
		t.Run(name, func(t *testing.T) {
			addr := serveOn(t, l.handler, short)
			if answer, closed := rawExchange(t, addr, "GET /healthz HTTP/1.1\r\nHost: gdprgate\r\nX-Slow: "); !closed {
				t.Errorf("stalled headers: connection still open (%q)", answer)
			}
			if answer, closed := rawExchange(t, addr, l.body); !closed {
				t.Errorf("stalled body: connection still open (%q)", answer)
			}
			if answer, closed := rawExchange(t, addr, "GET /healthz HTTP/1.1\r\nHost: gdprgate\r\n\r\n"); !closed || !strings.HasPrefix(statusLine(answer), "HTTP/1.1 ") {
				t.Errorf("idle keep-alive connection: closed=%v after %q", closed, answer)
			}
		})
	}
}

// TestHeaderSizeIsBounded: a header block over max_header_bytes gets 431.
func TestHeaderSizeIsBounded(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	limits := patient()
	limits.MaxHeaderBytes = 8 << 10
	addr := serveOn(t, sc.App.Admin, limits)
	answer, _ := rawExchange(t, addr, "GET /healthz HTTP/1.1\r\nHost: gdprgate\r\nX-Big: "+strings.Repeat("a", 64<<10)+"\r\n\r\n")
	if !strings.HasPrefix(statusLine(answer), "HTTP/1.1 431") {
		t.Fatalf("answer %q, want 431", statusLine(answer))
	}
}

// TestRequestsThatReadTheirBodyKeepTheConnection: closing is only for
// refusals before the body; a normal exchange keeps the connection alive.
func TestRequestsThatReadTheirBodyKeepTheConnection(t *testing.T) {
	sc := apptest.New(t, apptest.Options{Configure: func(c *config.Config) {
		c.Admin.Tokens = []config.AdminToken{{Name: "ops", SHA256: adminapi.HashToken("secret"), Scopes: []string{"admin"}}}
	}})
	addr := serveOn(t, sc.App.Admin, patient())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(safety))
	br := bufio.NewReader(c)
	for i, body := range []string{`{"id":"p1","name":"P1"}`, `{"id":"p2","name":"P2"}`} {
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/purposes", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer secret")
		req.Header.Set("Content-Type", "application/json")
		if err := req.Write(c); err != nil {
			t.Fatalf("request %d on the same connection: %v", i, err)
		}
		res, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 201 || res.Close {
			t.Fatalf("request %d: %d close=%v", i, res.StatusCode, res.Close)
		}
	}
}
