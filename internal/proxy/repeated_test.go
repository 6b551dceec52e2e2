package proxy_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/proxy"
)

// TestRepeatedResponseHeadersAreReadAsOneList: a backend answer with
// Content-Encoding twice ("identity", then "gzip") is coded by both, as
// HTTP defines repeated fields and as Envoy hands them to ext_proc (joined
// with ","). The proxy used to read only the first, so it took a gzip body
// for plain bytes: a body that reads as JSON one way and as gzip the other
// would have been checked as the one and delivered as the other.
func TestRepeatedResponseHeadersAreReadAsOneList(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	io.WriteString(zw, `{"data":[{"id":"c-1","first_name":"Alice","health_notes":"SECRET-NOTE"}],"page":1}`)
	zw.Close()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "application/json")
		w.Header().Add("content-encoding", "identity")
		w.Header().Add("content-encoding", "gzip")
		w.Write(zipped.Bytes())
	}))
	t.Cleanup(backend.Close)
	cfg := sc.App.Config
	p, err := proxy.New(proxy.Options{Gate: sc.App.Gate, Upstream: backend.URL, Logger: apptest.Quiet(),
		MaxRequestBytes: cfg.Body.MaxRequestBytes, MaxBodyBytes: 1 << 20,
		IdentityHeaders: []string{cfg.Identity.RolesHeader, cfg.Identity.CallerHeader, cfg.Identity.ProjectHeader}})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	req, _ := http.NewRequest("GET", front.URL+"/api/contacts", nil)
	req.Header.Set("x-gdpr-roles", "agent")
	req.Header.Set("accept-encoding", "identity") // the client decodes nothing itself
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := raw
	if strings.Contains(strings.ToLower(strings.Join(resp.Header.Values("content-encoding"), ",")), "gzip") {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("answer says gzip but is not: %v", err)
		}
		if body, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, body %q; want the list decoded through both codings and redacted", resp.StatusCode, body)
	}
	if bytes.Contains(body, []byte("SECRET-NOTE")) || !bytes.Contains(body, []byte("Alice")) {
		t.Fatalf("answer %q: want the health notes redacted and the name kept", body)
	}
}
