package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// untestedPolicy shows every field to everyone and has no test_ rule.
const untestedPolicy = `package gdprgate.authz

decision := {"allow": true, "status": 200, "reason": "allowed", "message": "", "headers": {}, "visible_mask": 4294967295}
`

// TestPolicyWithoutTestsIsRefused: issue 10 §5 observed a policy showing
// every field go live when its test file was deleted. A policy needs at
// least one passing test_ rule, at start and on reload, like `gdprgate
// policy test`, unless AllowUntested.
func TestPolicyWithoutTestsIsRefused(t *testing.T) {
	t.Run("at start", func(t *testing.T) {
		dir := t.TempDir()
		writePolicy(t, dir, untestedPolicy)
		_, err := New(context.Background(), Options{Dir: dir, Logger: quiet})
		if err == nil || !strings.Contains(err.Error(), "no test_ rule") || !strings.Contains(err.Error(), "--policy-allow-untested") {
			t.Fatalf("New of an untested policy: %v", err)
		}
		if _, err := New(context.Background(), Options{Dir: dir, Logger: quiet, AllowUntested: true}); err != nil {
			t.Fatalf("New with AllowUntested: %v", err)
		}
	})
	t.Run("on reload when the test file is deleted", func(t *testing.T) {
		dir := t.TempDir()
		writePolicy(t, dir, untestedPolicy)
		test := filepath.Join(dir, "authz_test.rego")
		if err := os.WriteFile(test, []byte("package gdprgate.authz\n\ntest_allows if decision.allow\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		var last error
		e, err := New(context.Background(), Options{Dir: dir, Logger: quiet, OnReload: func(err error) { last = err }})
		if err != nil {
			t.Fatal(err)
		}
		// Tighten the policy, then delete its test: the new files must not
		// serve, and the tested generation keeps serving.
		writePolicy(t, dir, versionPolicy(1))
		if err := e.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		writePolicy(t, dir, untestedPolicy)
		if err := os.Remove(test); err != nil {
			t.Fatal(err)
		}
		if err := e.Reload(context.Background()); err == nil || last == nil || !strings.Contains(err.Error(), "no test_ rule") {
			t.Fatalf("Reload of an untested policy: %v (OnReload %v)", err, last)
		}
		if d, err := e.Decide(context.Background(), alice(agent()), nil); err != nil || d.VisibleMask != 1 {
			t.Fatalf("after the refused reload: %+v, %v; want the tested version 1", d, err)
		}
		if e.Refused() == nil {
			t.Fatal("Refused() is nil after a refused reload")
		}
	})
	t.Run("allowed on reload when configured", func(t *testing.T) {
		dir := t.TempDir()
		writePolicy(t, dir, versionPolicy(1))
		e, err := New(context.Background(), Options{Dir: dir, Logger: quiet, AllowUntested: true})
		if err != nil {
			t.Fatal(err)
		}
		writePolicy(t, dir, untestedPolicy)
		if err := e.Reload(context.Background()); err != nil {
			t.Fatalf("Reload with AllowUntested: %v", err)
		}
	})
}
