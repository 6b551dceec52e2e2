package adminapi

import (
	"context"
	"testing"
	"time"
)

// The manual: with GdprEnforced false "the corresponding processes of
// archiving, expiration and forgetting in data processing are not running".
// The instant they stop decides what stays forgotten, so the server records
// it and no client can move it.
func TestEnforcementStopInstantIsSetByTheServer(t *testing.T) {
	e := newEnv(t)
	stored := func() *time.Time {
		ix, err := e.store.Registers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return ix.Registers.Config.EnforcementStoppedAt
	}
	// Turning enforcement off needs admin and "confirm" (issue 10 §4).
	r := e.do("PUT", "/v1/config", ScopeAdmin, wholeConfig(`"gdpr_enforced":false,"confirm":true,"enforcement_stopped_at":"2001-01-01T00:00:00Z"`))
	if r.status != 200 {
		t.Fatalf("stop: %d %s", r.status, r.body)
	}
	if got := stored(); got == nil || !got.Equal(e.now) {
		t.Fatalf("enforcement_stopped_at = %v, want the server's now %v", got, e.now)
	}
	// Still off: a later change keeps the instant it stopped.
	if r = e.do("PUT", "/v1/config", ScopeEditItems, wholeConfig(`"gdpr_enforced":false,"suspend_wipes":true,"enforcement_stopped_at":"2030-01-01T00:00:00Z"`)); r.status != 200 {
		t.Fatalf("change while off: %d %s", r.status, r.body)
	}
	if got := stored(); got == nil || !got.Equal(e.now) {
		t.Fatalf("enforcement_stopped_at moved to %v while enforcement stayed off", got)
	}
	if r = e.do("PUT", "/v1/config", ScopeEditItems, wholeConfig(`"gdpr_enforced":true`)); r.status != 200 {
		t.Fatalf("restart: %d %s", r.status, r.body)
	}
	if got := stored(); got != nil {
		t.Fatalf("enforcement_stopped_at = %v while enforced", got)
	}
}
