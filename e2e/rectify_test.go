package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"

	"github.com/gdprgate/gdprgate/authz/envoytest"
	"github.com/gdprgate/gdprgate/internal/audit"
)

// rectifications returns the subject.rectify entries written so far.
func (s *stack) rectifications(t *testing.T) []audit.Entry {
	t.Helper()
	all, _, err := s.app.Store.Audit(context.Background(), "", 10000)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Entry
	for _, e := range all {
		if e.Action == "subject.rectify" {
			out = append(out, e)
		}
	}
	return out
}

// The rectification audit records a change the backend took, after its
// answer: a write it refused leaves no entry. Through Envoy the pending
// entry travels from ext_authz to ext_proc in the dynamic metadata.
func TestRectificationIsAuditedAfterTheBackendTookIt(t *testing.T) {
	s := newAwkwardStack(t)
	body := `{"secret":"New Name","note":"private","public":2}`
	cases := []struct {
		name, query string
		status      int
		entry       string // the entry's status detail; "" = none
	}{
		{"taken", "", 200, "200"},
		{"refused by the backend", "?put=reject", 422, ""},
		{"backend unavailable: maybe taken", "?put=down", 503, "unknown (503)"},
	}
	for _, via := range []string{"envoy", "proxy"} {
		for _, tc := range cases {
			t.Run(via+" "+tc.name, func(t *testing.T) {
				before := len(s.rectifications(t))
				c := call{method: "PUT", path: "/things/c-1" + tc.query, roles: "supervisor", body: body}
				var r result
				if via == "envoy" {
					r = s.viaEnvoy(t, c)
				} else {
					r = s.viaProxy(t, c)
				}
				if r.status != tc.status {
					t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
				}
				got := s.rectifications(t)[before:]
				if tc.entry == "" {
					if len(got) != 0 {
						t.Fatalf("a refused write was audited: %+v", got)
					}
					return
				}
				if len(got) != 1 || got[0].Detail["status"] != tc.entry || got[0].Detail["fields"] != "note,secret" {
					t.Fatalf("entries %+v, want one with status %s", got, tc.entry)
				}
				if strings.Contains(got[0].Subject, "c-1") {
					t.Errorf("subject in clear: %q", got[0].Subject)
				}
			})
		}
	}
}

// A write gdprgate cannot read is refused before the backend sees it, not
// let through unaudited.
func TestUnreadableWritesAreRefused(t *testing.T) {
	s := newAwkwardStack(t)
	sup := "supervisor"
	cases := []struct {
		name   string
		c      call
		ct     string
		status int
		reason string
	}{
		{"a JSON Patch array where the route's fields are an object's keys",
			call{method: "PUT", path: "/things/c-1", roles: sup, body: `[{"op":"replace","path":"/secret","value":"New Name"}]`},
			"application/json-patch+json", 400, "write_body_unexpected"},
		{"a form body", call{method: "PUT", path: "/things/c-1", roles: sup, body: `secret=New+Name`},
			"application/x-www-form-urlencoded", 400, ""},
		{"a body too large for body.max_request_bytes",
			call{method: "PUT", path: "/things/c-1", roles: sup, body: `{"secret":"` + strings.Repeat("N", 70<<10) + `"}`},
			"", 413, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, via := range []string{"envoy", "proxy"} {
				req := tc.c.request(t, "http://gateway.local")
				if tc.ct != "" {
					req.Header.Set("content-type", tc.ct)
				}
				puts := awkwardPuts.Load()
				var status int
				var body string
				if via == "envoy" {
					resp, err := s.envoy.Do(context.Background(), req)
					if err != nil {
						t.Fatal(err)
					}
					status, body = resp.Status, string(resp.Body)
				} else {
					preq := tc.c.request(t, s.proxy)
					if tc.ct != "" {
						preq.Header.Set("content-type", tc.ct)
					}
					resp, err := http.DefaultClient.Do(preq)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					status = resp.StatusCode
				}
				if status != tc.status || tc.reason != "" && via == "envoy" && !strings.Contains(body, tc.reason) {
					t.Errorf("%s: %d %s, want %d %s", via, status, body, tc.status, tc.reason)
				}
				if awkwardPuts.Load() != puts {
					t.Errorf("%s: the backend received the write", via)
				}
			}
		})
	}
}

// Envoy set up without what a write's audit needs: the body not sent to
// ext_authz, a body cut to max_request_bytes, or ext_authz's metadata not
// forwarded to ext_proc. Each write is refused before the backend.
func TestEnvoyWithoutWhatTheAuditNeedsRefusesWrites(t *testing.T) {
	base := newAwkwardStack(t)
	grpcConn := func() envoytest.Options {
		return envoytest.Options{
			Authz: base.grpc, Proc: base.grpc, UpstreamURL: base.upstream,
			ForwardAuthzMetadata: true, SpuriousIsError: true,
			MessageTimeout: 5 * time.Second, AuthzTimeout: 5 * time.Second,
			WithRequestBody: func(method, path string) bool { return method == "PUT" },
		}
	}
	cases := []struct {
		name   string
		opts   func(*envoytest.Options)
		status int
		reason string
	}{
		{"no with_request_body for the route", func(o *envoytest.Options) { o.WithRequestBody = nil }, 400, "write_body_unseen"},
		{"allow_partial_message cuts the body", func(o *envoytest.Options) { o.AllowPartialMessage, o.MaxRequestBytes = true, 16 }, 413, "write_body_too_large"},
		{"ext_authz metadata not forwarded to ext_proc", func(o *envoytest.Options) { o.ForwardAuthzMetadata = false }, 500, "write_not_auditable"},
	}
	t.Run("ext_proc never sent the answer: recorded as unknown", func(t *testing.T) {
		opts := grpcConn()
		opts.DisallowModeOverride = true
		opts.ProcessingMode = envoytest.DefaultProcessingMode()
		opts.ProcessingMode.ResponseHeaderMode = extprocfilterv3.ProcessingMode_SKIP
		opts.ProcessingMode.ResponseBodyMode = extprocfilterv3.ProcessingMode_NONE
		env := envoytest.New(opts)
		t.Cleanup(env.Close)
		before := len(base.rectifications(t))
		resp, err := env.Do(context.Background(), call{method: "PUT", path: "/things/c-1", roles: "supervisor", body: `{"secret":"New Name"}`}.request(t, "http://gateway.local"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != 200 {
			t.Fatalf("%d %s", resp.Status, resp.Body)
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(base.rectifications(t)) == before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // the stream's end reaches gdprgate after the answer
		}
		got := base.rectifications(t)[before:]
		if len(got) != 1 || got[0].Detail["status"] != "unknown" {
			t.Fatalf("entries %+v", got)
		}
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := grpcConn()
			tc.opts(&opts)
			env := envoytest.New(opts)
			t.Cleanup(env.Close)
			before := len(base.rectifications(t))
			puts := awkwardPuts.Load()
			resp, err := env.Do(context.Background(), call{method: "PUT", path: "/things/c-1", roles: "supervisor", body: `{"secret":"New Name"}`}.request(t, "http://gateway.local"))
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != tc.status || !strings.Contains(string(resp.Body), tc.reason) {
				t.Fatalf("%d %s, want %d %s", resp.Status, resp.Body, tc.status, tc.reason)
			}
			if awkwardPuts.Load() != puts {
				t.Error("the backend received the write")
			}
			if n := len(base.rectifications(t)); n != before {
				t.Errorf("%d entries written for a refused write", n-before)
			}
		})
	}
}
