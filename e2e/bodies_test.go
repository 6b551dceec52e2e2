package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/andybalholm/brotli"

	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
)

const awkwardConfig = `
body:
  max_bytes: 4096
routes:
  - name: thing
    method: GET
    path: /things/{id}
    kind: read
    subject: {entity: contact, from: path, name: id}
    fields: {secret: contact, "nested.secret": contact}
  - name: rectify
    method: PUT
    path: /things/{id}
    kind: write
    subject: {entity: contact, from: path, name: id}
    fields: {secret: contact, note: health}
`

// awkwardBackend answers by the ?case= query parameter.
func awkwardBackend(w http.ResponseWriter, r *http.Request) {
	body := []byte(`{"id":"x","secret":"Alice Example","nested":{"secret":"again"},"public":1}`)
	switch r.URL.Query().Get("case") {
	case "json":
		w.Header().Set("content-type", "application/json")
		w.Write(body)
	case "text":
		w.Header().Set("content-type", "text/plain")
		w.Write([]byte("secret: Alice Example"))
	case "invalid":
		w.Header().Set("content-type", "application/json")
		w.Write([]byte(`{"secret":"Alice Example",}`))
	case "gzip":
		w.Header().Set("content-type", "application/json")
		w.Header().Set("content-encoding", "gzip")
		zw := gzip.NewWriter(w)
		zw.Write(body)
		zw.Close()
	case "br":
		w.Header().Set("content-type", "application/json")
		w.Header().Set("content-encoding", "br")
		bw := brotli.NewWriter(w)
		bw.Write(body)
		bw.Close()
	case "large":
		w.Header().Set("content-type", "application/json")
		w.Write([]byte(`{"secret":"` + strings.Repeat("A", 8000) + `"}`))
	case "nocontent":
		w.WriteHeader(204)
	case "error-text":
		w.Header().Set("content-type", "text/plain")
		w.WriteHeader(500)
		w.Write([]byte("backend exploded"))
	case "error-json":
		w.Header().Set("content-type", "application/json")
		w.WriteHeader(404)
		w.Write([]byte(`{"error":"not found"}`))
	case "error-record-text":
		// An error page can carry the record as well as a 2xx.
		w.Header().Set("content-type", "text/html")
		w.WriteHeader(409)
		w.Write([]byte("<p>conflict with secret: Alice Example</p>"))
	case "error-record-json":
		w.Header().Set("content-type", "application/json")
		w.WriteHeader(409)
		w.Write([]byte(`{"error":"conflict","secret":"Alice Example","public":1}`))
	case "error-invalid":
		w.Header().Set("content-type", "application/json")
		w.WriteHeader(500)
		w.Write([]byte(`{"secret":"Alice Example",}`))
	case "array":
		w.Header().Set("content-type", "application/json")
		w.Write([]byte(`[{"secret":"Alice Example"}]`))
	case "case":
		w.Header().Set("content-type", "application/json")
		w.Write([]byte(`{"SECRET":"Alice Example","secre\u0074":"Alice Example","Nested":{"Secret":"Alice Example"},"public":1}`))
	default:
		if r.Method == "PUT" {
			awkwardPuts.Add(1)
			w.Header().Set("content-type", "application/json")
			switch r.URL.Query().Get("put") {
			case "reject":
				w.WriteHeader(422)
				w.Write([]byte(`{"error":"invalid"}`))
			case "down":
				w.WriteHeader(503)
				w.Write([]byte(`{"error":"maintenance"}`))
			default:
				w.Write([]byte(`{"ok":true}`))
			}
			return
		}
		w.WriteHeader(400)
	}
}

// awkwardPuts counts the PUTs the awkward backend received.
var awkwardPuts atomic.Int64

func newAwkwardStack(t *testing.T) *stack {
	t.Helper()
	be := httptest.NewServer(http.HandlerFunc(awkwardBackend))
	t.Cleanup(be.Close)
	sc := apptest.New(t, apptest.Options{ConfigYAML: []byte(awkwardConfig), Configure: func(cfg *config.Config) { cfg.Upstream = be.URL }})
	return front(t, sc, be.URL, func(method, path string) bool { return method == "PUT" })
}

func decodeBody(t *testing.T, r result) []byte {
	t.Helper()
	switch r.header.Get("content-encoding") {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		return b
	case "br":
		b, err := io.ReadAll(brotli.NewReader(bytes.NewReader(r.body)))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return r.body
}

func TestAwkwardBodies(t *testing.T) {
	s := newAwkwardStack(t)
	redacted := `{"id":"x","secret":null,"nested":{"secret":null},"public":1}`
	cases := []struct {
		name   string
		c      call
		status int
		body   string // "" = empty; exact JSON otherwise
		reason string // for refusals
	}{
		{"json is redacted", call{path: "/things/c-2?case=json", roles: "agent"}, 200, redacted, ""},
		{"json visible to a supervisor in archive mode", call{path: "/things/c-2?case=json", roles: "supervisor", mode: "archive"}, 200,
			`{"id":"x","secret":"Alice Example","nested":{"secret":"again"},"public":1}`, ""},
		{"not JSON on a mapped route fails closed", call{path: "/things/c-2?case=text", roles: "agent"}, 502, "", "body_not_json"},
		{"invalid JSON fails closed", call{path: "/things/c-2?case=invalid", roles: "agent"}, 502, "", "body_not_json"},
		{"gzip is decoded, redacted and re-encoded", call{path: "/things/c-2?case=gzip", roles: "agent"}, 200, redacted, ""},
		{"brotli is decoded, redacted and re-encoded", call{path: "/things/c-2?case=br", roles: "agent"}, 200, redacted, ""},
		{"a body over the limit fails closed", call{path: "/things/c-2?case=large", roles: "agent"}, 502, "", "body_too_large"},
		{"204 passes", call{path: "/things/c-2?case=nocontent", roles: "agent"}, 204, "", ""},
		{"HEAD passes without a body", call{method: "HEAD", path: "/things/c-2?case=json", roles: "agent"}, 200, "", ""},
		{"a backend error page follows body.non_json (fail) like a 2xx", call{path: "/things/c-2?case=error-text", roles: "agent"}, 502, "", "body_not_json"},
		{"an error page carrying the record is refused", call{path: "/things/c-2?case=error-record-text", roles: "agent"}, 502, "", "body_not_json"},
		{"backend JSON error passes", call{path: "/things/c-2?case=error-json", roles: "agent"}, 404, `{"error":"not found"}`, ""},
		{"a JSON error carrying the record is redacted", call{path: "/things/c-2?case=error-record-json", roles: "agent"}, 409,
			`{"error":"conflict","secret":null,"public":1}`, ""},
		{"invalid JSON of an error status fails closed", call{path: "/things/c-2?case=error-invalid", roles: "agent"}, 502, "", "body_not_json"},
		{"a list where the route expects a record fails closed", call{path: "/things/c-2?case=array", roles: "agent"}, 502, "", "body_shape"},
		{"keys in another case or escaped are redacted", call{path: "/things/c-2?case=case", roles: "agent"}, 200,
			`{"SECRET":null,"secret":null,"Nested":{"Secret":null},"public":1}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, via := range []string{"envoy", "proxy"} {
				var r result
				if via == "envoy" {
					r = s.viaEnvoy(t, tc.c)
				} else {
					r = s.viaProxy(t, tc.c)
				}
				if r.status != tc.status {
					t.Fatalf("%s: status %d, want %d: %s", via, r.status, tc.status, r.body)
				}
				body := decodeBody(t, r)
				if bytes.Contains(body, []byte("Alice")) && tc.c.roles == "agent" {
					t.Errorf("%s: personal data leaked: %s", via, body)
				}
				switch {
				case tc.reason != "":
					if !bytes.Contains(body, []byte(tc.reason)) {
						t.Errorf("%s: body %s, want reason %s", via, body, tc.reason)
					}
				case tc.body != "":
					sameJSON(t, body, decode(t, []byte(tc.body)))
				case tc.c.method == "HEAD" || tc.status == 204:
					if len(body) != 0 {
						t.Errorf("%s: body %q, want none", via, body)
					}
				}
			}
		})
	}
}

func TestRectificationIsAuditedByFieldName(t *testing.T) {
	s := newAwkwardStack(t)
	// A supervisor: it may write health notes (an agent may not, see
	// TestWritesNeedRights).
	r := s.viaProxy(t, call{method: "PUT", path: "/things/c-1", roles: "supervisor", body: `{"secret":"New Name","note":"private","public":2}`})
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	entries, _, err := s.app.Store.Audit(context.Background(), "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, e := range entries {
		if e.Action != "subject.rectify" {
			continue
		}
		found = true
		if e.Detail["fields"] != "note,secret" {
			t.Errorf("fields %q, want note,secret", e.Detail["fields"])
		}
		if strings.Contains(e.Subject, "c-1") || !strings.HasPrefix(e.Subject, "h:") {
			t.Errorf("subject not hashed: %q", e.Subject)
		}
		for _, v := range e.Detail {
			if strings.Contains(v, "New Name") || strings.Contains(v, "private") {
				t.Errorf("audit entry holds a value: %v", e.Detail)
			}
		}
	}
	if !found {
		t.Fatal("no subject.rectify audit entry")
	}
}
