// Package storetest is the behavioural suite every cache.Store
// implementation must pass. An implementation's test calls Run with a
// constructor returning a fresh, empty store for each subtest.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
)

// T0 is the suite's reference instant; fixtures are relative to it.
var T0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func days(n int) *int { return &n }

func at(d int) *time.Time {
	t := T0.Add(time.Duration(d) * 24 * time.Hour)
	return &t
}

// Registers is a small valid register set modelled on the reference
// scenario: bits 0–3, a contract and a consent legalisation.
func Registers() *model.Registers {
	return &model.Registers{
		Sensitivities: []model.Sensitivity{
			{ID: "auxiliary", Bit: 0, Name: "Auxiliary", GracePeriod: days(30), ExpirationPeriod: days(365), ObliviationPeriod: days(1095)},
			{ID: "contact", Bit: 1, Name: "Contact", GracePeriod: days(30), ArchivationPeriod: days(180), ExpirationPeriod: days(365), ObliviationPeriod: days(730)},
			{ID: "significant", Bit: 2, Name: "Significant", GracePeriod: days(0), ObliviationPeriod: days(365)},
			{ID: "health", Bit: 3, Name: "Health", Special: true, GracePeriod: days(0)},
		},
		Categories: []model.Category{
			{ID: "contract", Name: "Contract", Article: "6.1.b"},
			{ID: "consent", Name: "Consent", Article: "6.1.a"},
		},
		Purposes: []model.Purpose{
			{ID: "customer-care", Name: "Customer care", ArchivationPeriod: days(365), ExpirationPeriod: days(730), ObliviationPeriod: days(1095), RenewalType: model.RenewalAuto, EvidencePeriodOffset: 30},
			{ID: "marketing", Name: "Marketing", ExpirationPeriod: days(365), ObliviationPeriod: days(400), RenewalType: model.RenewalExplicit},
		},
		Legalisations: []model.Legalisation{
			{ID: "contract-care", Name: "Contract care", CategoryID: "contract", PurposeID: "customer-care", Coverage: 0b0111,
				PrivacyPermission: model.PermAdhocOC | model.PermCallbackOC, ActiveFrom: at(-1000)},
			{ID: "marketing-consent", Name: "Marketing consent", CategoryID: "consent", PurposeID: "marketing", Coverage: 0b0011,
				PrivacyPermission: model.PermCampaignOC, EvidenceKeyObligatory: true, ActiveFrom: at(-1000)},
		},
		Roles:  []model.Role{{Name: "agent", SensitivityMask: 0b0111}},
		Config: model.Config{GdprEnforced: true, IdentityEntity: "contact"},
	}
}

var (
	alice = model.SubjectRef{Entity: "contact", ID: "c-1"}
	bob   = model.SubjectRef{Entity: "contact", ID: "c-2"}
	phone = model.SubjectRef{Entity: "phone_number", ID: "+420123456789"}
)

func ev(ref model.SubjectRef, leg, key string, originDays int) model.Evidence {
	return model.Evidence{Subject: ref, LegalisationID: leg, EvidenceKey: key, Origin: *at(originDays), CreatedBy: "test"}
}

func entry(action string) audit.Entry {
	return audit.Entry{Actor: "tester", Action: action, Object: "test", Time: T0}
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// seeded returns a store with Registers saved (version 1).
func seeded(t *testing.T, newStore func(*testing.T) cache.Store) (cache.Store, *model.Index) {
	t.Helper()
	s := newStore(t)
	ctx := ctxT(t)
	if _, err := s.SaveRegisters(ctx, Registers(), 0, entry("register.replace")); err != nil {
		t.Fatalf("SaveRegisters: %v", err)
	}
	ix, err := s.Registers(ctx)
	if err != nil {
		t.Fatalf("Registers: %v", err)
	}
	return s, ix
}

func auditAll(t *testing.T, s cache.Store) []audit.Entry {
	t.Helper()
	es, _, err := s.Audit(ctxT(t), "", 0)
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	return es
}

func mustFacts(t *testing.T, s cache.Store, ref model.SubjectRef, now time.Time) cache.Facts {
	t.Helper()
	f, err := s.Facts(ctxT(t), ref, now)
	if err != nil {
		t.Fatalf("Facts: %v", err)
	}
	return f
}

// wantState is the state the lifecycle gives for what is stored: the suite
// checks the store feeds Evaluate correctly, not the lifecycle rules.
func wantState(t *testing.T, s cache.Store, ix *model.Index, ref model.SubjectRef, now time.Time) lifecycle.State {
	t.Helper()
	ctx := ctxT(t)
	rec, err := s.Subject(ctx, ref)
	if err != nil {
		t.Fatalf("Subject: %v", err)
	}
	in := lifecycle.Input{Index: ix, Origin: rec.Subject.Origin, Evidence: rec.Evidence}
	if rec.Subject.Parent != nil {
		p, err := s.Subject(ctx, *rec.Subject.Parent)
		if err != nil {
			t.Fatalf("Subject(parent): %v", err)
		}
		in.Inherited = p.Evidence
	}
	return lifecycle.Evaluate(in, now)
}

func sameState(a, b lifecycle.State) bool {
	if len(a.Grants) == 0 && len(b.Grants) == 0 {
		a.Grants, b.Grants = nil, nil
	}
	return a.Next.Equal(b.Next) && reflect.DeepEqual(a.Grants, b.Grants) &&
		a.Active == b.Active && a.Archived == b.Archived && a.Expired == b.Expired &&
		a.Obliviated == b.Obliviated && a.Covered == b.Covered && a.Coverage == b.Coverage
}

// Run runs the whole suite. newStore must return a new, empty store; the
// suite closes it.
func Run(t *testing.T, newStore func(t *testing.T) cache.Store) {
	fresh := func(t *testing.T) cache.Store {
		s := newStore(t)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	tests := []struct {
		name string
		fn   func(*testing.T, func(*testing.T) cache.Store)
	}{
		{"EmptyStoreHasRegistersVersionZero", testEmpty},
		{"SaveRegistersComparesAndSwaps", testRegistersCAS},
		{"InvalidRegistersChangeNothing", testRegistersInvalid},
		{"PutSubjectStoresMetadata", testPutSubject},
		{"PutEvidenceStoresBatchWithAudit", testPutEvidence},
		{"PutEvidenceReimportIsIdempotent", testReimport},
		{"PutEvidenceBatchIsAllOrNothing", testBatchAtomic},
		{"RevokeEvidenceDeletesRecord", testRevoke},
		{"EvidenceByKeyFindsRecord", testEvidenceByKey},
		{"FactsFeedOwnAndInheritedEvidence", testFactsComputation},
		{"FactsInvalidatedByEvidenceChange", testFactsInvalidateEvidence},
		{"FactsInvalidatedByParentChange", testFactsInvalidateParent},
		{"FactsInvalidatedByRegisterChange", testFactsInvalidateRegisters},
		{"FactsNotServedAtNextTransition", testFactsExpiry},
		{"UnknownSubjectOriginIsFirstSeen", testFirstSeen},
		{"EnqueueWipeRestrictsSubject", testWipeEnqueue},
		{"SaveWipeRecordsProgress", testSaveWipe},
		{"ClaimAndAckWipe", testClaimAck},
		{"IdleClaimIsReclaimed", testReclaim},
		{"ClaimWaitsForEnqueue", testClaimBlocks},
		{"UnrestrictLiftsRestriction", testUnrestrict},
		{"AuditPages", testAuditPaging},
		{"LoadSeedOnlyIntoEmptyStore", testLoadSeed},
		{"PingAnswers", testPing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, fresh) })
	}
}

func testEmpty(t *testing.T, newStore func(*testing.T) cache.Store) {
	s := newStore(t)
	ix, err := s.Registers(ctxT(t))
	if err != nil {
		t.Fatalf("Registers: %v", err)
	}
	if ix == nil || ix.Version != 0 || len(ix.Sensitivities) != 0 {
		t.Fatalf("empty store registers = %+v, want empty version 0", ix)
	}
	if es := auditAll(t, s); len(es) != 0 {
		t.Fatalf("empty store has %d audit entries", len(es))
	}
}

func testRegistersCAS(t *testing.T, newStore func(*testing.T) cache.Store) {
	s := newStore(t)
	ctx := ctxT(t)
	v, err := s.SaveRegisters(ctx, Registers(), 0, entry("register.replace"))
	if err != nil || v != 1 {
		t.Fatalf("first save = %d, %v; want 1, nil", v, err)
	}
	other := Registers()
	other.Roles = append(other.Roles, model.Role{Name: "intruder", SensitivityMask: 0b1111})
	if _, err := s.SaveRegisters(ctx, other, 0, entry("register.replace")); !errors.Is(err, cache.ErrConflict) {
		t.Fatalf("stale save err = %v, want ErrConflict", err)
	}
	ix, err := s.Registers(ctx)
	if err != nil {
		t.Fatalf("Registers: %v", err)
	}
	if ix.Version != 1 || ix.Roles["intruder"] != nil || ix.Legalisations["contract-care"] == nil {
		t.Fatalf("after conflict: version %d, intruder %v: the conflicting write changed something", ix.Version, ix.Roles["intruder"])
	}
	es := auditAll(t, s)
	if len(es) != 1 || es[0].Action != "register.replace" || es[0].Before != 0 || es[0].After != 1 || es[0].ID == "" {
		t.Fatalf("audit = %+v, want one register.replace 0→1 with an id", es)
	}
	v, err = s.SaveRegisters(ctx, other, 1, entry("register.replace"))
	if err != nil || v != 2 {
		t.Fatalf("save at current version = %d, %v; want 2", v, err)
	}
	if ix, _ := s.Registers(ctx); ix.Version != 2 || ix.Roles["intruder"] == nil {
		t.Fatalf("Registers after second save: version %d", ix.Version)
	}
	// The store keeps its own copy: changing the caller's value later does
	// not change the stored registers.
	other.Roles[0].Name = "mutated"
	if ix, _ := s.Registers(ctx); ix.Roles["agent"] == nil {
		t.Fatal("stored registers share memory with the caller's value")
	}
}

func testRegistersInvalid(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	bad := Registers()
	bad.Legalisations[0].PurposeID = "missing"
	_, err := s.SaveRegisters(ctx, bad, 1, entry("register.replace"))
	var ve *model.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("invalid registers err = %v, want *model.ValidationError", err)
	}
	if ix, _ := s.Registers(ctx); ix.Version != 1 {
		t.Fatalf("version after refused save = %d, want 1", ix.Version)
	}
	if es := auditAll(t, s); len(es) != 1 {
		t.Fatalf("audit has %d entries, want only the seed's", len(es))
	}
}

func testPutSubject(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	rec, err := s.Subject(ctx, phone)
	if err != nil || rec.Known {
		t.Fatalf("Subject of nothing = %+v, %v; want not known", rec, err)
	}
	sub := model.Subject{Ref: phone, Origin: *at(-50), Parent: &alice}
	if err := s.PutSubject(ctx, sub, entry("subject.put")); err != nil {
		t.Fatalf("PutSubject: %v", err)
	}
	rec, err = s.Subject(ctx, phone)
	if err != nil {
		t.Fatalf("Subject: %v", err)
	}
	if !rec.Known || !rec.Subject.Origin.Equal(sub.Origin) || rec.Subject.Parent == nil || *rec.Subject.Parent != alice || rec.Subject.Ref != phone {
		t.Fatalf("Subject = %+v, want %+v known", rec, sub)
	}
	if es := auditAll(t, s); len(es) != 2 || es[1].Action != "subject.put" {
		t.Fatalf("audit = %+v, want subject.put appended", es)
	}
}

func testPutEvidence(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	in := []model.Evidence{ev(alice, "contract-care", "", -100), ev(alice, "marketing-consent", "web-123", -100), ev(bob, "contract-care", "", -500)}
	in[0].ID = "ev-given"
	in[1].CommIDs = []string{"call-1"}
	out, err := s.PutEvidence(ctx, in, entry("evidence.create"))
	if err != nil {
		t.Fatalf("PutEvidence: %v", err)
	}
	if len(out) != 3 || out[0].ID != "ev-given" || out[1].ID == "" || out[2].ID == "" || out[1].ID == out[2].ID {
		t.Fatalf("stored ids = %q %q %q, want the given one kept and fresh distinct ones", out[0].ID, out[1].ID, out[2].ID)
	}
	rec, err := s.Subject(ctx, alice)
	if err != nil {
		t.Fatalf("Subject: %v", err)
	}
	if !rec.Known || len(rec.Evidence) != 2 {
		t.Fatalf("alice = %+v, want known with 2 evidence", rec)
	}
	for _, e := range rec.Evidence {
		if e.ID == out[1].ID && (e.EvidenceKey != "web-123" || !reflect.DeepEqual(e.CommIDs, []string{"call-1"}) || !e.Origin.Equal(in[1].Origin) || e.CreatedBy != "test") {
			t.Fatalf("stored evidence %+v differs from %+v", e, out[1])
		}
	}
	es := auditAll(t, s)
	if len(es) != 2 || es[1].Action != "evidence.create" {
		t.Fatalf("audit = %+v, want one evidence.create for the batch", es)
	}
}

func testReimport(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	first := ev(alice, "marketing-consent", "web-123", -100)
	first.Reference = "v1"
	out1, err := s.PutEvidence(ctx, []model.Evidence{first}, entry("evidence.import"))
	if err != nil {
		t.Fatalf("PutEvidence: %v", err)
	}
	again := first
	again.Reference = "v2"
	out2, err := s.PutEvidence(ctx, []model.Evidence{again}, entry("evidence.import"))
	if err != nil {
		t.Fatalf("re-import: %v", err)
	}
	if out2[0].ID != out1[0].ID {
		t.Fatalf("re-import id = %q, want the existing %q", out2[0].ID, out1[0].ID)
	}
	rec, _ := s.Subject(ctx, alice)
	if len(rec.Evidence) != 1 || rec.Evidence[0].Reference != "v2" {
		t.Fatalf("after re-import alice has %+v, want one record with reference v2", rec.Evidence)
	}
	got, err := s.EvidenceByKey(ctx, "marketing-consent", "web-123")
	if err != nil || got.Reference != "v2" {
		t.Fatalf("EvidenceByKey = %+v, %v; want v2", got, err)
	}
}

func testBatchAtomic(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	bad := ev(model.SubjectRef{}, "contract-care", "", -10) // no subject: refused
	_, err := s.PutEvidence(ctx, []model.Evidence{ev(alice, "marketing-consent", "web-1", -10), bad}, entry("evidence.create"))
	if err == nil {
		t.Fatal("batch with an invalid record was accepted")
	}
	if rec, _ := s.Subject(ctx, alice); len(rec.Evidence) != 0 {
		t.Fatalf("refused batch stored %d records", len(rec.Evidence))
	}
	if _, err := s.EvidenceByKey(ctx, "marketing-consent", "web-1"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("refused batch indexed its key: %v", err)
	}
	if es := auditAll(t, s); len(es) != 1 {
		t.Fatalf("refused batch left an audit entry (%d entries)", len(es))
	}
}

func testRevoke(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	out, err := s.PutEvidence(ctx, []model.Evidence{ev(alice, "marketing-consent", "web-123", -100), ev(alice, "contract-care", "", -100)}, entry("evidence.create"))
	if err != nil {
		t.Fatalf("PutEvidence: %v", err)
	}
	if err := s.RevokeEvidence(ctx, alice, out[0].ID, entry("evidence.revoke")); err != nil {
		t.Fatalf("RevokeEvidence: %v", err)
	}
	rec, _ := s.Subject(ctx, alice)
	if len(rec.Evidence) != 1 || rec.Evidence[0].ID != out[1].ID {
		t.Fatalf("after revoke alice has %+v, want only %s", rec.Evidence, out[1].ID)
	}
	if _, err := s.EvidenceByKey(ctx, "marketing-consent", "web-123"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("revoked record still found by key: %v", err)
	}
	if err := s.RevokeEvidence(ctx, alice, out[0].ID, entry("evidence.revoke")); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("second revoke err = %v, want ErrNotFound", err)
	}
	if err := s.RevokeEvidence(ctx, bob, out[1].ID, entry("evidence.revoke")); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("revoke under the wrong subject err = %v, want ErrNotFound", err)
	}
	es := auditAll(t, s)
	if len(es) != 3 || es[2].Action != "evidence.revoke" {
		t.Fatalf("audit = %+v, want exactly one evidence.revoke appended", es)
	}
}

func testEvidenceByKey(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	out, err := s.PutEvidence(ctx, []model.Evidence{ev(bob, "marketing-consent", "web-9", -10)}, entry("evidence.create"))
	if err != nil {
		t.Fatalf("PutEvidence: %v", err)
	}
	got, err := s.EvidenceByKey(ctx, "marketing-consent", "web-9")
	if err != nil || got.ID != out[0].ID || got.Subject != bob {
		t.Fatalf("EvidenceByKey = %+v, %v", got, err)
	}
	for _, k := range [][2]string{{"marketing-consent", "web-10"}, {"contract-care", "web-9"}} {
		if _, err := s.EvidenceByKey(ctx, k[0], k[1]); !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("EvidenceByKey(%s,%s) err = %v, want ErrNotFound", k[0], k[1], err)
		}
	}
}

func testFactsComputation(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, ix := seeded(t, newStore)
	ctx := ctxT(t)
	if err := s.PutSubject(ctx, model.Subject{Ref: alice, Origin: *at(-100)}, entry("subject.put")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSubject(ctx, model.Subject{Ref: phone, Origin: *at(-40), Parent: &alice}, entry("subject.put")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutEvidence(ctx, []model.Evidence{ev(alice, "contract-care", "", -100), ev(alice, "marketing-consent", "web-1", -100)}, entry("evidence.create")); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []model.SubjectRef{alice, phone} {
		for _, now := range []time.Time{T0, T0.Add(400 * 24 * time.Hour)} {
			f := mustFacts(t, s, ref, now)
			want := wantState(t, s, ix, ref, now)
			if !sameState(f.State, want) {
				t.Errorf("Facts(%s, %s).State = %+v, want %+v", ref.Entity, now.Format(time.DateOnly), f.State, want)
			}
			if !f.Known || f.Restricted || f.Stale || f.RegistersVersion != 1 {
				t.Errorf("Facts(%s) = %+v, want known, unrestricted, fresh, version 1", ref.Entity, f)
			}
		}
	}
}

func testFactsInvalidateEvidence(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, ix := seeded(t, newStore)
	ctx := ctxT(t)
	if f := mustFacts(t, s, bob, T0); f.Known {
		t.Fatalf("unknown subject Facts.Known = true")
	}
	out, err := s.PutEvidence(ctx, []model.Evidence{ev(bob, "contract-care", "", -10)}, entry("evidence.create"))
	if err != nil {
		t.Fatal(err)
	}
	f := mustFacts(t, s, bob, T0)
	if !f.Known || !sameState(f.State, wantState(t, s, ix, bob, T0)) {
		t.Fatalf("Facts after evidence = %+v: cached entry not invalidated", f)
	}
	if err := s.RevokeEvidence(ctx, bob, out[0].ID, entry("evidence.revoke")); err != nil {
		t.Fatal(err)
	}
	if f := mustFacts(t, s, bob, T0); !sameState(f.State, wantState(t, s, ix, bob, T0)) {
		t.Fatalf("Facts after revoke = %+v: cached entry not invalidated", f)
	}
}

func testFactsInvalidateParent(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, ix := seeded(t, newStore)
	ctx := ctxT(t)
	if err := s.PutSubject(ctx, model.Subject{Ref: phone, Origin: *at(-400), Parent: &alice}, entry("subject.put")); err != nil {
		t.Fatal(err)
	}
	before := mustFacts(t, s, phone, T0)
	if _, err := s.PutEvidence(ctx, []model.Evidence{ev(alice, "contract-care", "", -100)}, entry("evidence.create")); err != nil {
		t.Fatal(err)
	}
	after := mustFacts(t, s, phone, T0)
	want := wantState(t, s, ix, phone, T0)
	if !sameState(after.State, want) {
		t.Fatalf("child Facts after parent evidence = %+v, want %+v (before %+v)", after.State, want, before.State)
	}
}

func testFactsInvalidateRegisters(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	if f := mustFacts(t, s, alice, T0); f.RegistersVersion != 1 {
		t.Fatalf("RegistersVersion = %d, want 1", f.RegistersVersion)
	}
	regs := Registers()
	regs.Sensitivities[2].ObliviationPeriod = days(10)
	if _, err := s.SaveRegisters(ctx, regs, 1, entry("register.replace")); err != nil {
		t.Fatal(err)
	}
	ix, _ := s.Registers(ctx)
	f := mustFacts(t, s, alice, T0)
	if f.RegistersVersion != 2 || !sameState(f.State, wantState(t, s, ix, alice, T0)) {
		t.Fatalf("Facts after register change = %+v, want version 2 state", f)
	}
}

func testFactsExpiry(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, ix := seeded(t, newStore)
	ctx := ctxT(t)
	if err := s.PutSubject(ctx, model.Subject{Ref: alice, Origin: *at(-10)}, entry("subject.put")); err != nil {
		t.Fatal(err)
	}
	f := mustFacts(t, s, alice, T0)
	if f.State.Next.IsZero() {
		t.Skip("lifecycle.Evaluate reports no next transition for a subject in its grace period; expiry is covered by cache.Local's tests")
	}
	next := f.State.Next
	// Just before Next the cached state is still right; at Next it must be
	// recomputed.
	if g := mustFacts(t, s, alice, next.Add(-time.Nanosecond)); !sameState(g.State, f.State) {
		t.Fatalf("state just before Next = %+v, want the cached %+v", g.State, f.State)
	}
	g := mustFacts(t, s, alice, next)
	if want := wantState(t, s, ix, alice, next); !sameState(g.State, want) {
		t.Fatalf("state at Next = %+v, want %+v (was the cached state served past Next?)", g.State, want)
	}
}

func testFirstSeen(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, ix := seeded(t, newStore)
	ctx := ctxT(t)
	seen := T0.Add(-5 * 24 * time.Hour)
	f := mustFacts(t, s, bob, seen)
	if f.Known {
		t.Fatal("first seen subject reported Known")
	}
	rec, err := s.Subject(ctx, bob)
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Subject.Origin.Equal(seen) || rec.Known {
		t.Fatalf("Subject after first sight = %+v, want origin %s and not known", rec, seen)
	}
	// Asked again later (a different sidecar, or after invalidation), the
	// origin stays the first sighting.
	later := T0.Add(200 * 24 * time.Hour)
	g := mustFacts(t, s, bob, later)
	want := lifecycle.Evaluate(lifecycle.Input{Index: ix, Origin: seen}, later)
	if !sameState(g.State, want) {
		t.Fatalf("later Facts = %+v, want evaluated from the first-seen origin: %+v", g.State, want)
	}
	if rec, _ := s.Subject(ctx, bob); !rec.Subject.Origin.Equal(seen) {
		t.Fatalf("origin moved to %s", rec.Subject.Origin)
	}
}

func wipe(id string, ref model.SubjectRef, created time.Time) cache.WipeRecord {
	return cache.WipeRecord{ID: id, Subject: ref, Status: cache.WipeQueued, CreatedAt: created, UpdatedAt: created, RequestedBy: "tester",
		Steps: []cache.WipeStep{{Name: "contact", Method: "DELETE", Path: "/api/contacts/x", Status: "pending"}}}
}

func testWipeEnqueue(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	if f := mustFacts(t, s, alice, T0); f.Restricted {
		t.Fatal("restricted before any wipe")
	}
	if err := s.EnqueueWipe(ctx, wipe("w-1", alice, T0), entry("wipe.request")); err != nil {
		t.Fatalf("EnqueueWipe: %v", err)
	}
	if err := s.EnqueueWipe(ctx, wipe("w-2", bob, T0.Add(time.Minute)), entry("wipe.request")); err != nil {
		t.Fatalf("EnqueueWipe: %v", err)
	}
	if f := mustFacts(t, s, alice, T0); !f.Restricted {
		t.Fatal("Facts not restricted after the wipe was queued (cached entry not invalidated?)")
	}
	if rec, _ := s.Subject(ctx, alice); rec.Restriction != "w-1" {
		t.Fatalf("Restriction = %q, want w-1", rec.Restriction)
	}
	w, err := s.Wipe(ctx, "w-1")
	if err != nil || w.Subject != alice || w.Status != cache.WipeQueued || len(w.Steps) != 1 || !w.CreatedAt.Equal(T0) {
		t.Fatalf("Wipe = %+v, %v", w, err)
	}
	if _, err := s.Wipe(ctx, "w-404"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Wipe(unknown) err = %v, want ErrNotFound", err)
	}
	ws, err := s.ListWipes(ctx, 10)
	if err != nil || len(ws) != 2 || ws[0].ID != "w-2" || ws[1].ID != "w-1" {
		t.Fatalf("ListWipes = %+v, %v; want w-2, w-1", ws, err)
	}
	if ws, _ := s.ListWipes(ctx, 1); len(ws) != 1 || ws[0].ID != "w-2" {
		t.Fatalf("ListWipes(1) = %+v", ws)
	}
	if err := s.EnqueueWipe(ctx, wipe("w-1", bob, T0), entry("wipe.request")); err == nil {
		t.Fatal("a second wipe with the same id was accepted")
	}
	es := auditAll(t, s)
	if len(es) != 3 || es[1].Action != "wipe.request" || es[2].Action != "wipe.request" {
		t.Fatalf("audit = %+v, want two wipe.request entries", es)
	}
}

func testSaveWipe(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	w := wipe("w-1", alice, T0)
	if err := s.EnqueueWipe(ctx, w, entry("wipe.request")); err != nil {
		t.Fatal(err)
	}
	w.Status = cache.WipeDone
	w.Steps[0].Status = "done"
	w.Steps[0].Attempts = 2
	w.Attempts = 2
	if err := s.SaveWipe(ctx, w); err != nil {
		t.Fatalf("SaveWipe: %v", err)
	}
	got, _ := s.Wipe(ctx, "w-1")
	if got.Status != cache.WipeDone || got.Steps[0].Status != "done" || got.Steps[0].Attempts != 2 || got.Attempts != 2 {
		t.Fatalf("Wipe after SaveWipe = %+v", got)
	}
	if err := s.SaveWipe(ctx, wipe("w-404", bob, T0)); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("SaveWipe(unknown) err = %v, want ErrNotFound", err)
	}
}

func testClaimAck(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	if _, err := s.ClaimWipe(ctx, "worker-a", time.Hour, 0); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("claim on an empty queue err = %v, want ErrNotFound", err)
	}
	for _, id := range []string{"w-1", "w-2"} {
		if err := s.EnqueueWipe(ctx, wipe(id, alice, T0), entry("wipe.request")); err != nil {
			t.Fatal(err)
		}
	}
	c1, err := s.ClaimWipe(ctx, "worker-a", time.Hour, 0)
	if err != nil || c1.WipeID != "w-1" || c1.Token == "" {
		t.Fatalf("first claim = %+v, %v; want w-1 (queue order)", c1, err)
	}
	c2, err := s.ClaimWipe(ctx, "worker-b", time.Hour, 0)
	if err != nil || c2.WipeID != "w-2" {
		t.Fatalf("second claim = %+v, %v; want w-2", c2, err)
	}
	if _, err := s.ClaimWipe(ctx, "worker-c", time.Hour, 0); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("claim with everything claimed and fresh err = %v, want ErrNotFound", err)
	}
	for _, c := range []cache.Claim{c1, c2} {
		if err := s.AckWipe(ctx, c); err != nil {
			t.Fatalf("AckWipe: %v", err)
		}
	}
	// Acked claims are never handed again, however idle.
	if c, err := s.ClaimWipe(ctx, "worker-c", 0, 0); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("claim after acks = %+v, %v; want ErrNotFound", c, err)
	}
}

func testReclaim(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	if err := s.EnqueueWipe(ctx, wipe("w-1", alice, T0), entry("wipe.request")); err != nil {
		t.Fatal(err)
	}
	a, err := s.ClaimWipe(ctx, "worker-a", time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	// worker-a "crashes". worker-b gets it once it has been idle 1ms: poll
	// within a bound instead of sleeping a fixed time.
	deadline := time.Now().Add(10 * time.Second)
	var b cache.Claim
	for {
		b, err = s.ClaimWipe(ctx, "worker-b", time.Millisecond, 0)
		if err == nil {
			break
		}
		if !errors.Is(err, cache.ErrNotFound) || time.Now().After(deadline) {
			t.Fatalf("re-claim: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if b.WipeID != a.WipeID {
		t.Fatalf("re-claimed %q, want %q", b.WipeID, a.WipeID)
	}
	if err := s.AckWipe(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClaimWipe(ctx, "worker-c", 0, 0); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("claim after ack of the re-claim err = %v, want ErrNotFound", err)
	}
}

func testClaimBlocks(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	var got cache.Claim
	var gotErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		got, gotErr = s.ClaimWipe(ctx, "worker-a", time.Hour, 10*time.Second)
	}()
	if err := s.EnqueueWipe(ctx, wipe("w-1", alice, T0), entry("wipe.request")); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if gotErr != nil || got.WipeID != "w-1" {
		t.Fatalf("blocked claim = %+v, %v; want w-1", got, gotErr)
	}
}

func testUnrestrict(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	if err := s.EnqueueWipe(ctx, wipe("w-1", alice, T0), entry("wipe.request")); err != nil {
		t.Fatal(err)
	}
	if f := mustFacts(t, s, alice, T0); !f.Restricted {
		t.Fatal("not restricted")
	}
	if err := s.Unrestrict(ctx, alice, "w-other", entry("wipe.cancel")); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Unrestrict with another wipe's id err = %v, want ErrNotFound", err)
	}
	if f := mustFacts(t, s, alice, T0); !f.Restricted {
		t.Fatal("a refused Unrestrict lifted the restriction")
	}
	if err := s.Unrestrict(ctx, alice, "w-1", entry("wipe.cancel")); err != nil {
		t.Fatalf("Unrestrict: %v", err)
	}
	if f := mustFacts(t, s, alice, T0); f.Restricted {
		t.Fatal("still restricted after Unrestrict")
	}
	if rec, _ := s.Subject(ctx, alice); rec.Restriction != "" {
		t.Fatalf("Restriction = %q after Unrestrict", rec.Restriction)
	}
	if es := auditAll(t, s); es[len(es)-1].Action != "wipe.cancel" || len(es) != 3 {
		t.Fatalf("audit = %+v, want one wipe.cancel at the end", es)
	}
}

func testAuditPaging(t *testing.T, newStore func(*testing.T) cache.Store) {
	s := newStore(t)
	ctx := ctxT(t)
	var ids []string
	for i := range 5 {
		id, err := s.AppendAudit(ctx, audit.Entry{Actor: "tester", Action: "test.append", Time: T0, Detail: map[string]string{"n": fmt.Sprint(i)}})
		if err != nil || id == "" {
			t.Fatalf("AppendAudit = %q, %v", id, err)
		}
		ids = append(ids, id)
	}
	var got []audit.Entry
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		page, next, err := s.Audit(ctx, cursor, 2)
		if err != nil {
			t.Fatalf("Audit: %v", err)
		}
		if len(page) > 2 {
			t.Fatalf("page of %d entries, limit 2", len(page))
		}
		if len(page) == 0 {
			if next != cursor {
				t.Fatalf("empty page moved the cursor %q → %q", cursor, next)
			}
			break
		}
		got = append(got, page...)
		cursor = next
	}
	if len(got) != 5 {
		t.Fatalf("read %d entries, want 5", len(got))
	}
	for i, e := range got {
		if e.ID != ids[i] || e.Detail["n"] != fmt.Sprint(i) || e.Actor != "tester" || !e.Time.Equal(T0) {
			t.Fatalf("entry %d = %+v, want id %s n=%d", i, e, ids[i], i)
		}
	}
	page, _, err := s.Audit(ctx, ids[2], 0)
	if err != nil || len(page) != 2 || page[0].ID != ids[3] {
		t.Fatalf("Audit after %s = %+v, %v; want the last two", ids[2], page, err)
	}
}

func testLoadSeed(t *testing.T, newStore func(*testing.T) cache.Store) {
	s := newStore(t)
	ctx := ctxT(t)
	seed := &model.Seed{
		Registers: *Registers(),
		Subjects:  []model.Subject{{Ref: alice, Origin: *at(-100)}},
		Evidence:  []model.Evidence{ev(alice, "marketing-consent", "web-123", -100)},
	}
	if err := cache.LoadSeed(ctx, s, seed); err != nil {
		t.Fatalf("LoadSeed: %v", err)
	}
	ix, _ := s.Registers(ctx)
	if ix.Version != 1 || ix.Legalisations["contract-care"] == nil {
		t.Fatalf("registers after seed: version %d", ix.Version)
	}
	rec, _ := s.Subject(ctx, alice)
	if !rec.Known || len(rec.Evidence) != 1 || !rec.Subject.Origin.Equal(*at(-100)) {
		t.Fatalf("alice after seed = %+v", rec)
	}
	if err := cache.LoadSeed(ctx, s, seed); !errors.Is(err, cache.ErrNotEmpty) {
		t.Fatalf("second LoadSeed err = %v, want ErrNotEmpty", err)
	}
	if ix, _ := s.Registers(ctx); ix.Version != 1 {
		t.Fatalf("refused seed changed the version to %d", ix.Version)
	}
}

func testPing(t *testing.T, newStore func(*testing.T) cache.Store) {
	s := newStore(t)
	if err := s.Ping(ctxT(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}
