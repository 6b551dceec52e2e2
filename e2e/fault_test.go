package e2e

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/testredis"
)

// faultStack is the scenario on a Redis the test can kill, with a short
// staleness bound.
func faultStack(t *testing.T, failOpen bool) (*stack, *testredis.Server) {
	t.Helper()
	rs := testredis.Start(t)
	now := time.Now().UTC().Truncate(time.Second)
	backend := crm.New(now)
	crmSrv := httptest.NewServer(backend)
	t.Cleanup(crmSrv.Close)
	sc := apptest.New(t, apptest.Options{Now: now, Configure: func(cfg *config.Config) {
		cfg.Upstream = crmSrv.URL
		cfg.RedisURL = rs.URL()
		cfg.Store.MaxStaleness = time.Second
		cfg.Store.Timeout = 200 * time.Millisecond
		cfg.FailOpen = failOpen
	}})
	s := front(t, sc, crmSrv.URL, func(method, path string) bool { return strings.HasPrefix(path, "/api/outbound/") })
	s.crm, s.crmURL = backend, crmSrv.URL
	return s, rs
}

// warmUp caches c's subject on both paths. The store timeout is short (it
// is the subject of these tests): on a loaded machine a first read may miss
// it and fail closed, which is right but not what the warm-up is for.
func warmUp(t *testing.T, s *stack, c call) {
	t.Helper()
	eventually(t, 30*time.Second, "warm-up", func() bool {
		return s.viaEnvoy(t, c).status == 200 && s.viaProxy(t, c).status == 200
	})
}

// eventually polls cond for up to limit (bounded; not a timing assertion).
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s", what, limit)
}

func TestStoreDownFailsClosed(t *testing.T) {
	s, rs := faultStack(t, false)
	alice := call{path: "/api/contacts/c-1", roles: "agent"}
	warmUp(t, s, alice)
	rs.Kill()

	// A subject never seen before cannot be decided: deny, on both paths.
	heidi := call{path: "/api/contacts/c-8", roles: "agent"}
	for _, r := range []result{s.viaEnvoy(t, heidi), s.viaProxy(t, heidi)} {
		if r.status != 503 || bytes.Contains(r.body, []byte("Heidi")) {
			t.Errorf("uncached subject with the store down: %d %s", r.status, r.body)
		}
	}
	// A cached one is served until the staleness bound, then denied too;
	// whatever the moment, never an unredacted answer the policy did not make.
	eventually(t, 15*time.Second, "cached subject denied after the staleness bound", func() bool {
		return s.viaProxy(t, alice).status == 503 && s.viaEnvoy(t, alice).status == 503
	})

	rs.Restart()
	eventually(t, 15*time.Second, "recovery after Redis is back", func() bool {
		return s.viaProxy(t, alice).status == 200 && s.viaEnvoy(t, heidi).status == 200
	})
}

// TestStoreHungFailsClosed freezes Redis (SIGSTOP): connections hang rather
// than fail. Decisions that need the store must end in 503 on the store's
// own timeout, and cached subjects must stop being served once the
// staleness bound passed — the outcomes, not the time they took.
func TestStoreHungFailsClosed(t *testing.T) {
	s, rs := faultStack(t, false)
	alice := call{path: "/api/contacts/c-1", roles: "agent"}
	warmUp(t, s, alice)
	rs.Stop()
	t.Cleanup(rs.Continue)

	heidi := call{path: "/api/contacts/c-8", roles: "agent"}
	for _, r := range []result{s.viaEnvoy(t, heidi), s.viaProxy(t, heidi)} {
		if r.status != 503 || bytes.Contains(r.body, []byte("Heidi")) {
			t.Errorf("uncached subject with the store hung: %d %s", r.status, r.body)
		}
	}
	eventually(t, 15*time.Second, "cached subject denied after the staleness bound", func() bool {
		return s.viaProxy(t, alice).status == 503 && s.viaEnvoy(t, alice).status == 503
	})

	rs.Continue()
	eventually(t, 15*time.Second, "recovery after Redis thaws", func() bool {
		return s.viaProxy(t, alice).status == 200 && s.viaEnvoy(t, heidi).status == 200
	})
}

func TestStoreDownFailOpenRedactsEverything(t *testing.T) {
	s, rs := faultStack(t, true)
	rs.Kill()
	heidi := call{path: "/api/contacts/c-8", roles: "supervisor"}
	var r result
	eventually(t, 15*time.Second, "fail-open answer", func() bool {
		r = s.viaProxy(t, heidi)
		return r.status == 200
	})
	want := decode(t, s.raw(t, "/api/contacts/c-8")).(map[string]any)
	redactContact(want, 0)
	sameJSON(t, r.body, want)
	if got := r.header.Get("x-gdpr-degraded"); got != "store_unavailable" {
		t.Errorf("x-gdpr-degraded %q", got)
	}
	if e := s.viaEnvoy(t, heidi); e.status != 200 || !bytes.Equal(e.body, r.body) {
		t.Errorf("envoy path: %d %s", e.status, e.body)
	}
}
