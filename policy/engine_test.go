package policy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	defaultpolicy "github.com/gdprgate/gdprgate/rego"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newEngine(t testing.TB, dir string, reg prometheus.Registerer) *Engine {
	t.Helper()
	e, err := New(context.Background(), Options{Dir: dir, Logger: quiet, Registerer: reg})
	if err != nil {
		t.Fatalf("New(%q): %v", dir, err)
	}
	return e
}

// Callers of the reference scenario (examples/crm/README.md roles).
func agent() Facts {
	return Facts{RouteKind: KindRead, Enforced: true, Authenticated: true, Roles: "agent", SensitivityMask: 0b0111}
}

func supervisor() Facts {
	f := agent()
	f.Roles, f.SensitivityMask, f.ViewArchived = "supervisor", 0b1111, true
	return f
}

func auditor() Facts {
	f := supervisor()
	f.Roles, f.ViewExpired, f.ExportEvidence = "auditor", true, true
	return f
}

// Subjects of the reference scenario, as the lifecycle computes them.
func alice(f Facts) Facts {
	f.SubjectPresent, f.SubjectKnown, f.Active, f.Coverage, f.CommPermitted = true, true, 0b1111, "blue", true
	f.CoverageExplicit = 0b1111
	return f
}

func bob(f Facts) Facts {
	f.SubjectPresent, f.SubjectKnown, f.Archived, f.Obliviated, f.Coverage = true, true, 0b0111, 0b1000, "blue"
	f.CoverageExplicit = 0b0111
	return f
}

func dan(f Facts) Facts {
	f.SubjectPresent, f.SubjectKnown, f.Active, f.Expired, f.Obliviated, f.Coverage = true, true, 0b0011, 0b0100, 0b1000, "red"
	return f
}

func eve(f Facts) Facts {
	f.SubjectPresent, f.SubjectKnown, f.Obliviated, f.Coverage = true, true, 0b1111, "red"
	return f
}

func wiped(f Facts) Facts {
	f = alice(f)
	f.Restricted = true
	return f
}

func with(f Facts, change func(*Facts)) Facts {
	change(&f)
	return f
}

func TestDefaultPolicyScenario(t *testing.T) {
	e := newEngine(t, "", nil)
	if !e.Memoised() {
		t.Fatal("the default policy must be memoisable")
	}
	allow := func(mask uint32, coverage string) Decision {
		d := Decision{Allow: true, Status: 200, Reason: "allowed", VisibleMask: mask}
		if coverage != "" {
			d.Headers = map[string]string{"x-gdpr-coverage": coverage}
		}
		return d
	}
	deny := func(status int, reason string) Decision {
		return Decision{Status: status, Reason: reason}
	}
	archive := func(f *Facts) { f.ArchiveMode = true }
	tests := []struct {
		name  string
		facts Facts
		want  Decision
	}{
		{"agent sees Alice's bits 0-2 but not health", alice(agent()), allow(0b0111, "blue")},
		{"supervisor sees all of Alice", alice(supervisor()), allow(0b1111, "blue")},
		{"agent sees none of Bob's archived bits", bob(agent()), allow(0, "blue")},
		{"supervisor without archive mode sees none of Bob", bob(supervisor()), allow(0, "blue")},
		{"supervisor in archive mode sees Bob's archived bits, never health", bob(with(supervisor(), archive)), allow(0b0111, "blue")},
		{"agent asking archive mode without permission sees nothing of Bob", bob(with(agent(), archive)), allow(0, "blue")},
		{"agent sees Dan's grace bits only", dan(agent()), allow(0b0011, "red")},
		{"auditor sees Dan's expired bit", dan(auditor()), allow(0b0111, "red")},
		{"obliviated Eve is not found", eve(agent()), deny(404, "subject_not_found")},
		{"obliviated Eve in a list is hidden, not 404", eve(with(agent(), func(f *Facts) { f.RouteKind = KindList })), allow(0, "red")},
		{"wiped subject is not found", wiped(auditor()), deny(404, "subject_not_found")},
		{"wiped subject stays gone when GDPR is not enforced", wiped(with(agent(), func(f *Facts) { f.Enforced = false })), deny(404, "subject_not_found")},
		{"wiped subject in a list is hidden", wiped(with(agent(), func(f *Facts) { f.RouteKind = KindList })), allow(0, "blue")},
		{"export without export_evidence is forbidden", alice(with(agent(), func(f *Facts) { f.RouteKind = KindExport })), deny(403, "export_not_permitted")},
		{"auditor may export", alice(with(auditor(), func(f *Facts) { f.RouteKind = KindExport })), allow(0b1111, "blue")},
		{"campaign call to uncovered Dan is forbidden", dan(with(agent(), func(f *Facts) { f.RouteKind, f.CommType = KindOutbound, "campaign_oc" })), deny(403, "communication_not_permitted")},
		{"campaign call to consenting Alice is allowed", alice(with(agent(), func(f *Facts) { f.RouteKind, f.CommType = KindOutbound, "campaign_oc" })), allow(0b0111, "blue")},
		// The manual: with GdprEnforced false "the corresponding processes of
		// archiving, expiration and forgetting ... are not running" — the
		// lifecycle stops; the role mask, permissions and obliviation stay.
		{"GDPR not enforced: archiving not running, Bob's archived bits count as active, health never", bob(with(agent(), func(f *Facts) { f.Enforced = false })), allow(0b0111, "blue")},
		{"GDPR not enforced: obliviated Eve stays not found", eve(with(agent(), func(f *Facts) { f.Enforced = false })), deny(404, "subject_not_found")},
		{"GDPR not enforced: export still needs export_evidence", alice(with(agent(), func(f *Facts) { f.Enforced, f.RouteKind = false, KindExport })), deny(403, "export_not_permitted")},
		{"unauthenticated caller", alice(with(agent(), func(f *Facts) { f.Authenticated = false })), deny(401, "unauthenticated")},
		{"store unavailable fails closed", alice(with(agent(), func(f *Facts) { f.Unavailable = true })), deny(503, "store_unavailable")},
		{"store unavailable with fail-open allows but shows nothing",
			alice(with(agent(), func(f *Facts) { f.Unavailable, f.FailOpen = true, true })),
			Decision{Allow: true, Status: 200, Reason: "allowed", Headers: map[string]string{"x-gdpr-degraded": "store_unavailable"}}},
		{"fail-open with unproven states (all obliviated) still allows, showing nothing",
			with(agent(), func(f *Facts) {
				f.SubjectPresent, f.Obliviated, f.Unavailable, f.FailOpen = true, ^uint32(0), true, true
			}),
			Decision{Allow: true, Status: 200, Reason: "allowed", Headers: map[string]string{"x-gdpr-degraded": "store_unavailable"}}},
		{"route without subject shows nothing and no coverage", agent(), allow(0, "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.Decide(context.Background(), tt.facts, nil)
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if !got.Allow && got.Message == "" {
				t.Errorf("denial without a message: %+v", got)
			}
			got.Message = ""
			if got.Allow != tt.want.Allow || got.Status != tt.want.Status || got.Reason != tt.want.Reason ||
				got.VisibleMask != tt.want.VisibleMask || !maps.Equal(coverageOnly(got.Headers), tt.want.Headers) {
				t.Errorf("Decide = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// coverageOnly drops the per-bit colours, tested in rego/authz_test.rego.
func coverageOnly(h map[string]string) map[string]string {
	out := maps.Clone(h)
	delete(out, "x-gdpr-coverage-bits")
	return out
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matches(m, labels) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func matches(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func TestDecideMemoisesPerFacts(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEngine(t, "", reg)
	ctx := context.Background()
	evals := func() float64 { return counter(t, reg, "gdprgate_policy_evaluations_total") }

	for range 3 {
		if _, err := e.Decide(ctx, alice(agent()), nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := evals(); got != 1 {
		t.Errorf("equal facts evaluated %v times, want 1", got)
	}
	if got := counter(t, reg, "gdprgate_policy_memo_hits_total"); got != 2 {
		t.Errorf("memo hits = %v, want 2", got)
	}
	if _, err := e.Decide(ctx, bob(agent()), nil); err != nil {
		t.Fatal(err)
	}
	if got := evals(); got != 2 {
		t.Errorf("distinct facts: evaluations = %v, want 2", got)
	}
	e.Invalidate()
	if _, err := e.Decide(ctx, alice(agent()), nil); err != nil {
		t.Fatal(err)
	}
	if got := evals(); got != 3 {
		t.Errorf("after Invalidate: evaluations = %v, want 3", got)
	}
}

func TestMemoStaysBounded(t *testing.T) {
	e, err := New(context.Background(), Options{Logger: quiet, MemoSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	for i := range uint32(1000) {
		f := alice(agent())
		f.Active = i
		if _, err := e.Decide(context.Background(), f, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.cur.Load().memo.len(); n > 64 || n == 0 {
		t.Errorf("memo holds %d decisions, want 1..64", n)
	}
}

func TestPolicyReadingRequestIsNotMemoised(t *testing.T) {
	tests := []struct {
		dir, why string
	}{
		{"testdata/attributes", "reads input.attributes"},
		{"testdata/clock", "calls time.now_ns"},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			c, err := compilePolicy(context.Background(), mustRead(t, tt.dir), "", true)
			if err != nil {
				t.Fatal(err)
			}
			if c.memoisable || !strings.Contains(c.why, tt.why) {
				t.Errorf("memoisable=%v why=%q, want not memoisable because it %s", c.memoisable, c.why, tt.why)
			}
		})
	}
}

func mustRead(t *testing.T, dir string) []sourceFile {
	t.Helper()
	files, err := readSources(dir)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestRequestAttributesReachPolicy(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEngine(t, "testdata/attributes", reg)
	if e.Memoised() {
		t.Fatal("a policy reading input.attributes must not be memoised")
	}
	ctx := context.Background()
	f := alice(agent())
	del, err := e.Decide(ctx, f, &Request{Method: "DELETE", Path: "/api/contacts/c-1"})
	if err != nil {
		t.Fatal(err)
	}
	if del.Allow || del.Status != 405 {
		t.Errorf("DELETE: %+v, want 405", del)
	}
	// parsed_path is opa-envoy-plugin's: the whole path decoded, then split,
	// so an encoded slash separates segments as a plain one does.
	get, err := e.Decide(ctx, f, &Request{Method: "GET", Path: "/api%2Fv/contacts?page=2", Headers: map[string]string{"X-Gdpr-Roles": "agent"}})
	if err != nil {
		t.Fatal(err)
	}
	if !get.Allow || get.Headers["x-first-segment"] != "api" || get.VisibleMask != 0b0111 {
		t.Errorf("GET: %+v, want allowed with x-first-segment api and mask 7", get)
	}
	if got := counter(t, reg, "gdprgate_policy_evaluations_total"); got != 2 {
		t.Errorf("evaluations = %v, want 2 (no memo)", got)
	}
}

func TestBrokenPolicyIsRefused(t *testing.T) {
	tests := []struct {
		name, dir string
		want      []string
	}{
		{"syntax error names file and line", "testdata/broken_syntax", []string{"testdata/broken_syntax/authz.rego:3"}},
		{"failing test names file, line and rule", "testdata/failing_tests", []string{"testdata/failing_tests/authz_test.rego:5", "test_unauthenticated_denied"}},
		{"no decision rule", "testdata/no_decision", []string{"no rule data.gdprgate.authz.decision"}},
		{"missing directory", "testdata/does_not_exist", []string{"does_not_exist"}},
		{"directory without policies", "testdata", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.dir == "testdata" {
				tt.dir = t.TempDir()
				tt.want = []string{"no .rego files"}
			}
			_, err := New(context.Background(), Options{Dir: tt.dir, Logger: quiet})
			if err == nil {
				t.Fatal("New accepted a broken policy")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestMalformedDecisionIsAnError(t *testing.T) {
	// The fixture has no tests: its decisions are malformed on purpose.
	e, err := New(context.Background(), Options{Dir: "testdata/bad_shape", Logger: quiet, AllowUntested: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ kind, want string }{
		{KindRead, "allow is not a boolean"},
		{KindList, "visible_mask is not a number"},
		{KindExport, "denies with status 200"},
		{KindWrite, "not an object"},
		{KindUnmapped, "undefined"},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			f := alice(agent())
			f.RouteKind = tt.kind
			_, err := e.Decide(context.Background(), f, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decide error = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
	f := alice(agent())
	f.RouteKind = KindOutbound
	if d, err := e.Decide(context.Background(), f, nil); err != nil || !d.Allow || d.Headers != nil {
		t.Errorf("well-formed decision without optional fields: %+v, %v", d, err)
	}
}

func TestDecideHonoursContext(t *testing.T) {
	e := newEngine(t, "", nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Decide(ctx, alice(agent()), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Decide with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestRunTests(t *testing.T) {
	tests := []struct {
		dir            string
		passed, failed int
		wantErr        bool
	}{
		{"", 38, 0, false},
		{"testdata/failing_tests", 0, 1, false},
		{"testdata/broken_syntax", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run("dir="+tt.dir, func(t *testing.T) {
			var out strings.Builder
			p, f, err := RunTests(context.Background(), tt.dir, "", &out, false)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if p < tt.passed || f != tt.failed || (tt.passed == 0 && p != 0) {
				t.Errorf("passed=%d failed=%d, want %d and %d\n%s", p, f, tt.passed, tt.failed, out.String())
			}
			if !strings.Contains(out.String(), "PASS") && !strings.Contains(out.String(), "FAIL") {
				t.Errorf("no report written: %q", out.String())
			}
		})
	}
}

// versionPolicy is a minimal valid policy whose decisions show its version
// in visible_mask.
func versionPolicy(v int) string {
	return `package gdprgate.authz

decision := {"allow": true, "status": 200, "reason": "allowed", "message": "", "headers": {}, "visible_mask": ` +
		string(rune('0'+v)) + `}

test_version if decision.visible_mask == ` + string(rune('0'+v)) + "\n"
}

func writePolicy(t *testing.T, dir, src string) {
	t.Helper()
	// Write and rename, as a deployment should, so that no poll sees a
	// half-written file.
	tmp := filepath.Join(dir, "authz.rego.tmp")
	if err := os.WriteFile(tmp, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "authz.rego")); err != nil {
		t.Fatal(err)
	}
}

func TestReloadUnderLoad(t *testing.T) {
	dir := t.TempDir()
	writePolicy(t, dir, versionPolicy(1))
	reg := prometheus.NewRegistry()
	e := newEngine(t, dir, reg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var failures, decisions atomic.Int64
	var sawV2 atomic.Bool
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			f := alice(agent())
			for i := uint32(0); ctx.Err() == nil; i++ {
				f.Active = i % 8 << uint(w) // a mix of memo hits and misses
				d, err := e.Decide(context.Background(), f, nil)
				decisions.Add(1)
				switch {
				case err != nil:
					failures.Add(1)
					t.Errorf("Decide during reload: %v", err)
				case d.VisibleMask == 2:
					sawV2.Store(true)
				case d.VisibleMask != 1:
					failures.Add(1)
					t.Errorf("Decide during reload: mask %d", d.VisibleMask)
				}
			}
		})
	}

	writePolicy(t, dir, versionPolicy(2))
	if err := e.Reload(ctx); err != nil {
		t.Fatalf("Reload of a good policy: %v", err)
	}
	writePolicy(t, dir, "package gdprgate.authz\n\ndecision := {\n")
	if err := e.Reload(ctx); err == nil {
		t.Fatal("Reload accepted a broken policy")
	}
	for !sawV2.Load() && failures.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	wg.Wait()
	if decisions.Load() == 0 || failures.Load() != 0 {
		t.Fatalf("%d decisions, %d failures", decisions.Load(), failures.Load())
	}
	d, err := e.Decide(context.Background(), alice(agent()), nil)
	if err != nil || d.VisibleMask != 2 {
		t.Errorf("after a refused reload: %+v, %v; want version 2 still serving", d, err)
	}
	if s, f := counter(t, reg, "gdprgate_policy_reloads_total", "result", "success"), counter(t, reg, "gdprgate_policy_reloads_total", "result", "failure"); s != 1 || f != 1 {
		t.Errorf("reloads success=%v failure=%v, want 1 and 1", s, f)
	}
}

func TestWatchReloadsChangedPolicy(t *testing.T) {
	dir := t.TempDir()
	writePolicy(t, dir, versionPolicy(1))
	reloaded := make(chan error, 4)
	e, err := New(context.Background(), Options{Dir: dir, Logger: quiet, OnReload: func(err error) { reloaded <- err }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Watch(ctx, time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()

	// Memoise a version 1 decision: the reload must not serve it.
	if d, err := e.Decide(ctx, alice(agent()), nil); err != nil || d.VisibleMask != 1 {
		t.Fatalf("before reload: %+v, %v; want version 1", d, err)
	}
	writePolicy(t, dir, versionPolicy(3))
	if err := <-reloaded; err != nil {
		t.Fatalf("Watch refused a good policy: %v", err)
	}
	if d, err := e.Decide(ctx, alice(agent()), nil); err != nil || d.VisibleMask != 3 {
		t.Errorf("after Watch reload: %+v, %v; want version 3", d, err)
	}
	writePolicy(t, dir, strings.Replace(versionPolicy(4), "== 4", "== 5", 1)) // its test fails
	if err := <-reloaded; err == nil || !strings.Contains(err.Error(), "test_version") {
		t.Fatalf("Watch accepted a policy failing its tests: %v", err)
	}
	if d, err := e.Decide(ctx, alice(agent()), nil); err != nil || d.VisibleMask != 3 {
		t.Errorf("after refused reload: %+v, %v; want version 3", d, err)
	}
}

func TestEmbeddedDefaultHasPolicyAndTests(t *testing.T) {
	for _, name := range []string{"authz.rego", "authz_test.rego"} {
		if _, err := defaultpolicy.Default.Open(name); err != nil {
			t.Errorf("embedded default lacks %s: %v", name, err)
		}
	}
}

func BenchmarkDecideMemoHit(b *testing.B) {
	e := newEngine(b, "", nil)
	ctx := context.Background()
	f := alice(agent())
	if _, err := e.Decide(ctx, f, nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Decide(ctx, f, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecideMemoHitParallel(b *testing.B) {
	e := newEngine(b, "", nil)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		f := alice(agent())
		for pb.Next() {
			if _, err := e.Decide(ctx, f, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecideEval measures a memo miss: input construction, Rego
// evaluation and decision parsing.
func BenchmarkDecideEval(b *testing.B) {
	e := newEngine(b, "", nil)
	ctx := context.Background()
	f := alice(agent())
	c := e.cur.Load().policy
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.eval(ctx, c.query, DecisionQuery, &f, nil); err != nil {
			b.Fatal(err)
		}
	}
}
