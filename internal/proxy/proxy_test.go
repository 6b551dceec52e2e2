package proxy_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/gate"
	"github.com/gdprgate/gdprgate/internal/proxy"
)

// recorder is the CRM behind the proxy, remembering the headers of the
// last request it served.
type recorder struct {
	mu   sync.Mutex
	last http.Header
	next http.Handler
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.last = req.Header.Clone()
	r.mu.Unlock()
	r.next.ServeHTTP(w, req)
}

func (r *recorder) header() http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

type env struct {
	p       *proxy.Proxy
	backend *recorder
}

func newEnv(t *testing.T, trusted []netip.Prefix, configure func(*config.Config)) *env {
	t.Helper()
	sc := apptest.New(t, apptest.Options{Configure: configure})
	rec := &recorder{next: crm.New(sc.Now)}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	cfg := sc.App.Config
	p, err := proxy.New(proxy.Options{Gate: sc.App.Gate, Upstream: srv.URL, Logger: apptest.Quiet(),
		MaxRequestBytes: cfg.Body.MaxRequestBytes, MaxBodyBytes: cfg.Body.MaxBytes, TrustedSources: trusted,
		IdentityHeaders: []string{cfg.Identity.RolesHeader, cfg.Identity.CallerHeader, cfg.Identity.ProjectHeader}})
	if err != nil {
		t.Fatal(err)
	}
	return &env{p: p, backend: rec}
}

func (e *env) do(t *testing.T, remote, method, target string, header map[string]string, body string) (*http.Response, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	req.RemoteAddr = remote
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rr := httptest.NewRecorder()
	e.p.ServeHTTP(rr, req)
	res := rr.Result()
	var m map[string]any
	_ = json.Unmarshal(rr.Body.Bytes(), &m)
	return res, m
}

// TestIdentityHeadersOnlyFromTrustedPeers: a client that reaches the proxy
// directly cannot name its own roles (issue 10 §5).
func TestIdentityHeadersOnlyFromTrustedPeers(t *testing.T) {
	sup := map[string]string{"x-gdpr-roles": "supervisor"}
	t.Run("default: loopback only", func(t *testing.T) {
		e := newEnv(t, nil, nil)
		if res, _ := e.do(t, "127.0.0.1:40000", "GET", "/api/contacts/c-1", sup, ""); res.StatusCode != 200 {
			t.Errorf("loopback peer: %d, want 200", res.StatusCode)
		}
		if res, _ := e.do(t, "[::1]:40000", "GET", "/api/contacts/c-1", sup, ""); res.StatusCode != 200 {
			t.Errorf("IPv6 loopback peer: %d, want 200", res.StatusCode)
		}
		if res, m := e.do(t, "192.0.2.7:40000", "GET", "/api/contacts/c-1", sup, ""); res.StatusCode != 401 {
			t.Errorf("remote peer claiming supervisor: %d %v, want 401", res.StatusCode, m)
		}
		// The CRM answers an unknown path 404 itself: no identity needed.
		if res, m := e.do(t, "192.0.2.7:40000", "GET", "/api/notes", sup, ""); res.StatusCode != 404 || m["error"] != "not found" {
			t.Errorf("remote peer on an unmapped route: %d %v, want the backend's 404", res.StatusCode, m)
		}
	})
	t.Run("configured sources", func(t *testing.T) {
		e := newEnv(t, []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, nil)
		if res, _ := e.do(t, "10.1.2.3:40000", "GET", "/api/contacts/c-1", sup, ""); res.StatusCode != 200 {
			t.Errorf("trusted load balancer: %d, want 200", res.StatusCode)
		}
		if res, _ := e.do(t, "127.0.0.1:40000", "GET", "/api/contacts/c-1", sup, ""); res.StatusCode != 401 {
			t.Errorf("loopback is not trusted once sources are configured: %d, want 401", res.StatusCode)
		}
		if res, _ := e.do(t, "10.2.0.1:40000", "GET", "/api/contacts/c-1", map[string]string{"x-gdpr-roles": "supervisor", "x-forwarded-for": "10.1.2.3"}, ""); res.StatusCode != 401 {
			t.Errorf("X-Forwarded-For made a peer trusted: %d, want 401", res.StatusCode)
		}
	})
	t.Run("JWT from anyone, roles header only from trusted peers", func(t *testing.T) {
		const secret = "a-test-secret-of-at-least-32-bytes!!"
		t.Setenv("TEST_PROXY_JWT_SECRET", secret)
		trust := true
		e := newEnv(t, nil, func(c *config.Config) {
			c.Identity.JWT = &config.JWTConfig{HS256SecretEnv: "TEST_PROXY_JWT_SECRET"}
			c.Identity.TrustRolesHeader = &trust
		})
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u1", "exp": time.Now().Add(time.Hour).Unix(),
			"roles": []string{"agent"}}).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		h := map[string]string{"authorization": "Bearer " + tok, "x-gdpr-roles": "supervisor"}
		res, m := e.do(t, "192.0.2.7:40000", "GET", "/api/contacts/c-1", h, "")
		if res.StatusCode != 200 || m["health_notes"] != nil {
			t.Errorf("remote agent token with a supervisor header: %d health_notes=%v, want the agent's view", res.StatusCode, m["health_notes"])
		}
		res, m = e.do(t, "127.0.0.1:40000", "GET", "/api/contacts/c-1", h, "")
		if res.StatusCode != 200 || m["health_notes"] == nil {
			t.Errorf("trusted peer's roles header: %d health_notes=%v, want the supervisor's view", res.StatusCode, m["health_notes"])
		}
	})
}

// TestClientGdprHeadersNeverReachTheBackend: whatever x-gdpr-* a client
// sends, in any spelling, the backend sees only gdprgate's own.
func TestClientGdprHeadersNeverReachTheBackend(t *testing.T) {
	e := newEnv(t, nil, nil)
	h := map[string]string{"x-gdpr-roles": "agent", "x-gdpr-mode": "archive", "x-gdpr-project": "p-1", "x-gdpr-caller": "mallory",
		"x-gdpr-coverage": "green", "x-gdpr-decision-id": "forged", "X-GDPR-Anything": "x", "x_gdpr_roles": "supervisor"}
	for target, status := range map[string]int{"/api/contacts/c-1": 200, "/api/notes": 404} {
		res, _ := e.do(t, "127.0.0.1:40000", "GET", target, h, "")
		if res.StatusCode != status {
			t.Fatalf("%s: %d", target, res.StatusCode)
		}
		for k, v := range e.backend.header() {
			if gate.IsOwnHeader(k) && !strings.EqualFold(k, gate.HeaderDecisionID) && !strings.EqualFold(k, gate.HeaderCoverage) && !strings.EqualFold(k, gate.HeaderCoverageBits) {
				t.Errorf("%s: the backend got the client's %s: %v", target, k, v)
			}
		}
		if id := e.backend.header().Get(gate.HeaderDecisionID); id == "" || id == "forged" {
			t.Errorf("%s: backend decision id %q, want gdprgate's", target, id)
		}
		if c := e.backend.header().Get(gate.HeaderCoverage); c == "green" {
			t.Errorf("%s: the client's coverage reached the backend", target)
		}
	}
}

// TestProjectHeaderJudgedLikeRoles: the project header counts where the
// roles header counts, and a repeated one is refused.
func TestProjectHeaderJudgedLikeRoles(t *testing.T) {
	e := newEnv(t, nil, nil)
	body := `{"contact_id":"c-1","type":"adhoc"}`
	h := map[string]string{"x-gdpr-roles": "agent", "content-type": "application/json", "x-gdpr-project": "p-1"}
	if res, m := e.do(t, "127.0.0.1:40000", "POST", "/api/outbound/calls", h, body); res.StatusCode != 202 {
		t.Errorf("one project: %d %v", res.StatusCode, m)
	}
	h["x-gdpr-project"] = "p-1,p-2"
	if res, m := e.do(t, "127.0.0.1:40000", "POST", "/api/outbound/calls", h, body); res.StatusCode != 400 || m["error"] != "ambiguous_header" {
		t.Errorf("repeated project: %d %v, want 400 ambiguous_header", res.StatusCode, m)
	}
}
