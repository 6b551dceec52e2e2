package forget

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/memstore"
	"github.com/gdprgate/gdprgate/cache/storetest"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/model"
)

const day = 24 * time.Hour

// clock is a settable fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

var testPlans = Plans{
	Wipe: Plan{"contact": {{Name: "contact", Method: "DELETE", Path: "/api/contacts/{id}"}}},
	Erase: Erasures{"contact": {
		"health":      {{Name: "notes", Method: "PATCH", Path: "/api/contacts/{id}", Body: []byte(`{"health_notes":null,"ref":"{id}"}`)}},
		"significant": {{Name: "fields", Method: "PATCH", Path: "/api/contacts/{id}", Body: []byte(`{"birth_year":null}`)}},
		"contact":     {{Name: "fields", Method: "PATCH", Path: "/api/contacts/{id}", Body: []byte(`{"email":null}`)}},
		// auxiliary: no step — reported not executable.
	}},
}

type sweepFixture struct {
	t     *testing.T
	ctx   context.Context
	store cache.Store
	clk   *clock
	exec  *Executor
	sw    *Sweeper
}

func newSweepFixture(t *testing.T, store cache.Store, auto bool, perMinute int) *sweepFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	if store == nil {
		store = memstore.New(cache.Options{})
		t.Cleanup(func() { store.Close() })
	}
	if ix, _ := store.Registers(ctx); ix.Version == 0 {
		if _, err := store.SaveRegisters(ctx, storetest.Registers(), 0, audit.Entry{Actor: "test", Action: "register.seed"}); err != nil {
			t.Fatal(err)
		}
	}
	clk := &clock{t: storetest.T0}
	ex, err := NewExecutor(ExecutorOptions{Store: store, Plans: testPlans, Hasher: audit.NewHasher([]byte("k")), Auto: auto, PerMinute: perMinute, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	sw, err := NewSweeper(SweeperOptions{Executor: ex, Batch: 3, LeaseTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return &sweepFixture{t: t, ctx: ctx, store: store, clk: clk, exec: ex, sw: sw}
}

func (f *sweepFixture) pass() PassResult {
	f.t.Helper()
	for range 100 {
		res, err := f.sw.Pass(f.ctx)
		if err != nil {
			f.t.Fatalf("Pass: %v", err)
		}
		if !res.More {
			return res
		}
	}
	f.t.Fatal("sweeper passes never end")
	return PassResult{}
}

func (f *sweepFixture) put(id string, origin time.Time) model.SubjectRef {
	f.t.Helper()
	ref := model.SubjectRef{Entity: "contact", ID: id}
	if err := f.store.PutSubject(f.ctx, model.Subject{Ref: ref, Origin: origin}, audit.Entry{Actor: "test", Action: "subject.put"}); err != nil {
		f.t.Fatal(err)
	}
	return ref
}

func (f *sweepFixture) wipes() []cache.WipeRecord {
	f.t.Helper()
	ws, err := f.store.ListWipes(f.ctx, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	return ws
}

func (f *sweepFixture) dueAt(ref model.SubjectRef) cache.Due {
	f.t.Helper()
	cursor := ""
	for {
		ds, next, err := f.store.ScanDue(f.ctx, cursor, 100)
		if err != nil {
			f.t.Fatal(err)
		}
		for _, d := range ds {
			if d.Ref == ref {
				return d
			}
		}
		if next == "" {
			f.t.Fatalf("%s not in the due index", ref.ID)
		}
		cursor = next
	}
}

// A contact nobody reads: the sweeper alone moves it through every state at
// the lifecycle's instants and creates the deletion work obliviation asks
// for, at those instants and not a millisecond earlier.
func TestSweeperAloneArchivesExpiresAndForgetsOnTime(t *testing.T) {
	f := newSweepFixture(t, nil, false, 10)
	ref := f.put("c-1", storetest.T0)
	type step struct {
		at time.Time
		// the deletion records existing after the pass at `at`
		records  int
		kind     string
		bits     uint32
		status   string
		nextDue  time.Time
		archived uint32
		expired  uint32
	}
	T0 := storetest.T0
	steps := []step{
		// Health (special, no grace, null periods) is obliviated at once:
		// an erasure; significant expires right after its zero grace.
		{T0, 1, cache.KindErasure, 0b1000, cache.WipeHeld, T0.Add(30 * day), 0, 0b0100},
		{T0.Add(30 * day), 1, "", 0, "", T0.Add(180 * day), 0, 0b0100},                                  // grace of 0-1 ends: nothing visible
		{T0.Add(180 * day), 1, "", 0, "", T0.Add(365 * day), 0b0010, 0b0100},                            // contact archived
		{T0.Add(365 * day), 2, cache.KindErasure, 0b0100, cache.WipeHeld, T0.Add(730 * day), 0, 0b0011}, // significant forgotten
		{T0.Add(730 * day), 3, cache.KindErasure, 0b0010, cache.WipeHeld, T0.Add(1095 * day), 0, 0b0001},
		{T0.Add(1095 * day), 4, cache.KindWipe, 0, cache.WipeHeld, time.Time{}, 0, 0}, // everything: the wipe plan
	}
	for i, st := range steps {
		// Just before the instant nothing happens.
		if i > 0 {
			f.clk.Set(st.at.Add(-time.Millisecond))
			f.pass()
			if n := len(f.wipes()); n != steps[i-1].records {
				t.Fatalf("step %d: %d deletion records a millisecond early, want %d", i, n, steps[i-1].records)
			}
		}
		f.clk.Set(st.at)
		f.pass()
		ws := f.wipes()
		if len(ws) != st.records {
			t.Fatalf("step %d (%s): %d deletion records, want %d: %+v", i, st.at.Sub(T0), len(ws), st.records, ws)
		}
		if st.kind != "" {
			w := ws[0] // newest first
			if w.Kind != st.kind || w.Bits != st.bits || w.Status != st.status || w.Reason != cache.ReasonLifecycle {
				t.Fatalf("step %d: newest record %+v, want %s bits %b %s", i, w, st.kind, st.bits, st.status)
			}
		}
		d := f.dueAt(ref)
		if st.nextDue.IsZero() {
			if !d.Never() {
				t.Fatalf("step %d: due %v, want no next transition", i, d.At())
			}
		} else if !d.At().Equal(st.nextDue) {
			t.Fatalf("step %d: next due %s, want %s", i, d.At(), st.nextDue)
		}
		fa, err := f.store.Facts(f.ctx, ref, st.at)
		if err != nil {
			t.Fatal(err)
		}
		if fa.State.Archived != st.archived || fa.State.Expired != st.expired {
			t.Fatalf("step %d: archived %04b expired %04b, want %04b %04b", i, fa.State.Archived, fa.State.Expired, st.archived, st.expired)
		}
	}
	// Auxiliary has no erasure step: the obliviation of bit 0 came with the
	// whole subject, whose wipe plan covers it. The erasure of health
	// carries its body with the id.
	for _, w := range f.wipes() {
		if w.Kind == cache.KindErasure && w.Bits == 0b1000 {
			if len(w.Steps) != 1 || w.Steps[0].Method != "PATCH" || w.Steps[0].Body != `{"health_notes":null,"ref":"c-1"}` {
				t.Fatalf("health erasure steps = %+v", w.Steps)
			}
		}
	}
}

func TestBitsWithoutStepsAreReportedNotExecutable(t *testing.T) {
	f := newSweepFixture(t, nil, false, 10)
	regs := storetest.Registers()
	// auxiliary forgotten at 40 days while contact stays: no step for it.
	regs.Sensitivities[0].ObliviationPeriod = ptr(40)
	regs.Sensitivities[0].ExpirationPeriod = ptr(35)
	if _, err := f.store.SaveRegisters(f.ctx, regs, 1, audit.Entry{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	f.put("c-1", storetest.T0)
	f.clk.Set(storetest.T0.Add(40 * day))
	f.pass()
	var found bool
	for _, w := range f.wipes() {
		if w.Status == cache.WipeNotExecutable {
			found = true
			if w.Bits != 0b0001 || w.Error == "" {
				t.Fatalf("not executable record = %+v", w)
			}
		}
	}
	if !found {
		t.Fatalf("no not_executable record among %+v", f.wipes())
	}
	es, _, _ := f.store.Audit(f.ctx, "", 0)
	var audited bool
	for _, e := range es {
		audited = audited || e.Action == "deletion.not_executable" && e.Detail["sensitivities"] == "auxiliary"
	}
	if !audited {
		t.Fatal("no deletion.not_executable audit entry")
	}
}

func ptr(n int) *int { return &n }

func TestHeldDeletionIsQueuedOnlyWhenApproved(t *testing.T) {
	f := newSweepFixture(t, nil, false, 10)
	ref := f.put("c-1", storetest.T0.Add(-2000*day))
	f.pass()
	ws := f.wipes()
	if len(ws) != 1 || ws[0].Kind != cache.KindWipe || ws[0].Status != cache.WipeHeld {
		t.Fatalf("records = %+v, want one held wipe", ws)
	}
	if fa, _ := f.store.Facts(f.ctx, ref, f.clk.Now()); fa.Restricted {
		t.Fatal("a held wipe restricted the subject")
	}
	if c, err := f.store.ClaimWipe(f.ctx, "w", time.Hour, 0); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("a worker could claim %+v before approval", c)
	}
	// Passing again creates nothing new (the work exists).
	f.clk.Set(f.clk.Now().Add(time.Hour))
	f.pass()
	if n := len(f.wipes()); n != 1 {
		t.Fatalf("%d records after a second pass", n)
	}
	ds, err := f.exec.DecideHeld(f.ctx, []string{ws[0].ID}, true, "dpo", false)
	if err != nil || len(ds) != 1 || ds[0].Status != cache.WipeQueued {
		t.Fatalf("approve = %+v, %v", ds, err)
	}
	if c, err := f.store.ClaimWipe(f.ctx, "w", time.Hour, 0); err != nil || c.WipeID != ws[0].ID {
		t.Fatalf("claim after approval = %+v, %v", c, err)
	}
	if fa, _ := f.store.Facts(f.ctx, ref, f.clk.Now()); !fa.Restricted {
		t.Fatal("the approved wipe did not restrict the subject")
	}
	if ds, _ := f.exec.DecideHeld(f.ctx, []string{ws[0].ID}, false, "dpo", false); ds[0].Status != "not_held" {
		t.Fatalf("rejecting an approved deletion = %+v", ds)
	}
}

func TestAutoDeletionsBeyondTheGuardAreHeld(t *testing.T) {
	f := newSweepFixture(t, nil, true, 2)
	for _, id := range []string{"c-1", "c-2", "c-3", "c-4", "c-5"} {
		f.put(id, storetest.T0.Add(-2000*day))
	}
	f.pass()
	queued, guarded := 0, 0
	for _, w := range f.wipes() {
		switch {
		case w.Status == cache.WipeQueued:
			queued++
		case w.Status == cache.WipeHeld && w.HeldFor == "mass_deletion_guard":
			guarded++
		default:
			t.Fatalf("unexpected record %+v", w)
		}
	}
	if queued != 2 || guarded != 3 {
		t.Fatalf("queued %d, held by the guard %d; want 2 and 3", queued, guarded)
	}
	// Approving the rest needs a confirmation: the window is full.
	held, _ := f.store.HeldWipes(f.ctx, 0)
	var ids []string
	for _, h := range held {
		ids = append(ids, h.ID)
	}
	var ge *GuardError
	if _, err := f.exec.DecideHeld(f.ctx, ids, true, "dpo", false); !errors.As(err, &ge) {
		t.Fatalf("bulk approve without confirm err = %v, want GuardError", err)
	}
	if h, _ := f.store.HeldWipes(f.ctx, 0); len(h) != 3 {
		t.Fatalf("a refused bulk approval decided %d", 3-len(h))
	}
	ds, err := f.exec.DecideHeld(f.ctx, ids, true, "dpo", true)
	if err != nil || len(ds) != 3 {
		t.Fatalf("confirmed bulk approve = %+v, %v", ds, err)
	}
}

func TestWriteBetweenReadAndCommitIsProcessedAgain(t *testing.T) {
	f := newSweepFixture(t, nil, false, 10)
	ref := f.put("c-1", storetest.T0.Add(-10*day))
	ds, _ := f.store.Due(f.ctx, f.clk.Now(), 10)
	// A write lands after the sweeper listed the subject.
	if _, err := f.store.PutEvidence(f.ctx, []model.Evidence{{Subject: ref, LegalisationID: "contract-care", Origin: storetest.T0, CreatedBy: "t"}}, audit.Entry{Actor: "t", Time: storetest.T0}); err != nil {
		t.Fatal(err)
	}
	var res PassResult
	if err := f.sw.process(f.ctx, mustIndex(t, f), ds, &res); err != nil {
		t.Fatal(err)
	}
	if res.Committed != 0 || res.Retried != 1 {
		t.Fatalf("result = %+v, want the stale read retried", res)
	}
	if d := f.dueAt(ref); !d.Marked() {
		t.Fatalf("due = %+v: the write's mark was overwritten", d)
	}
	f.pass()
	if d := f.dueAt(ref); d.Marked() {
		t.Fatal("the next pass did not process the subject")
	}
}

func mustIndex(t *testing.T, f *sweepFixture) *model.Index {
	ix, err := f.store.Registers(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

// Evidence is kept until the data's obliviation plus the purpose's
// evidence_period_offset ("… when referring to GdprEvidence (proof)
// communications and the GdprEvidence record itself"), then purged with an
// audit entry, its proof communications with it.
func TestEvidencePurgedAtDataObliviationPlusOffset(t *testing.T) {
	f := newSweepFixture(t, nil, false, 10)
	ref := f.put("c-1", storetest.T0)
	ev := model.Evidence{Subject: ref, LegalisationID: "contract-care", Origin: storetest.T0, CommIDs: []string{"call-1"}, CreatedBy: "t"}
	if _, err := f.store.PutEvidence(f.ctx, []model.Evidence{ev}, audit.Entry{Actor: "t", Time: storetest.T0}); err != nil {
		t.Fatal(err)
	}
	end := storetest.T0.Add((1095 + 30) * day) // customer-care: obliviation 1095 d, offset 30 d
	f.clk.Set(end.Add(-time.Millisecond))
	f.pass()
	if rec, _ := f.store.Subject(f.ctx, ref); len(rec.Evidence) != 1 {
		t.Fatal("evidence purged before its retention ended")
	}
	if d := f.dueAt(ref); !d.At().Equal(end) {
		t.Fatalf("due %s, want the retention end %s", d.At(), end)
	}
	f.clk.Set(end)
	f.pass()
	if rec, _ := f.store.Subject(f.ctx, ref); len(rec.Evidence) != 0 {
		t.Fatalf("evidence kept past its retention: %+v", rec.Evidence)
	}
	es, _, _ := f.store.Audit(f.ctx, "", 0)
	if last := es[len(es)-1]; last.Action != "evidence.purge" || last.Actor != "lifecycle" || last.Detail["legalisation"] != "contract-care" {
		t.Fatalf("last audit entry = %+v, want evidence.purge", last)
	}
	var purge *cache.WipeRecord
	for _, w := range f.wipes() {
		if w.Kind == cache.KindPurge {
			purge = &w
		}
	}
	// No erasure.communications configured: listed, not executable.
	if purge == nil || purge.Status != cache.WipeNotExecutable {
		t.Fatalf("proof communication purge = %+v", purge)
	}
}

func TestRegisterChangeRecomputesEverySubject(t *testing.T) {
	f := newSweepFixture(t, nil, false, 10)
	var refs []model.SubjectRef
	for _, id := range []string{"c-1", "c-2", "c-3", "c-4", "c-5", "c-6", "c-7"} {
		refs = append(refs, f.put(id, storetest.T0))
	}
	f.pass()
	// Contact data is now archived after 10 days instead of 180.
	regs := storetest.Registers()
	regs.Sensitivities[1].ArchivationPeriod = ptr(10)
	if _, err := f.store.SaveRegisters(f.ctx, regs, 1, audit.Entry{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	res := f.pass()
	if res.Recomputed != len(refs) {
		t.Fatalf("recomputed %d subjects, want %d", res.Recomputed, len(refs))
	}
	for _, ref := range refs {
		if d := f.dueAt(ref); !d.At().Equal(storetest.T0.Add(10 * day)) {
			t.Fatalf("%s due %s after the change, want T0+10d", ref.ID, d.At())
		}
	}
	p, _ := f.store.Recompute(f.ctx)
	if !p.Done || p.Scanned != int64(len(refs)) || p.Version != 2 {
		t.Fatalf("recompute progress = %+v", p)
	}
	// The same progress in the metric gdprgate_lifecycle_recompute{field}.
	for field, want := range map[string]float64{"version": 2, "scanned": float64(len(refs)), "done": 1} {
		var m dto.Metric
		if err := f.exec.m.recompute.WithLabelValues(field).Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetGauge().GetValue(); got != want {
			t.Errorf("gdprgate_lifecycle_recompute{field=%q} = %v, want %v", field, got, want)
		}
	}
}

func TestOneSweeperHoldsTheLease(t *testing.T) {
	f := newSweepFixture(t, nil, false, 10)
	other, err := NewSweeper(SweeperOptions{Executor: f.exec, LeaseTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if res := f.pass(); !res.Leader {
		t.Fatal("first sweeper is not the leader")
	}
	if res, _ := other.Pass(f.ctx); res.Leader {
		t.Fatal("two sweepers lead at once")
	}
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan error)
	go func() { done <- f.sw.Run(ctx) }()
	cancel()
	<-done
	// Stopping gives the lease up.
	if res, _ := other.Pass(f.ctx); !res.Leader {
		t.Fatal("the lease was not handed over after the leader stopped")
	}
}

func TestNothingRunsWhileGDPRIsNotEnforced(t *testing.T) {
	f := newSweepFixture(t, nil, false, 10)
	regs := storetest.Registers()
	regs.Config.GdprEnforced = false
	if _, err := f.store.SaveRegisters(f.ctx, regs, 1, audit.Entry{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	f.put("c-1", storetest.T0.Add(-2000*day))
	if res := f.pass(); res.Processed != 0 {
		t.Fatalf("processed %d subjects with gdpr_enforced false", res.Processed)
	}
	if n := len(f.wipes()); n != 0 {
		t.Fatalf("%d deletions created with gdpr_enforced false", n)
	}
}

func TestWipeRequestCascadesToChildren(t *testing.T) {
	f := newSweepFixture(t, nil, false, 10)
	contact := f.put("c-14", storetest.T0)
	phone := model.SubjectRef{Entity: "phone_number", ID: "+420111"}
	if err := f.store.PutSubject(f.ctx, model.Subject{Ref: phone, Origin: storetest.T0, Parent: &contact}, audit.Entry{Actor: "t"}); err != nil {
		t.Fatal(err)
	}
	recs, err := f.exec.Request(f.ctx, WipeRequest{Subject: contact, Actor: "dpo"})
	if err != nil || len(recs) != 2 || recs[1].Subject != phone || recs[1].Parent != recs[0].ID || recs[1].Reason != cache.ReasonCascade {
		t.Fatalf("Request = %+v, %v", recs, err)
	}
	for _, ref := range []model.SubjectRef{contact, phone} {
		if fa, _ := f.store.Facts(f.ctx, ref, storetest.T0); !fa.Restricted {
			t.Fatalf("%s not restricted by the wipe", ref.Entity)
		}
	}
	es, _, _ := f.store.Audit(f.ctx, "", 0)
	if n := len(es); es[n-1].Action != "wipe.cascade" || es[n-2].Action != "wipe.request" {
		t.Fatalf("audit tail = %+v", es[n-2:])
	}
}

// A held lifecycle deletion is approved for the reason it was created:
// the data is obliviated. When that reason is gone before the approval —
// the person gave new consent, or GDPR enforcement was switched off — an
// approval (one by one, in bulk or its preview) refuses it, with the wipes
// cascaded from it, counts nothing against the guard and leaves it held for
// a rejection.
func TestApprovalRefusesDeletionsThatAreNoLongerDue(t *testing.T) {
	f := newSweepFixture(t, nil, false, 1)
	contact := f.put("c-1", storetest.T0.Add(-2000*day))
	phone := model.SubjectRef{Entity: "phone_number", ID: "+420111"}
	if err := f.store.PutSubject(f.ctx, model.Subject{Ref: phone, Origin: storetest.T0, Parent: &contact}, audit.Entry{Actor: "t"}); err != nil {
		t.Fatal(err)
	}
	f.pass()
	var wipe, child string
	for _, w := range f.wipes() {
		switch {
		case w.Subject == contact && w.Kind == cache.KindWipe && w.Status == cache.WipeHeld:
			wipe = w.ID
		case w.Subject == phone && w.Parent != "" && w.Status == cache.WipeHeld:
			child = w.ID
		}
	}
	if wipe == "" || child == "" {
		t.Fatalf("records = %+v, want a held wipe of the contact cascading to the phone", f.wipes())
	}
	// Fresh evidence: bits 0-2 active again (health, covered by nothing,
	// stays obliviated: the subject is not gone).
	ev := model.Evidence{Subject: contact, LegalisationID: "contract-care", Origin: f.clk.Now(), CreatedAt: f.clk.Now(), CreatedBy: "test"}
	if _, err := f.store.PutEvidence(f.ctx, []model.Evidence{ev}, audit.Entry{Actor: "test", Time: f.clk.Now()}); err != nil {
		t.Fatal(err)
	}
	p, err := f.exec.PlanDecision(f.ctx, []string{wipe}, true)
	if err != nil || len(p.Decisions) != 2 || p.Admit != 0 {
		t.Fatalf("plan = %+v, %v", p, err)
	}
	for _, ids := range [][]string{{wipe}, {child}, {wipe, child}} {
		ds, err := f.exec.DecideHeld(f.ctx, ids, true, "dpo", false)
		if err != nil {
			t.Fatalf("approve %v: %v (a refused approval must not reach the guard)", ids, err)
		}
		for _, d := range ds {
			if d.Status != StatusNotDue || d.Error == "" {
				t.Fatalf("approve %v = %+v, want not_due", ids, ds)
			}
		}
	}
	if h, _ := f.store.HeldWipes(f.ctx, 0); len(h) != 2 {
		t.Fatalf("%d held after refused approvals, want 2", len(h))
	}
	if fa, _ := f.store.Facts(f.ctx, contact, f.clk.Now()); fa.Restricted {
		t.Fatal("a refused approval restricted the subject")
	}
	// The guard (1 a minute) counted none of them.
	if err := f.exec.Admit(f.ctx, 1, false); err != nil {
		t.Fatalf("guard after refused approvals: %v", err)
	}
	ds, err := f.exec.DecideHeld(f.ctx, []string{wipe}, false, "dpo", false)
	if err != nil || len(ds) != 2 || ds[0].Status != cache.WipeRejected || ds[1].Status != cache.WipeRejected {
		t.Fatalf("reject = %+v, %v", ds, err)
	}

	t.Run("enforcement switched off", func(t *testing.T) {
		f := newSweepFixture(t, nil, false, 10)
		f.put("c-2", storetest.T0.Add(-2000*day))
		f.pass()
		held, _ := f.store.HeldWipes(f.ctx, 0)
		if len(held) == 0 {
			t.Fatal("nothing held")
		}
		regs := storetest.Registers()
		regs.Config.GdprEnforced = false
		if _, err := f.store.SaveRegisters(f.ctx, regs, 1, audit.Entry{Actor: "test"}); err != nil {
			t.Fatal(err)
		}
		ds, err := f.exec.DecideHeld(f.ctx, []string{held[0].ID}, true, "dpo", true)
		if err != nil || ds[0].Status != StatusNotDue {
			t.Fatalf("approve with enforcement off = %+v, %v", ds, err)
		}
	})
}

// An approved lifecycle erasure may wait long before it runs (suspend_wipes
// holds it for days): it runs only while its data is still obliviated.
// New evidence meanwhile cancels it, audited, with no backend call.
func TestQueuedErasureWhoseDataIsCoveredAgainIsCancelled(t *testing.T) {
	f := newSweepFixture(t, nil, false, 10)
	// At 400 days, significant (obliviated at 365 d) and health (at once)
	// are forgotten; the rest is not.
	ref := f.put("c-1", storetest.T0.Add(-400*day))
	f.pass()
	var erasure cache.WipeRecord
	for _, w := range f.wipes() {
		if w.Kind == cache.KindErasure && w.Status == cache.WipeHeld {
			erasure = w
		}
	}
	if erasure.ID == "" || erasure.Bits&0b100 == 0 {
		t.Fatalf("records = %+v, want a held erasure of significant data", f.wipes())
	}
	if ds, err := f.exec.DecideHeld(f.ctx, []string{erasure.ID}, true, "dpo", false); err != nil || ds[0].Status != cache.WipeQueued {
		t.Fatalf("approve = %+v, %v", ds, err)
	}
	// Before the worker runs, the person signs a contract: significant data
	// is covered again.
	ev := model.Evidence{Subject: ref, LegalisationID: "contract-care", Origin: f.clk.Now(), CreatedAt: f.clk.Now(), CreatedBy: "test"}
	if _, err := f.store.PutEvidence(f.ctx, []model.Evidence{ev}, audit.Entry{Actor: "test", Time: f.clk.Now()}); err != nil {
		t.Fatal(err)
	}
	var calls int
	var mu sync.Mutex
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
	}))
	t.Cleanup(be.Close)
	wk, err := NewWorker(Options{Store: f.store, Plan: testPlans.Wipe, Backend: be.URL, Hasher: audit.NewHasher([]byte("k")), Clock: f.clk.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.store.ClaimWipe(f.ctx, "w", time.Hour, 0)
	if err != nil || c.WipeID != erasure.ID {
		t.Fatalf("claim = %+v, %v", c, err)
	}
	if err := wk.Process(f.ctx, c); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 0 {
		t.Fatalf("the backend got %d calls for an erasure that is not due", calls)
	}
	got, _ := f.store.Wipe(f.ctx, erasure.ID)
	if got.Status != cache.WipeCancelled || !strings.Contains(got.Error, "significant") {
		t.Fatalf("erasure = %+v, want cancelled naming significant", got)
	}
	es, _, _ := f.store.Audit(f.ctx, "", 0)
	if last := es[len(es)-1]; last.Action != "deletion.not_due" || last.Object != "wipes/"+erasure.ID {
		t.Fatalf("last audit entry = %+v", last)
	}
}
