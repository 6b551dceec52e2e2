package authz_test

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/authz/envoytest"
	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/policy/model"
)

// TestExtProcAloneReadsTheCanonicalPath: with ext_proc as the only filter
// (no ext_authz in the chain), the processor's own reading of the request
// is the canonical one: spellings of a mapped URL are redacted, a wiped
// subject is refused and a method override is judged.
func TestExtProcAloneReadsTheCanonicalPath(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	ref := model.SubjectRef{Entity: "contact", ID: "c-8"}
	apptest.QueueWipe(t, sc.App.Store, ref, sc.Now)
	env := envoytest.New(envoytest.Options{Proc: sc.GRPC(t), Upstream: crm.New(sc.Now), SpuriousIsError: true,
		MessageTimeout: 5 * time.Second})
	t.Cleanup(env.Close)

	cases := []struct {
		name, method, target string
		header               map[string]string
		status               int
		leak                 string
	}{
		{"encoded id", "GET", "/api/contacts/c%2D2", map[string]string{"x-gdpr-roles": "agent"}, 200, "Bob"},
		{"upper-case literal", "GET", "/API/Contacts/c-2", map[string]string{"x-gdpr-roles": "agent"}, 404, "Bob"},
		{"wiped, encoded", "GET", "/api/contacts/c%2D8", map[string]string{"x-gdpr-roles": "supervisor"}, 404, "Heidi"},
		{"encoded slash", "GET", "/api/contacts/c%2F2", map[string]string{"x-gdpr-roles": "agent"}, 400, "Bob"},
		{"override without identity", "POST", "/api/contacts/c-1", map[string]string{"x-http-method-override": "GET"}, 401, "Alice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, "http://crm.local/", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.URL = &url.URL{Scheme: "http", Host: "crm.local", Opaque: tc.target}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := env.Do(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			// The CRM itself answers the upper-case spelling 404; what
			// matters is what gdprgate lets out.
			if resp.Status != tc.status {
				t.Errorf("status %d %s, want %d", resp.Status, resp.Body, tc.status)
			}
			if bytes.Contains(resp.Body, []byte(tc.leak)) {
				t.Errorf("%s in clear: %s", tc.leak, resp.Body)
			}
			if tc.status == 400 && !strings.Contains(string(resp.Body), "encoded_slash") {
				t.Errorf("400 without its reason: %s", resp.Body)
			}
		})
	}
}

// TestOwnHeadersStrippedUpstream: no x-gdpr-* header of the client's
// reaches the backend, with ext_proc alone or behind ext_authz (which leaves
// the identity headers of a mapped route for ext_proc to decide with).
func TestOwnHeadersStrippedUpstream(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	upstream := crm.New(sc.Now)
	h := map[string]string{"x-gdpr-roles": "agent", "x-gdpr-project": "p-1", "x-gdpr-caller": "mallory", "x-gdpr-anything": "x"}
	do := func(env *envoytest.Envoy, target string) *envoytest.Response {
		t.Helper()
		req, err := http.NewRequest("GET", "http://crm.local"+target, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := env.Do(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	alone := envoytest.New(envoytest.Options{Proc: sc.GRPC(t), Upstream: upstream, SpuriousIsError: true, MessageTimeout: 5 * time.Second})
	t.Cleanup(alone.Close)
	resp := do(alone, "/api/contacts/c-1")
	if resp.Status != 200 || resp.Upstream == nil {
		t.Fatalf("ext_proc alone: %d %s", resp.Status, resp.Body)
	}
	for k := range resp.Upstream.Header {
		if lk := strings.ToLower(k); strings.HasPrefix(lk, "x-gdpr-") && lk != "x-gdpr-decision-id" {
			t.Errorf("ext_proc alone: the backend got %s", k)
		}
	}

	both := envoytest.New(envoytest.Options{Authz: sc.GRPC(t), Proc: sc.GRPC(t), Upstream: upstream, SpuriousIsError: true,
		MessageTimeout: 5 * time.Second, AuthzTimeout: 5 * time.Second})
	t.Cleanup(both.Close)
	for _, target := range []string{"/api/contacts/c-1", "/api/notes"} {
		resp := do(both, target)
		if resp.Upstream == nil {
			t.Fatalf("ext_authz and ext_proc, %s: %d %s", target, resp.Status, resp.Body)
		}
		for k := range resp.Upstream.Header {
			if lk := strings.ToLower(k); strings.HasPrefix(lk, "x-gdpr-") && lk != "x-gdpr-decision-id" {
				t.Errorf("ext_authz and ext_proc, %s: the backend got %s", target, k)
			}
		}
	}

	// ext_authz alone removes everything but the identity headers of a
	// mapped route (ext_proc would need them); on an unmapped route, all.
	authzOnly := envoytest.New(envoytest.Options{Authz: sc.GRPC(t), Upstream: upstream, AuthzTimeout: 5 * time.Second})
	t.Cleanup(authzOnly.Close)
	if resp := do(authzOnly, "/api/notes"); resp.Upstream == nil || resp.Upstream.Header.Get("x-gdpr-roles") != "" || resp.Upstream.Header.Get("x-gdpr-anything") != "" {
		t.Errorf("ext_authz alone, unmapped route: the backend got the client's x-gdpr-* headers")
	}
	if resp := do(authzOnly, "/api/contacts/c-1"); resp.Upstream == nil || resp.Upstream.Header.Get("x-gdpr-anything") != "" || resp.Upstream.Header.Get("x-gdpr-caller") == "" {
		t.Errorf("ext_authz alone, mapped route: want x-gdpr-anything removed, the identity headers kept for ext_proc")
	}
}
