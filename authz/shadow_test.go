package authz_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/authz/envoytest"
	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/proxy"
)

func shadowCount(t *testing.T, sc *apptest.Scenario, route, outcome, reason string) float64 {
	t.Helper()
	mfs, err := sc.App.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "gdprgate_shadow_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["route"] == route && l["outcome"] == outcome && l["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestShadowModeDecidesButChangesNothing: globally in shadow mode, a
// request that would be denied and an answer that would be redacted pass
// unchanged, through Envoy emulation over gRPC; the would-deny and
// would-redact counts and the decision log say what enforcing would do.
func TestShadowModeDecidesButChangesNothing(t *testing.T) {
	var mu sync.Mutex
	var logs bytes.Buffer
	now := time.Now().UTC().Truncate(time.Second)
	backend := httptest.NewServer(crm.New(now))
	t.Cleanup(backend.Close)
	sc := apptest.New(t, apptest.Options{Now: now, DecisionLogOutput: lockedWriter{&mu, &logs}, Configure: func(c *config.Config) {
		c.Mode = config.ModeShadow
		c.OPA = map[string]any{"decision_logs": map[string]any{"console": true}}
	}})
	conn := sc.GRPC(t)
	env := envoytest.New(envoytest.Options{Authz: conn, Proc: conn, UpstreamURL: backend.URL, ForwardAuthzMetadata: true,
		SpuriousIsError: true, AuthzTimeout: 10 * time.Second, MessageTimeout: 10 * time.Second})
	t.Cleanup(env.Close)

	// Eve is obliviated: enforcing would answer 404; shadow lets the backend answer.
	resp := do(t, env, "GET", "/api/contacts/c-5", map[string]string{"x-gdpr-roles": "agent"}, "")
	if resp.Status != 200 || resp.Upstream == nil || resp.AuthzDenied {
		t.Fatalf("shadow denied or changed the request: %d %s", resp.Status, resp.Body)
	}
	if got := shadowCount(t, sc, "contact", "would_deny", "subject_not_found"); got != 1 {
		t.Errorf("would_deny subject_not_found = %v, want 1", got)
	}
	// Alice's health notes would be redacted for an agent: the body is the backend's.
	direct, err := http.Get(backend.URL + "/api/contacts/c-1")
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	_, _ = want.ReadFrom(direct.Body)
	direct.Body.Close()
	resp = do(t, env, "GET", "/api/contacts/c-1", map[string]string{"x-gdpr-roles": "agent"}, "")
	if resp.Status != 200 || !bytes.Equal(resp.Body, want.Bytes()) {
		t.Fatalf("shadow changed the body:\n got %s\nwant %s", resp.Body, want.Bytes())
	}
	if resp.Header.Get("x-gdpr-redacted") != "" || resp.Header.Get("x-gdpr-coverage") != "" {
		t.Errorf("shadow added gdprgate's headers: %v", resp.Header)
	}
	if got := shadowCount(t, sc, "contact", "would_redact", "redacted"); got != 1 {
		t.Errorf("would_redact = %v, want 1", got)
	}
	// ext_proc took both decisions from ext_authz's sealed plans: shadow
	// mode travels with them.
	if got := plans(t, sc)["reused"]; got != 2 {
		t.Errorf("plans reused %v, want 2", got)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		s := logs.String()
		mu.Unlock()
		if strings.Contains(s, `"would":{"allowed":false,"http_status":404,"reason":"subject_not_found"}`) &&
			strings.Contains(s, `"redacted":["health_notes"]`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the decision log does not say what enforcing would do:\n%s", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestShadowModePerRoute: one route in shadow while the rest enforces,
// through the proxy.
func TestShadowModePerRoute(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	backend := httptest.NewServer(crm.New(now))
	t.Cleanup(backend.Close)
	sc := apptest.New(t, apptest.Options{Now: now, Configure: func(c *config.Config) {
		for i := range c.Routes {
			if c.Routes[i].Name == "contact" {
				c.Routes[i].Mode = config.ModeShadow
			}
		}
	}})
	p, err := proxy.New(proxy.Options{Gate: sc.App.Gate, Upstream: backend.URL, MaxRequestBytes: 1 << 16, MaxBodyBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ps := httptest.NewServer(p)
	t.Cleanup(ps.Close)
	get := func(path string) (int, map[string]any) {
		req, _ := http.NewRequest("GET", ps.URL+path, nil)
		req.Header.Set("x-gdpr-roles", "agent")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&doc)
		return resp.StatusCode, doc
	}
	if code, doc := get("/api/contacts/c-1"); code != 200 || doc["health_notes"] == nil {
		t.Errorf("shadowed route: %d %v, want Alice's health notes unredacted", code, doc)
	}
	if code, _ := get("/api/contacts/c-5"); code != 200 {
		t.Errorf("shadowed route, obliviated Eve: %d, want the backend's 200", code)
	}
	code, doc := get("/api/contacts")
	items, _ := doc["data"].([]any)
	if code != 200 || len(items) == 0 {
		t.Fatalf("list: %d %v", code, doc)
	}
	for _, it := range items {
		if m, _ := it.(map[string]any); m["id"] == "c-1" && m["health_notes"] != nil {
			t.Errorf("the enforcing list route showed Alice's health notes: %v", m)
		}
	}
}
