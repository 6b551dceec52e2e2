// Package storetest is the behavioural suite every cache.Store
// implementation must pass. An implementation's test calls Run with a
// constructor returning a fresh, empty store for each subtest.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
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

// batchEntries checks the audit entries of one batch write of records
// records: one entry, or on a sharded store one per shard the batch
// touched, each saying how many shards ("parts") and how many of the
// batch's records it holds ("part_records").
func batchEntries(t *testing.T, es []audit.Entry, action string, records int) {
	t.Helper()
	if len(es) == 0 {
		t.Fatalf("no %s entry for the batch", action)
	}
	sum := 0
	for _, e := range es {
		if e.Action != action {
			t.Fatalf("audit = %+v, want only %s entries for the batch", es, action)
		}
		if len(es) == 1 && e.Detail["parts"] == "" {
			return
		}
		if e.Detail["parts"] != strconv.Itoa(len(es)) {
			t.Fatalf("audit = %+v: a batch in %d parts, each entry must say so", es, len(es))
		}
		n, err := strconv.Atoi(e.Detail["part_records"])
		if err != nil {
			t.Fatalf("audit entry %+v has no part_records", e)
		}
		sum += n
	}
	if sum != records {
		t.Fatalf("audit = %+v: parts hold %d records, the batch had %d", es, sum, records)
	}
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
	origin := rec.Subject.Origin
	if origin.IsZero() {
		origin = now // nothing recorded: evaluated from the instant asked
	}
	in := lifecycle.Input{Index: ix, Origin: origin, Evidence: rec.Evidence}
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
		{"RenewEvidenceMovesOriginNeverRecreates", testRenew},
		{"EvidenceByKeyFindsRecord", testEvidenceByKey},
		{"FactsFeedOwnAndInheritedEvidence", testFactsComputation},
		{"FactsInvalidatedByEvidenceChange", testFactsInvalidateEvidence},
		{"FactsInvalidatedByParentChange", testFactsInvalidateParent},
		{"FactsInvalidatedByRegisterChange", testFactsInvalidateRegisters},
		{"FactsNotServedAtNextTransition", testFactsExpiry},
		{"ReadsNeverRecordAnUnknownSubject", testFirstSeen},
		{"RecordOriginKeepsTheMostAuthoritative", testRecordOrigin},
		{"EvidenceOnlySubjectHasTheSameOriginOnEveryStore", testEvidenceOnlyOrigin},
		{"WritesMarkSubjectsDue", testDueMarks},
		{"CommitSweepOnlyWhenNoWriteCameBetween", testCommitSweep},
		{"SnapshotsCarryOriginInheritedAndApplied", testSnapshots},
		{"ChildrenFollowParentLinks", testChildren},
		{"EvidenceCountedPerLegalisation", testEvidenceCounts},
		{"HeldDeletionsWaitForADecision", testHeldWipes},
		{"EnqueueWipesIsAllOrNothing", testEnqueueWipes},
		{"LeaseHasOneHolder", testLease},
		{"MassDeletionGuardCountsAWindow", testGuard},
		{"RegisterChangeStartsARecompute", testRecompute},
		{"EnqueueWipeRestrictsSubject", testWipeEnqueue},
		{"SaveWipeRecordsProgress", testSaveWipe},
		{"ClaimAndAckWipe", testClaimAck},
		{"IdleClaimIsReclaimed", testReclaim},
		{"ClaimWaitsForEnqueue", testClaimBlocks},
		{"UnrestrictLiftsRestriction", testUnrestrict},
		{"AuditPages", testAuditPaging},
		{"AuditReadsInWriteOrderAcrossSubjects", testAuditOrder},
		{"AuditTrimsThroughAnID", testAuditTrim},
		{"FactsManyMatchesFacts", testFactsMany},
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
	batchEntries(t, auditAll(t, s)[1:], "evidence.create", 3)
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

// The manual's RenewalType: the renewal offsets the evidence's "origin".
// A renewal moves it forward only, is audited with the change, and never
// brings back a record revoked meanwhile.
func testRenew(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	out, err := s.PutEvidence(ctx, []model.Evidence{ev(alice, "contract-care", "", -800), ev(alice, "marketing-consent", "web-1", -100)}, entry("evidence.create"))
	if err != nil {
		t.Fatalf("PutEvidence: %v", err)
	}
	at := T0.Add(-time.Hour).UTC()
	got, err := s.RenewEvidence(ctx, alice, []string{out[0].ID, "ev-gone"}, at, entry("evidence.renew"))
	if err != nil {
		t.Fatalf("RenewEvidence: %v", err)
	}
	if len(got) != 1 || got[0].RenewedAt == nil || !got[0].RenewedAt.Equal(at) {
		t.Fatalf("renewed %+v, want %s renewed at %s", got, out[0].ID, at)
	}
	rec, _ := s.Subject(ctx, alice)
	for _, e := range rec.Evidence {
		switch e.ID {
		case out[0].ID:
			if e.RenewedAt == nil || !e.RenewedAt.Equal(at) {
				t.Errorf("stored renewed_at %v, want %v", e.RenewedAt, at)
			}
		case out[1].ID:
			if e.RenewedAt != nil {
				t.Errorf("a record not named was renewed")
			}
		}
	}
	// Never backwards.
	if got, err = s.RenewEvidence(ctx, alice, []string{out[0].ID}, at.Add(-24*time.Hour), entry("evidence.renew")); err != nil || !got[0].RenewedAt.Equal(at) {
		t.Fatalf("an earlier renewal moved renewed_at: %+v %v", got, err)
	}
	if err := s.RevokeEvidence(ctx, alice, out[0].ID, entry("evidence.revoke")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RenewEvidence(ctx, alice, []string{out[0].ID}, at, entry("evidence.renew")); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("renewing a revoked record: err = %v, want ErrNotFound", err)
	}
	rec, _ = s.Subject(ctx, alice)
	if len(rec.Evidence) != 1 {
		t.Fatalf("a renewal recreated a revoked record: %+v", rec.Evidence)
	}
	es := auditAll(t, s)
	n := 0
	for _, e := range es {
		if e.Action == "evidence.renew" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d evidence.renew audit entries, want 2 (a refused renewal writes none)", n)
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
	// 300 random ids used to make 300 keys: a read of an unknown subject
	// must record nothing, and evaluate it from the instant asked — also
	// when a concurrent decision asked for a later instant first (its
	// facts, cached, do not hold before it).
	for _, now := range []time.Time{T0, T0.Add(200 * 24 * time.Hour), T0} {
		f := mustFacts(t, s, bob, now)
		if f.Known || f.Origin != cache.OriginNone {
			t.Fatalf("unknown subject Facts = %+v, want not known, origin none", f)
		}
		if want := lifecycle.Evaluate(lifecycle.Input{Index: ix, Origin: now}, now); !sameState(f.State, want) {
			t.Fatalf("unknown subject state = %+v, want evaluated from now %+v", f.State, want)
		}
	}
	rec, err := s.Subject(ctx, bob)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Known || !rec.Subject.Origin.IsZero() {
		t.Fatalf("Subject after reads = %+v: a read recorded something", rec)
	}
	if total, _, err := s.DueCount(ctx, T0); err != nil || total != 0 {
		t.Fatalf("due index after reads holds %d subjects (%v), want none", total, err)
	}
}

func testRecordOrigin(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	steps := []struct {
		at   time.Time
		src  cache.OriginSource
		want bool
		then time.Time
	}{
		{*at(-5), cache.OriginObserved, true, *at(-5)},
		{*at(-1), cache.OriginObserved, false, *at(-5)},     // first sighting stays
		{*at(-400), cache.OriginStated, true, *at(-400)},    // the backend's word replaces it once
		{*at(-300), cache.OriginStated, false, *at(-400)},   // never twice
		{*at(-900), cache.OriginObserved, false, *at(-400)}, // nor by an observation
	}
	for i, st := range steps {
		got, err := s.RecordOrigin(ctx, bob, st.at, st.src)
		if err != nil || got != st.want {
			t.Fatalf("step %d: RecordOrigin = %v, %v; want %v", i, got, err, st.want)
		}
		rec, _ := s.Subject(ctx, bob)
		if !rec.Subject.Origin.Equal(st.then) {
			t.Fatalf("step %d: origin %s, want %s", i, rec.Subject.Origin, st.then)
		}
		if f := mustFacts(t, s, bob, T0); f.Origin != cache.OriginObserved+cache.OriginSource(min(i/2, 1)) {
			t.Fatalf("step %d: Facts.Origin = %s (cached entry not invalidated?)", i, f.Origin)
		}
	}
	// An operator's origin wins over anything recorded.
	if err := s.PutSubject(ctx, model.Subject{Ref: bob, Origin: *at(-10)}, entry("subject.put")); err != nil {
		t.Fatal(err)
	}
	if rec, _ := s.Subject(ctx, bob); !rec.Subject.Origin.Equal(*at(-10)) {
		t.Fatalf("origin after PutSubject = %s", rec.Subject.Origin)
	}
	if f := mustFacts(t, s, bob, T0); f.Origin != cache.OriginSet {
		t.Fatalf("Facts.Origin = %s, want set", f.Origin)
	}
	if _, err := s.RecordOrigin(ctx, bob, time.Time{}, cache.OriginObserved); err == nil {
		t.Fatal("RecordOrigin accepted a zero instant")
	}
	if es := auditAll(t, s); len(es) != 2 {
		t.Fatalf("audit has %d entries; recording origins is not audited, PutSubject is", len(es))
	}
}

func testEvidenceOnlyOrigin(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, ix := seeded(t, newStore)
	ctx := ctxT(t)
	// A 500-day-old consent imported for a contact gdprgate never met: the
	// subject's data is taken to originate when the evidence arrived
	// (entry.Time), on every store alike — not at the year 1.
	e := entry("evidence.import")
	if _, err := s.PutEvidence(ctx, []model.Evidence{ev(bob, "marketing-consent", "k-500", -500)}, e); err != nil {
		t.Fatal(err)
	}
	rec, _ := s.Subject(ctx, bob)
	if !rec.Subject.Origin.Equal(T0) {
		t.Fatalf("evidence-only subject origin = %s, want the evidence's arrival %s", rec.Subject.Origin, T0)
	}
	f := mustFacts(t, s, bob, T0)
	if f.Origin != cache.OriginObserved || !sameState(f.State, wantState(t, s, ix, bob, T0)) || f.State.Active&0b11 != 0b11 {
		t.Fatalf("Facts = %+v, want observed origin and bits 0-1 active (grace)", f)
	}
	// An import may state the subject's origin; it is not kept in the record.
	so := *at(-50)
	in := ev(alice, "contract-care", "", -40)
	in.SubjectOrigin = &so
	out, err := s.PutEvidence(ctx, []model.Evidence{in}, entry("evidence.import"))
	if err != nil {
		t.Fatal(err)
	}
	if out[0].SubjectOrigin != nil {
		t.Fatal("SubjectOrigin kept in the returned record")
	}
	rec, _ = s.Subject(ctx, alice)
	if !rec.Subject.Origin.Equal(so) || rec.Evidence[0].SubjectOrigin != nil {
		t.Fatalf("alice = %+v, want origin %s and no subject_origin stored", rec, so)
	}
	if f := mustFacts(t, s, alice, T0); f.Origin != cache.OriginStated {
		t.Fatalf("Facts.Origin = %s, want stated", f.Origin)
	}
}

// dueMap reads the whole due index through ScanDue.
func dueMap(t *testing.T, s cache.Store) map[model.SubjectRef]float64 {
	t.Helper()
	out := map[model.SubjectRef]float64{}
	cursor := ""
	for range 10000 {
		ds, next, err := s.ScanDue(ctxT(t), cursor, 2)
		if err != nil {
			t.Fatalf("ScanDue: %v", err)
		}
		checkDueSnapshots(t, s, ds)
		for _, d := range ds {
			out[d.Ref] = d.Score
		}
		if next == "" {
			return out
		}
		cursor = next
	}
	t.Fatal("ScanDue does not end")
	return nil
}

// checkDueSnapshots: a snapshot given with a due entry is what Snapshots
// reads (nothing was written since).
func checkDueSnapshots(t *testing.T, s cache.Store, ds []cache.Due) {
	t.Helper()
	for _, d := range ds {
		if d.Snapshot == nil {
			continue
		}
		want, err := s.Snapshots(ctxT(t), []model.SubjectRef{d.Ref})
		if err != nil {
			t.Fatalf("Snapshots: %v", err)
		}
		if !reflect.DeepEqual(*d.Snapshot, want[0]) {
			t.Fatalf("the due entry of %s carries the snapshot %+v, Snapshots reads %+v", d.Ref, *d.Snapshot, want[0])
		}
	}
}

func testDueMarks(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	if err := s.PutSubject(ctx, model.Subject{Ref: phone, Origin: *at(-40), Parent: &alice}, entry("subject.put")); err != nil {
		t.Fatal(err)
	}
	m1 := dueMap(t, s)
	if len(m1) != 1 || m1[phone] > 0 {
		t.Fatalf("due after PutSubject = %v, want the phone marked (score <= 0)", m1)
	}
	// Evidence of the parent marks the child too (it inherits it).
	if _, err := s.PutEvidence(ctx, []model.Evidence{ev(alice, "contract-care", "", -100)}, entry("evidence.create")); err != nil {
		t.Fatal(err)
	}
	m2 := dueMap(t, s)
	if len(m2) != 2 || m2[alice] > 0 || m2[phone] > 0 || m2[phone] == m1[phone] || m2[alice] == m2[phone] {
		t.Fatalf("due after parent evidence = %v (before %v), want both marked with fresh distinct marks", m2, m1)
	}
	if _, err := s.RecordOrigin(ctx, bob, *at(-3), cache.OriginObserved); err != nil {
		t.Fatal(err)
	}
	if m := dueMap(t, s); m[bob] > 0 || len(m) != 3 {
		t.Fatalf("due after RecordOrigin = %v", m)
	}
	ds, err := s.Due(ctx, T0, 2)
	if err != nil || len(ds) != 2 || !ds[0].Marked() || ds[0].Score > ds[1].Score {
		t.Fatalf("Due(limit 2) = %+v, %v; want two marked entries, lowest score first", ds, err)
	}
	checkDueSnapshots(t, s, ds)
	total, due, err := s.DueCount(ctx, T0)
	if err != nil || total != 3 || due != 3 {
		t.Fatalf("DueCount = %d, %d, %v; want 3, 3", total, due, err)
	}
}

func testCommitSweep(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	for _, ref := range []model.SubjectRef{alice, bob} {
		if err := s.PutSubject(ctx, model.Subject{Ref: ref, Origin: *at(-10)}, entry("subject.put")); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := s.Due(ctx, T0, 10)
	if err != nil || len(ds) != 2 {
		t.Fatalf("Due = %+v, %v", ds, err)
	}
	byRef := map[model.SubjectRef]cache.Due{}
	for _, d := range ds {
		byRef[d.Ref] = d
	}
	// A write to bob after the sweeper read the index: its commit must not
	// overwrite the new mark.
	if _, err := s.PutEvidence(ctx, []model.Evidence{ev(bob, "contract-care", "", -10)}, entry("evidence.create")); err != nil {
		t.Fatal(err)
	}
	next := cache.DueScore(T0.Add(20 * 24 * time.Hour))
	ok, err := s.CommitSweep(ctx, []cache.SweepUpdate{
		{Ref: alice, Expect: byRef[alice].Score, Next: next, Applied: cache.Applied{Obliviated: 0b1000, Round: 1}, AppliedChanged: true},
		{Ref: bob, Expect: byRef[bob].Score, Next: next, Applied: cache.Applied{Obliviated: 0b1000, Round: 1}, AppliedChanged: true},
		{Ref: phone, Expect: 0, Next: next},
	})
	if err != nil || !reflect.DeepEqual(ok, []bool{true, false, false}) {
		t.Fatalf("CommitSweep = %v, %v; want alice only (bob changed, phone not indexed)", ok, err)
	}
	m := dueMap(t, s)
	if m[alice] != next || m[bob] > 0 || len(m) != 2 {
		t.Fatalf("due = %v; want alice at %v and bob still marked", m, next)
	}
	if due, _ := s.Due(ctx, T0, 10); len(due) != 1 || due[0].Ref != bob {
		t.Fatalf("Due(T0) = %+v, want bob only", due)
	}
	at := cache.Due{Score: next}.At()
	if due, _ := s.Due(ctx, at, 10); len(due) != 2 || due[1].Ref != alice || !due[1].At().Equal(at) {
		t.Fatalf("Due(at alice's instant) = %+v, want bob then alice", due)
	}
	if due, _ := s.Due(ctx, at.Add(-time.Millisecond), 10); len(due) != 1 {
		t.Fatalf("Due just before alice's instant = %+v, want bob only", due)
	}
	// No next transition: kept in the index (a register change finds it),
	// never due.
	// An unchanged applied state need not be written: it stays.
	ok, err = s.CommitSweep(ctx, []cache.SweepUpdate{{Ref: alice, Expect: next, Next: cache.NoTransition}})
	if err != nil || !ok[0] {
		t.Fatalf("CommitSweep(no transition) = %v, %v", ok, err)
	}
	if m := dueMap(t, s); !(cache.Due{Score: m[alice]}).Never() {
		t.Fatalf("alice's score = %v, want +Inf", m[alice])
	}
	if due, _ := s.Due(ctx, T0.Add(100*365*24*time.Hour), 10); len(due) != 1 {
		t.Fatalf("Due(far future) = %+v: a subject without transition is never due", due)
	}
	snaps, err := s.Snapshots(ctx, []model.SubjectRef{alice})
	if err != nil || snaps[0].Applied != (cache.Applied{Obliviated: 0b1000, Round: 1}) {
		t.Fatalf("Snapshots applied = %+v, %v", snaps, err)
	}
	// Back to zero: the record goes (absent is zero).
	ok, err = s.CommitSweep(ctx, []cache.SweepUpdate{{Ref: alice, Expect: cache.NoTransition, Next: next, AppliedChanged: true}})
	if err != nil || !ok[0] {
		t.Fatalf("CommitSweep(zero applied) = %v, %v", ok, err)
	}
	if snaps, _ := s.Snapshots(ctx, []model.SubjectRef{alice}); snaps[0].Applied != (cache.Applied{}) {
		t.Fatalf("applied after reset = %+v", snaps[0].Applied)
	}
}

func testSnapshots(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	if err := s.PutSubject(ctx, model.Subject{Ref: phone, Origin: *at(-40), Parent: &alice}, entry("subject.put")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutEvidence(ctx, []model.Evidence{ev(alice, "contract-care", "", -100)}, entry("evidence.create")); err != nil {
		t.Fatal(err)
	}
	if err := s.EnqueueWipe(ctx, wipe("w-1", bob, T0), entry("wipe.request")); err != nil {
		t.Fatal(err)
	}
	unknown := model.SubjectRef{Entity: "contact", ID: "c-404"}
	snaps, err := s.Snapshots(ctx, []model.SubjectRef{phone, alice, bob, unknown})
	if err != nil || len(snaps) != 4 {
		t.Fatalf("Snapshots = %+v, %v", snaps, err)
	}
	if p := snaps[0]; p.Record.Subject.Ref != phone || p.Origin != cache.OriginSet || len(p.Inherited) != 1 || !p.Record.Subject.Origin.Equal(*at(-40)) {
		t.Fatalf("phone snapshot = %+v, want set origin and alice's evidence inherited", p)
	}
	if a := snaps[1]; a.Origin != cache.OriginObserved || len(a.Record.Evidence) != 1 || a.Inherited != nil {
		t.Fatalf("alice snapshot = %+v, want observed origin (first evidence), one record", a)
	}
	if b := snaps[2]; b.Record.Restriction != "w-1" {
		t.Fatalf("bob snapshot = %+v, want restricted by w-1", b)
	}
	if u := snaps[3]; u.Record.Known || u.Origin != cache.OriginNone || u.Record.Subject.Ref != unknown {
		t.Fatalf("unknown snapshot = %+v", u)
	}
}

func testChildren(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	phone2 := model.SubjectRef{Entity: "phone_number", ID: "+420999"}
	for _, ph := range []model.SubjectRef{phone, phone2} {
		if err := s.PutSubject(ctx, model.Subject{Ref: ph, Origin: *at(-40), Parent: &alice}, entry("subject.put")); err != nil {
			t.Fatal(err)
		}
	}
	if cs, err := s.Children(ctx, alice); err != nil || len(cs) != 2 {
		t.Fatalf("Children(alice) = %v, %v; want both phones", cs, err)
	}
	// Re-parenting moves the child; dropping the parent removes it.
	if err := s.PutSubject(ctx, model.Subject{Ref: phone, Origin: *at(-40), Parent: &bob}, entry("subject.put")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSubject(ctx, model.Subject{Ref: phone2, Origin: *at(-40)}, entry("subject.put")); err != nil {
		t.Fatal(err)
	}
	if cs, _ := s.Children(ctx, alice); len(cs) != 0 {
		t.Fatalf("Children(alice) = %v, want none", cs)
	}
	if cs, _ := s.Children(ctx, bob); len(cs) != 1 || cs[0] != phone {
		t.Fatalf("Children(bob) = %v, want the phone", cs)
	}
}

func testEvidenceCounts(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	want := func(step string, w map[string]int) {
		t.Helper()
		got, err := s.EvidenceCounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 && len(w) == 0 {
			return
		}
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("%s: counts = %v, want %v", step, got, w)
		}
	}
	want("empty", map[string]int{})
	out, err := s.PutEvidence(ctx, []model.Evidence{ev(alice, "contract-care", "", -10), ev(alice, "marketing-consent", "k1", -10), ev(bob, "marketing-consent", "k2", -10)}, entry("evidence.create"))
	if err != nil {
		t.Fatal(err)
	}
	want("three records", map[string]int{"contract-care": 1, "marketing-consent": 2})
	// Re-import, twice in one batch, and under another subject: still one
	// record per key.
	if _, err := s.PutEvidence(ctx, []model.Evidence{ev(alice, "marketing-consent", "k1", -9), ev(bob, "marketing-consent", "k1", -8), ev(bob, "marketing-consent", "k3", -8), ev(bob, "marketing-consent", "k3", -7)}, entry("evidence.import")); err != nil {
		t.Fatal(err)
	}
	want("re-imports", map[string]int{"contract-care": 1, "marketing-consent": 3})
	// A given id replacing a record of another legalisation moves the count.
	repl := ev(alice, "marketing-consent", "k9", -5)
	repl.ID = out[0].ID
	if _, err := s.PutEvidence(ctx, []model.Evidence{repl}, entry("evidence.create")); err != nil {
		t.Fatal(err)
	}
	want("replace by id", map[string]int{"marketing-consent": 4})
	if err := s.RevokeEvidence(ctx, alice, out[0].ID, entry("evidence.revoke")); err != nil {
		t.Fatal(err)
	}
	want("revoke", map[string]int{"marketing-consent": 3})
}

func testHeldWipes(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	held := wipe("lc-1", alice, T0)
	held.Status, held.Reason, held.HeldFor = cache.WipeHeld, cache.ReasonLifecycle, "approval"
	erase := wipe("lc-2", bob, T0.Add(time.Second))
	erase.Status, erase.Kind, erase.Bits = cache.WipeHeld, cache.KindErasure, 0b1000
	gone := wipe("lc-3", bob, T0.Add(2*time.Second))
	gone.Status, gone.Kind = cache.WipeNotExecutable, cache.KindErasure
	for _, w := range []cache.WipeRecord{held, erase, gone} {
		if err := s.EnqueueWipe(ctx, w, entry("deletion.hold")); err != nil {
			t.Fatalf("EnqueueWipe(%s): %v", w.ID, err)
		}
	}
	if f := mustFacts(t, s, alice, T0); f.Restricted {
		t.Fatal("a held wipe restricted its subject")
	}
	if c, err := s.ClaimWipe(ctx, "w", time.Hour, 0); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("claim = %+v, %v: held or not executable work was queued", c, err)
	}
	hs, err := s.HeldWipes(ctx, 10)
	if err != nil || len(hs) != 2 || hs[0].ID != "lc-1" || hs[1].ID != "lc-2" || hs[1].Bits != 0b1000 || hs[1].Kind != cache.KindErasure {
		t.Fatalf("HeldWipes = %+v, %v", hs, err)
	}
	got, err := s.DecideWipe(ctx, "lc-1", true, "dpo", T0.Add(time.Hour), entry("deletion.approve"))
	if err != nil || got.Status != cache.WipeQueued || got.DecidedBy != "dpo" || got.DecidedAt == nil || got.HeldFor != "" {
		t.Fatalf("approve = %+v, %v", got, err)
	}
	if f := mustFacts(t, s, alice, T0); !f.Restricted {
		t.Fatal("an approved wipe did not restrict its subject")
	}
	if c, err := s.ClaimWipe(ctx, "w", time.Hour, 0); err != nil || c.WipeID != "lc-1" {
		t.Fatalf("claim after approval = %+v, %v", c, err)
	}
	if _, err := s.DecideWipe(ctx, "lc-1", false, "dpo", T0, entry("deletion.reject")); !errors.Is(err, cache.ErrConflict) {
		t.Fatalf("deciding a decided deletion err = %v, want ErrConflict", err)
	}
	got, err = s.DecideWipe(ctx, "lc-2", false, "dpo", T0, entry("deletion.reject"))
	if err != nil || got.Status != cache.WipeRejected || got.Steps[0].Status != "skipped" {
		t.Fatalf("reject = %+v, %v", got, err)
	}
	if _, err := s.DecideWipe(ctx, "lc-404", true, "dpo", T0, entry("deletion.approve")); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("deciding an unknown deletion err = %v, want ErrNotFound", err)
	}
	if hs, _ := s.HeldWipes(ctx, 10); len(hs) != 0 {
		t.Fatalf("HeldWipes after decisions = %+v", hs)
	}
	if f := mustFacts(t, s, bob, T0); f.Restricted {
		t.Fatal("an erasure restricted its subject")
	}
	// An erasure queued right away does not restrict either.
	q := wipe("lc-4", bob, T0)
	q.Kind = cache.KindErasure
	if err := s.EnqueueWipe(ctx, q, entry("deletion.create")); err != nil {
		t.Fatal(err)
	}
	if f := mustFacts(t, s, bob, T0); f.Restricted {
		t.Fatal("a queued erasure restricted its subject")
	}
	if es := auditAll(t, s); len(es) != 7 || es[4].Action != "deletion.approve" || es[5].Action != "deletion.reject" {
		t.Fatalf("audit = %+v", es)
	}
}

func testEnqueueWipes(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	if err := s.EnqueueWipe(ctx, wipe("w-1", bob, T0), entry("wipe.request")); err != nil {
		t.Fatal(err)
	}
	parent, child := wipe("w-2", alice, T0), wipe("w-1", phone, T0)
	child.Reason, child.Parent = cache.ReasonCascade, "w-2"
	if err := s.EnqueueWipes(ctx, []cache.WipeRecord{parent, child}, []audit.Entry{entry("wipe.request"), entry("wipe.cascade")}); !errors.Is(err, cache.ErrConflict) {
		t.Fatalf("EnqueueWipes with a taken id err = %v, want ErrConflict", err)
	}
	if f := mustFacts(t, s, alice, T0); f.Restricted {
		t.Fatal("a refused EnqueueWipes restricted the parent")
	}
	child.ID = "w-3"
	if err := s.EnqueueWipes(ctx, []cache.WipeRecord{parent, child}, []audit.Entry{entry("wipe.request"), entry("wipe.cascade")}); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []model.SubjectRef{alice, phone} {
		if f := mustFacts(t, s, ref, T0); !f.Restricted {
			t.Fatalf("%s not restricted by the cascade", ref.Entity)
		}
	}
	if w, _ := s.Wipe(ctx, "w-3"); w.Parent != "w-2" || w.Reason != cache.ReasonCascade {
		t.Fatalf("child wipe = %+v", w)
	}
	if es := auditAll(t, s); len(es) != 4 || es[3].Action != "wipe.cascade" {
		t.Fatalf("audit = %+v, want one entry per wipe", es)
	}
}

func testLease(t *testing.T, newStore func(*testing.T) cache.Store) {
	s := newStore(t)
	ctx := ctxT(t)
	ok, err := s.AcquireLease(ctx, "sweeper", "a", time.Hour)
	if err != nil || !ok {
		t.Fatalf("first acquire = %v, %v", ok, err)
	}
	if ok, _ := s.AcquireLease(ctx, "sweeper", "b", time.Hour); ok {
		t.Fatal("a second holder got a held lease")
	}
	if ok, _ := s.AcquireLease(ctx, "sweeper", "a", time.Hour); !ok {
		t.Fatal("the holder could not extend its lease")
	}
	if ok, _ := s.AcquireLease(ctx, "other", "b", time.Hour); !ok {
		t.Fatal("leases of different names interfere")
	}
	if err := s.ReleaseLease(ctx, "sweeper", "b"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.AcquireLease(ctx, "sweeper", "b", time.Hour); ok {
		t.Fatal("a non-holder released the lease")
	}
	if err := s.ReleaseLease(ctx, "sweeper", "a"); err != nil {
		t.Fatal(err)
	}
	// A holder that dies: the lease runs out and another takes it.
	if ok, _ := s.AcquireLease(ctx, "sweeper", "b", 50*time.Millisecond); !ok {
		t.Fatal("b could not take a released lease")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, err := s.AcquireLease(ctx, "sweeper", "c", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an expired lease was never handed over")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testGuard(t *testing.T, newStore func(*testing.T) cache.Store) {
	s := newStore(t)
	ctx := ctxT(t)
	admit := func(n int, at time.Time, confirm bool) (bool, int) {
		t.Helper()
		ok, c, err := s.AdmitDeletions(ctx, n, 3, time.Minute, at, confirm)
		if err != nil {
			t.Fatal(err)
		}
		return ok, c
	}
	if ok, c := admit(2, T0, false); !ok || c != 0 {
		t.Fatalf("2 of 3 = %v, %d", ok, c)
	}
	if ok, c := admit(2, T0.Add(time.Second), false); ok || c != 2 {
		t.Fatalf("2 more within the minute = %v, %d; want refused with 2 counted", ok, c)
	}
	if ok, _ := admit(1, T0.Add(time.Second), false); !ok {
		t.Fatal("the third deletion was refused")
	}
	if ok, _ := admit(1, T0.Add(2*time.Second), false); ok {
		t.Fatal("a fourth deletion within the minute was admitted")
	}
	if ok, c := admit(5, T0.Add(2*time.Second), true); !ok || c != 3 {
		t.Fatalf("confirmed = %v, %d; want admitted", ok, c)
	}
	// The window slides: a minute later only the five confirmed ones count.
	if ok, c := admit(1, T0.Add(61*time.Second+500*time.Millisecond), false); ok || c != 5 {
		t.Fatalf("after the first three left the window = %v, %d; want refused, 5 counted", ok, c)
	}
	if ok, c := admit(1, T0.Add(3*time.Minute), false); !ok || c != 0 {
		t.Fatalf("three minutes later = %v, %d", ok, c)
	}
}

func testRecompute(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	p, err := s.Recompute(ctx)
	if err != nil || p.Version != 1 || p.Done || p.Cursor != "" {
		t.Fatalf("Recompute after the first save = %+v, %v; want version 1 pending", p, err)
	}
	p.Cursor, p.Scanned = "42", 7
	if err := s.SaveRecompute(ctx, p); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Recompute(ctx); got.Cursor != "42" || got.Scanned != 7 {
		t.Fatalf("Recompute = %+v", got)
	}
	if _, err := s.SaveRegisters(ctx, Registers(), 1, entry("register.replace")); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveRecompute(ctx, p); !errors.Is(err, cache.ErrConflict) {
		t.Fatalf("saving progress of a superseded recompute err = %v, want ErrConflict", err)
	}
	if got, _ := s.Recompute(ctx); got.Version != 2 || got.Scanned != 0 || got.Cursor != "" {
		t.Fatalf("Recompute after a register change = %+v, want a fresh one for version 2", got)
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
	// With audit entries: stored together with the record, or not at all.
	before := len(auditAll(t, s))
	w.Status = cache.WipeCancelled
	if err := s.SaveWipe(ctx, w, entry("wipe.cancel"), entry("wipe.note")); err != nil {
		t.Fatalf("SaveWipe with entries: %v", err)
	}
	es := auditAll(t, s)
	if len(es) != before+2 || es[before].Action != "wipe.cancel" || es[before+1].Action != "wipe.note" {
		t.Fatalf("audit after SaveWipe with entries = %+v", es[before:])
	}
	if got, _ := s.Wipe(ctx, "w-1"); got.Status != cache.WipeCancelled {
		t.Fatalf("Wipe after SaveWipe with entries = %+v", got)
	}
	if err := s.SaveWipe(ctx, wipe("w-404", bob, T0), entry("wipe.cancel")); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("SaveWipe(unknown) with an entry err = %v, want ErrNotFound", err)
	}
	if n := len(auditAll(t, s)); n != before+2 {
		t.Fatalf("a refused SaveWipe appended %d audit entries", n-before-2)
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

func testAuditOrder(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	// Writes to many subjects (on a sharded store, many shards) one after
	// the other read back in the order they were made.
	var want []string
	for i := range 12 {
		ref := model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("order-%d", i)}
		e := entry("subject.put")
		e.Object = fmt.Sprint(i)
		if err := s.PutSubject(ctx, model.Subject{Ref: ref, Origin: T0}, e); err != nil {
			t.Fatal(err)
		}
		want = append(want, e.Object)
		if i%3 == 0 {
			a := entry("test.append")
			a.Object = fmt.Sprintf("a%d", i)
			if _, err := s.AppendAudit(ctx, a); err != nil {
				t.Fatal(err)
			}
			want = append(want, a.Object)
		}
	}
	es := auditAll(t, s)[1:]
	var got []string
	for _, e := range es {
		got = append(got, e.Object)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("audit order %v, want %v", got, want)
	}
	// Paging one by one gives the same sequence.
	cursor, n := auditAll(t, s)[0].ID, 0
	for {
		page, next, err := s.Audit(ctx, cursor, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		if page[0].Object != want[n] {
			t.Fatalf("page %d = %s, want %s", n, page[0].Object, want[n])
		}
		cursor, n = next, n+1
	}
	if n != len(want) {
		t.Fatalf("paging read %d entries, want %d", n, len(want))
	}
}

func testAuditTrim(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	for i := range 6 {
		ref := model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("trim-%d", i)}
		if err := s.PutSubject(ctx, model.Subject{Ref: ref, Origin: T0}, entry("subject.put")); err != nil {
			t.Fatal(err)
		}
	}
	es := auditAll(t, s)
	if len(es) != 7 {
		t.Fatalf("%d entries, want 7", len(es))
	}
	if c, err := s.AuditCount(ctx); err != nil || c != 7 {
		t.Fatalf("AuditCount = %d, %v; want 7", c, err)
	}
	n, err := s.TrimAudit(ctx, es[3].ID)
	if err != nil || n != 4 {
		t.Fatalf("TrimAudit through the 4th entry = %d, %v; want 4 removed", n, err)
	}
	left := auditAll(t, s)
	if c, _ := s.AuditCount(ctx); c != 3 {
		t.Fatalf("AuditCount after trimming = %d, want 3", c)
	}
	if len(left) != 3 || left[0].ID != es[4].ID || left[2].ID != es[6].ID {
		t.Fatalf("after trimming: %+v, want the last three", left)
	}
	// A cursor at a trimmed entry still pages on from there.
	page, _, err := s.Audit(ctx, es[1].ID, 10)
	if err != nil || len(page) != 3 || page[0].ID != es[4].ID {
		t.Fatalf("Audit after a trimmed id = %+v, %v", page, err)
	}
	if n, err := s.TrimAudit(ctx, es[3].ID); err != nil || n != 0 {
		t.Fatalf("trimming again = %d, %v; want nothing removed", n, err)
	}
	if _, err := s.TrimAudit(ctx, "not-an-id"); err == nil {
		t.Fatal("TrimAudit accepted an invalid id")
	}
}

func testFactsMany(t *testing.T, newStore func(*testing.T) cache.Store) {
	s, _ := seeded(t, newStore)
	ctx := ctxT(t)
	if err := s.PutSubject(ctx, model.Subject{Ref: phone, Origin: *at(-40), Parent: &alice}, entry("subject.put")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutEvidence(ctx, []model.Evidence{ev(alice, "contract-care", "", -100), ev(bob, "marketing-consent", "k", -10)}, entry("evidence.create")); err != nil {
		t.Fatal(err)
	}
	if err := s.EnqueueWipe(ctx, wipe("w-1", bob, T0), entry("wipe.request")); err != nil {
		t.Fatal(err)
	}
	unknown := model.SubjectRef{Entity: "contact", ID: "c-404"}
	refs := []model.SubjectRef{phone, alice, bob, unknown, alice}
	// Once cold, once with some cached: the same answers as Facts.
	for round := range 2 {
		fs, err := s.FactsMany(ctx, refs, T0)
		if err != nil || len(fs) != len(refs) {
			t.Fatalf("round %d: FactsMany = %d facts, %v", round, len(fs), err)
		}
		for i, ref := range refs {
			one := mustFacts(t, s, ref, T0)
			if !sameState(fs[i].State, one.State) || fs[i].Known != one.Known || fs[i].Restricted != one.Restricted || fs[i].Origin != one.Origin {
				t.Fatalf("round %d: FactsMany[%d] (%s) = %+v, Facts = %+v", round, i, ref.ID, fs[i], one)
			}
		}
		if !fs[2].Restricted || fs[3].Known || !fs[0].Known || fs[0].State.CoveredInherited == 0 {
			t.Fatalf("round %d: FactsMany = %+v", round, fs)
		}
	}
	if fs, err := s.FactsMany(ctx, nil, T0); err != nil || len(fs) != 0 {
		t.Fatalf("FactsMany(nil) = %v, %v", fs, err)
	}
}
