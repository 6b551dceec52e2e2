package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/proxy"
)

// TestH2CBackendGetsHTTP2: with proxy.backend_http2: h2c the proxy speaks
// HTTP/2 without TLS to a backend that accepts nothing else, mapped
// answers are redacted as over HTTP/1.1 and unmapped bodies pass.
func TestH2CBackendGetsHTTP2(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	var mu sync.Mutex
	protos := map[string]bool{}
	app := crm.New(sc.Now)
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos[r.Proto] = true
		mu.Unlock()
		if r.URL.Path == "/upload/blob" {
			n, _ := io.Copy(io.Discard, r.Body)
			w.WriteHeader(200)
			_, _ = io.WriteString(w, strings.Repeat("k", int(n/1024)))
			return
		}
		app.ServeHTTP(w, r)
	}))
	backend.Config.Protocols = new(http.Protocols)
	backend.Config.Protocols.SetUnencryptedHTTP2(true) // and not HTTP/1
	backend.Start()
	t.Cleanup(backend.Close)
	cfg := sc.App.Config
	p, err := proxy.New(proxy.Options{Gate: sc.App.Gate, Upstream: backend.URL, Logger: apptest.Quiet(), BackendH2C: true,
		MaxRequestBytes: cfg.Body.MaxRequestBytes, MaxBodyBytes: cfg.Body.MaxBytes,
		IdentityHeaders: []string{cfg.Identity.RolesHeader, cfg.Identity.CallerHeader, cfg.Identity.ProjectHeader}})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)

	req, _ := http.NewRequest("GET", front.URL+"/api/contacts/c-1", nil)
	req.Header.Set("x-gdpr-roles", "agent")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("x-gdpr-redacted") == "" {
		t.Fatalf("mapped answer over h2c: %d, redacted %q: %s", resp.StatusCode, resp.Header.Get("x-gdpr-redacted"), body)
	}
	resp, err = http.Post(front.URL+"/upload/blob", "application/octet-stream", strings.NewReader(strings.Repeat("x", 1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(body) != 1024 {
		t.Fatalf("unmapped upload over h2c: %d, %d bytes back", resp.StatusCode, len(body))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(protos) != 1 || !protos["HTTP/2.0"] {
		t.Fatalf("the backend saw %v, want HTTP/2.0 only", protos)
	}

	if _, err := proxy.New(proxy.Options{Gate: sc.App.Gate, Upstream: "https://crm.example", BackendH2C: true}); err == nil {
		t.Fatal("h2c to an https upstream was accepted")
	}
}
