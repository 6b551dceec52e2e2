package adminapi

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/forget"
	"github.com/gdprgate/gdprgate/policy/model"
)

// The manual's legalisation "Valid till … Period to which the legalization
// may be used to create GdprEvidence": retirement is how a legalisation in
// use goes out of service; deleting one that evidence still names is
// refused, saying how many records and where.
func TestDeletingALegalisationThatEvidenceNamesIsRefusedRetiringIsTheWayOut(t *testing.T) {
	e := newEnv(t)
	before := e.snapshot()
	r := e.do("DELETE", "/v1/legalisations/contract-care", ScopeEditItems, "")
	m := r.json(t)
	if r.status != 409 || m["error"] != "in_use" || m["references"] != float64(1) || !strings.Contains(m["message"].(string), "legalisations/contract-care: 1 evidence records") || !strings.Contains(m["message"].(string), "retire_from") {
		t.Fatalf("delete in use: %d %s", r.status, r.body)
	}
	// The whole register set without it: refused the same way.
	ix, _ := e.store.Registers(context.Background())
	regs := *ix.Registers
	regs.Legalisations = nil
	for _, l := range ix.Registers.Legalisations {
		if l.ID != "contract-care" {
			regs.Legalisations = append(regs.Legalisations, l)
		}
	}
	b, _ := json.Marshal(regs)
	if r := e.do("PUT", "/v1/registers", ScopeAdmin, string(b)); r.status != 409 || r.json(t)["error"] != "in_use" {
		t.Fatalf("registers PUT without it: %d %s", r.status, r.body)
	}
	if after := e.snapshot(); after != before {
		t.Fatal("a refused delete changed something")
	}
	// Retiring it is accepted; and a legalisation nothing names can go.
	r = e.do("PATCH", "/v1/legalisations/contract-care", ScopeEditItems, `{"retire_from":"2026-06-01T12:00:00Z"}`)
	if r.status != 200 {
		t.Fatalf("retire: %d %s", r.status, r.body)
	}
	if r := e.do("DELETE", "/v1/legalisations/future-program", ScopeEditItems, ""); r.status != 200 {
		t.Fatalf("delete unused: %d %s", r.status, r.body)
	}
	// Purposes and categories named by legalisations: 409 with the count.
	r = e.do("DELETE", "/v1/purposes/marketing", ScopeEditItems, "")
	if m := r.json(t); r.status != 409 || m["references"] != float64(1) || !strings.Contains(m["message"].(string), "legalisations/marketing-consent") {
		t.Fatalf("delete a purpose in use: %d %s", r.status, r.body)
	}
}

func putSubjects(t *testing.T, e *env, n int, origin time.Time) {
	t.Helper()
	for i := range n {
		ref := model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("s-%d", i)}
		if err := e.store.PutSubject(context.Background(), model.Subject{Ref: ref, Origin: origin}, audit.Entry{Actor: "t"}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRegisterWriteDryRunPreviewsAndLargeChangesNeedConfirmation(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.MaxDeletionsPerChange = 3
		ex, err := forget.NewExecutor(forget.ExecutorOptions{Store: o.Store, Hasher: o.Hasher, Clock: o.Clock, Plans: forget.Plans{
			Wipe:  testPlan,
			Erase: forget.Erasures{"contact": {"contact": {{Name: "fields", Method: "PATCH", Path: "/api/contacts/{id}", Body: []byte(`{"email":null}`)}}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		o.Forget = ex
	})
	putSubjects(t, e, 5, e.now.Add(-100*24*time.Hour))
	// Contact data forgotten after 50 days instead of 730: 5 subjects (and
	// c-1, covered by evidence, not).
	change := `{"obliviation_period":50,"expiration_period":40}`
	before := e.snapshot()
	r := e.do("PATCH", "/v1/sensitivities/contact?dry_run=true", ScopeEditItems, change)
	if r.status != 200 {
		t.Fatalf("dry run: %d %s", r.status, r.body)
	}
	var dry struct {
		DryRun       bool                 `json:"dry_run"`
		Preview      forget.ChangePreview `json:"preview"`
		NeedsConfirm bool                 `json:"needs_confirm"`
	}
	if err := json.Unmarshal(r.body, &dry); err != nil {
		t.Fatal(err)
	}
	if !dry.DryRun || !dry.NeedsConfirm || dry.Preview.Deletions.Erasures != 5 || dry.Preview.Bits["contact"]["active→obliviated"] != 5 || dry.Preview.Subjects != 6 {
		t.Fatalf("preview = %+v", dry)
	}
	if e.snapshot() != before {
		t.Fatal("a dry run changed something")
	}
	r = e.do("PATCH", "/v1/sensitivities/contact", ScopeEditItems, change)
	if m := r.json(t); r.status != 409 || m["error"] != "confirmation_required" || m["preview"] == nil {
		t.Fatalf("unconfirmed: %d %s", r.status, r.body)
	}
	if e.snapshot() != before {
		t.Fatal("a refused change changed something")
	}
	if r := e.do("PATCH", "/v1/sensitivities/contact?confirm=true", ScopeEditItems, change); r.status != 200 {
		t.Fatalf("confirmed: %d %s", r.status, r.body)
	}
	if a := e.lastAudit(); a.Detail["deletions"] != "5" || a.Detail["confirmed"] != "true" {
		t.Fatalf("audit = %+v", a)
	}
	// Changes that cannot move a subject (a role) need no preview.
	if r := e.do("PATCH", "/v1/roles/agent", ScopeEditItems, `{"view_archived":true}`); r.status != 200 {
		t.Fatalf("role change: %d %s", r.status, r.body)
	}
}

func heldRecord(id, subject string, now time.Time) cache.WipeRecord {
	return cache.WipeRecord{ID: id, Subject: model.SubjectRef{Entity: "contact", ID: subject}, Status: cache.WipeHeld, HeldFor: "approval",
		Kind: cache.KindErasure, Bits: 0b1000, Reason: cache.ReasonLifecycle, CreatedAt: now, UpdatedAt: now,
		Steps: []cache.WipeStep{{Name: "health", Method: "PATCH", Path: "/api/contacts/" + subject, Body: `{"health_notes":null}`, Status: "pending"}}}
}

func TestHeldDeletionsAreListedApprovedAndRejectedWithAuditAndGuard(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.WipesPerMinute = 2 })
	ctx := context.Background()
	for i := range 4 {
		if err := e.store.EnqueueWipe(ctx, heldRecord(fmt.Sprintf("lc-%d", i), fmt.Sprintf("c-%d", i), e.now.Add(time.Duration(i)*time.Second)), audit.Entry{Actor: "lifecycle"}); err != nil {
			t.Fatal(err)
		}
	}
	r := e.do("GET", "/v1/deletions?state=held", ScopeWipe, "")
	var list struct {
		Deletions []deletionView `json:"deletions"`
		Count     int            `json:"count"`
	}
	if json.Unmarshal(r.body, &list) != nil || r.status != 200 || list.Count != 4 || list.Deletions[0].ID != "lc-0" || list.Deletions[0].Sensitivities[0] != "health" {
		t.Fatalf("held list: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v1/deletions?state=gone", ScopeWipe, ""); r.status != 422 {
		t.Fatalf("bad state: %d", r.status)
	}
	if r := e.do("POST", "/v1/deletions/lc-0/approve", ScopeExportEvidence, ""); r.status != 403 {
		t.Fatalf("approve without the wipe scope: %d", r.status)
	}
	if r := e.do("POST", "/v1/deletions/lc-0/approve", ScopeWipe, ""); r.status != 200 || r.json(t)["deletion"].(map[string]any)["status"] != "queued" {
		t.Fatalf("approve: %d %s", r.status, r.body)
	}
	if a := e.lastAudit(); a.Action != "deletion.approve" || a.Actor != "tok-wipe" || a.Object != "wipes/lc-0" || !strings.HasPrefix(a.Subject, "h:") {
		t.Fatalf("audit = %+v", a)
	}
	if r := e.do("POST", "/v1/deletions/lc-0/approve", ScopeWipe, ""); r.status != 409 {
		t.Fatalf("approve twice: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/v1/deletions/lc-404/reject", ScopeWipe, ""); r.status != 404 {
		t.Fatalf("reject unknown: %d %s", r.status, r.body)
	}
	// Bulk: two more would pass the guard of 2 per minute (1 used).
	r = e.do("POST", "/v1/deletions:approve", ScopeWipe, `{"ids":["lc-1","lc-2"]}`)
	if r.status != 429 || r.json(t)["error"] != "mass_deletion_guard" {
		t.Fatalf("bulk beyond the guard: %d %s", r.status, r.body)
	}
	if hs, _ := e.store.HeldWipes(ctx, 0); len(hs) != 3 {
		t.Fatalf("a refused bulk approval decided something: %d held", len(hs))
	}
	if r := e.do("POST", "/v1/deletions:approve", ScopeWipe, `{"ids":["lc-1","lc-2"],"confirm":true}`); r.status != 200 || r.json(t)["decided"] != float64(2) {
		t.Fatalf("confirmed bulk: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/v1/deletions:reject", ScopeWipe, `{"all":true}`); r.status != 200 || r.json(t)["decided"] != float64(1) {
		t.Fatalf("reject all: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/v1/deletions:reject", ScopeWipe, `{}`); r.status != 422 {
		t.Fatalf("bulk without ids: %d", r.status)
	}
	r = e.do("GET", "/v1/deletions?state=rejected", ScopeWipe, "")
	if json.Unmarshal(r.body, &list) != nil || list.Count != 1 || list.Deletions[0].DecidedBy != "tok-wipe" {
		t.Fatalf("rejected list: %s", r.body)
	}
}

func TestDueReportListsTransitionsWithBitsAndExecutability(t *testing.T) {
	e := newEnv(t)
	putSubjects(t, e, 1, e.now.Add(-170*24*time.Hour)) // contact archived at 180 d: in 10 days
	r := e.do("GET", "/v1/reports/due?within=14d", ScopeExportEvidence, "")
	if r.status != 200 {
		t.Fatalf("due: %d %s", r.status, r.body)
	}
	var rep struct {
		Subjects []forget.DueSubject `json:"subjects"`
	}
	if err := json.Unmarshal(r.body, &rep); err != nil {
		t.Fatal(err)
	}
	var got *forget.DueSubject
	for i := range rep.Subjects {
		if rep.Subjects[i].Subject.ID == "s-0" {
			got = &rep.Subjects[i]
		}
	}
	if got == nil {
		t.Fatalf("s-0 not in the report: %s", r.body)
	}
	var archived, pending bool
	for _, tr := range got.Transitions {
		if tr.Sensitivity == "contact" && tr.To == "archived" && tr.At.Equal(e.now.Add(10*24*time.Hour)) {
			archived = true
		}
		// Health was obliviated at its origin; no erasure step exists in
		// this configuration: pending and not executable.
		if tr.Sensitivity == "health" && tr.Pending && tr.Executable != nil && !*tr.Executable {
			pending = true
		}
	}
	if !archived || !pending {
		t.Fatalf("transitions = %+v", got.Transitions)
	}
	if r := e.do("GET", "/v1/reports/due?within=2y", ScopeExportEvidence, ""); r.status != 422 {
		t.Fatalf("bad window: %d", r.status)
	}
	if r := e.do("GET", "/v1/reports/due", ScopeWipe, ""); r.status != 403 {
		t.Fatalf("report without export_evidence: %d", r.status)
	}
	r = e.do("GET", "/v1/lifecycle", ScopeEditItems, "")
	if m := r.json(t); r.status != 200 || m["deletions"] != "hold" || m["indexed_subjects"] != float64(2) {
		t.Fatalf("lifecycle: %d %s", r.status, r.body)
	}
}

func TestWipeDryRunListsTheCascade(t *testing.T) {
	e := newEnv(t)
	phone := model.SubjectRef{Entity: "phone_number", ID: "+420"}
	parent := model.SubjectRef{Entity: "contact", ID: "c-1"}
	if err := e.store.PutSubject(context.Background(), model.Subject{Ref: phone, Origin: e.now, Parent: &parent}, audit.Entry{Actor: "t"}); err != nil {
		t.Fatal(err)
	}
	r := e.do("POST", "/v1/wipes?dry_run=true", ScopeWipe, `{"entity":"contact","id":"c-1"}`)
	m := r.json(t)
	cascade, _ := m["cascade"].([]any)
	if r.status != 200 || len(cascade) != 1 || cascade[0].(map[string]any)["subject"].(map[string]any)["entity"] != "phone_number" {
		t.Fatalf("dry run: %d %s", r.status, r.body)
	}
	if ws, _ := e.store.ListWipes(context.Background(), 0); len(ws) != 0 {
		t.Fatal("a dry run queued something")
	}
}

// An evidence import may carry the subject's origin (when the system that
// created the data says so): it becomes the subject's origin unless an
// operator set one; a future one is refused. Dating a subject's data back
// can make it due for deletion at once, so it is history, like a
// back-dated created_at: it needs the import_history scope and is audited
// as evidence.import_history with the instant.
func TestEvidenceImportCarriesTheSubjectsOrigin(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Tokens = append(o.Tokens, Token{Name: "historian", SHA256: HashToken("historian"), Scopes: []string{ScopeEditEvidence, ScopeImportHistory}})
	})
	body := `{"subject":{"entity":"contact","id":"c-77"},"legalisation_id":"contract-care","origin":"2026-05-01T00:00:00Z","subject_origin":"2026-03-01T00:00:00Z"}`
	// An edit_evidence token alone may not date a subject back: refused,
	// nothing stored.
	before := e.snapshot()
	if r := e.do("POST", "/v1/evidence:import", ScopeEditEvidence, body, "Content-Type: application/x-ndjson"); !strings.Contains(string(r.body), "import_history") {
		t.Fatalf("import with subject_origin without import_history: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/v1/evidence", ScopeEditEvidence, body); r.status != 422 || !strings.Contains(string(r.body), "subject_origin") {
		t.Fatalf("create with subject_origin without import_history: %d %s", r.status, r.body)
	}
	if e.snapshot() != before {
		t.Fatal("a refused subject_origin changed the store")
	}
	if rec, err := e.store.Subject(context.Background(), model.SubjectRef{Entity: "contact", ID: "c-77"}); err == nil && !rec.Subject.Origin.IsZero() {
		t.Fatalf("a refused subject_origin dated the subject: %+v", rec.Subject)
	}
	if r := e.do("POST", "/v1/evidence:import", "historian", body, "Content-Type: application/x-ndjson"); r.status != 200 {
		t.Fatalf("import: %d %s", r.status, r.body)
	}
	rec, _ := e.store.Subject(context.Background(), model.SubjectRef{Entity: "contact", ID: "c-77"})
	if !rec.Subject.Origin.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) || rec.Evidence[0].SubjectOrigin != nil {
		t.Fatalf("subject after import = %+v", rec)
	}
	if a := e.lastAudit(); a.Action != "evidence.import_history" || a.Detail["historical"] != "1" {
		t.Fatalf("import audit = %+v", a)
	}
	one := `{"subject":{"entity":"contact","id":"c-79"},"legalisation_id":"contract-care","origin":"2026-05-01T00:00:00Z","subject_origin":"2026-02-01T00:00:00Z"}`
	if r := e.do("POST", "/v1/evidence", "historian", one); r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if a := e.lastAudit(); a.Action != "evidence.import_history" || a.Detail["subject_origin"] != "2026-02-01T00:00:00Z" {
		t.Fatalf("create audit = %+v", a)
	}
	future := `{"subject":{"entity":"contact","id":"c-78"},"legalisation_id":"contract-care","origin":"2026-05-01T00:00:00Z","subject_origin":"2027-01-01T00:00:00Z"}`
	if r := e.do("POST", "/v1/evidence", "historian", future); r.status != 422 || !strings.Contains(string(r.body), "subject_origin") {
		t.Fatalf("future subject_origin: %d %s", r.status, r.body)
	}
}

// An approval can be previewed: ?dry_run=true answers the deletions it
// would queue with the backend calls each makes and what the guard would
// count, and decides nothing. An approval of a lifecycle deletion whose
// data is no longer obliviated is refused (409 not_due) and it stays held.
func TestApprovalPreviewDecidesNothingAndStaleDeletionsAreRefused(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.WipesPerMinute = 1 })
	ctx := context.Background()
	for i := range 2 {
		if err := e.store.EnqueueWipe(ctx, heldRecord(fmt.Sprintf("lc-%d", i), fmt.Sprintf("c-%d", i+2), e.now.Add(time.Duration(i)*time.Second)), audit.Entry{Actor: "lifecycle"}); err != nil {
			t.Fatal(err)
		}
	}
	// c-1's contact data is covered by contract-care: an erasure of it is
	// not due.
	stale := heldRecord("lc-stale", "c-1", e.now.Add(time.Minute))
	stale.Bits = 0b10
	if err := e.store.EnqueueWipe(ctx, stale, audit.Entry{Actor: "lifecycle"}); err != nil {
		t.Fatal(err)
	}
	before := e.snapshot()
	for _, c := range []struct{ path, body string }{
		{"/v1/deletions/lc-0/approve?dry_run=true", ""},
		{"/v1/deletions:approve?dry_run=true", `{"all":true}`},
		{"/v1/deletions:reject?dry_run=true", `{"ids":["lc-1"]}`},
	} {
		r := e.do("POST", c.path, ScopeWipe, c.body)
		var p decisionPreview
		if r.status != 200 || json.Unmarshal(r.body, &p) != nil || !p.DryRun || len(p.Deletions) == 0 || len(p.Deletions[0].Steps) != 1 || p.Guard.PerMinute != 1 {
			t.Fatalf("%s: %d %s", c.path, r.status, r.body)
		}
		if c.path == "/v1/deletions:approve?dry_run=true" {
			// Two due (the guard would count 2), the stale one refused.
			if p.Guard.Asked != 2 || len(p.Decisions) != 3 || p.Decisions[2].Status != forget.StatusNotDue || len(p.Deletions) != 2 {
				t.Fatalf("bulk preview = %s", r.body)
			}
		}
	}
	if e.snapshot() != before {
		t.Fatal("a dry run changed the store or the audit trail")
	}
	if h, _ := e.store.HeldWipes(ctx, 0); len(h) != 3 {
		t.Fatalf("%d held after dry runs, want 3", len(h))
	}
	// The guard (1 a minute) counted nothing: one approval passes.
	if r := e.do("POST", "/v1/deletions/lc-0/approve", ScopeWipe, `{"confirm":false}`); r.status != 200 {
		t.Fatalf("approve after dry runs: %d %s", r.status, r.body)
	}
	r := e.do("POST", "/v1/deletions/lc-stale/approve", ScopeWipe, `{"confirm":true}`)
	if r.status != 409 || r.json(t)["error"] != forget.StatusNotDue || !strings.Contains(string(r.body), "contact") {
		t.Fatalf("approve a stale deletion: %d %s", r.status, r.body)
	}
	if w, _ := e.store.Wipe(ctx, "lc-stale"); w.Status != cache.WipeHeld {
		t.Fatalf("stale deletion is %s, want held", w.Status)
	}
	if r := e.do("POST", "/v1/deletions/lc-stale/reject", ScopeWipe, ""); r.status != 200 {
		t.Fatalf("reject a stale deletion: %d %s", r.status, r.body)
	}
}

// Setting a subject's origin is dated history too: an origin dated back
// can make its data due for deletion at once. PUT /v1/subjects previews
// that with ?dry_run=true (changing nothing), refuses a future origin and
// audits the origin and the deletions the change causes.
func TestSubjectOriginChangeIsPreviewedAndAudited(t *testing.T) {
	e := newEnv(t)
	ref := model.SubjectRef{Entity: "contact", ID: "s-9"}
	old := e.now.Add(-2000 * 24 * time.Hour).Format(time.RFC3339)
	before := e.snapshot()
	r := e.do("PUT", "/v1/subjects/contact/s-9?dry_run=true", ScopeEditEvidence, `{"origin":"`+old+`"}`)
	var ans struct {
		DryRun  bool                 `json:"dry_run"`
		Preview forget.ChangePreview `json:"preview"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &ans) != nil || !ans.DryRun || ans.Preview.Bits["contact"]["active→obliviated"] != 1 ||
		ans.Preview.Deletions.Total+ans.Preview.Deletions.NotExecutable != 1 {
		t.Fatalf("dry run: %d %s", r.status, r.body)
	}
	if e.snapshot() != before {
		t.Fatal("a dry run changed the store or the audit trail")
	}
	if rec, err := e.store.Subject(context.Background(), ref); err == nil && !rec.Subject.Origin.IsZero() {
		t.Fatalf("a dry run dated the subject: %+v", rec.Subject)
	}
	future := e.now.Add(24 * time.Hour).Format(time.RFC3339)
	if r := e.do("PUT", "/v1/subjects/contact/s-9", ScopeEditEvidence, `{"origin":"`+future+`"}`); r.status != 422 || !strings.Contains(string(r.body), "future") {
		t.Fatalf("future origin: %d %s", r.status, r.body)
	}
	if r := e.do("PUT", "/v1/subjects/contact/s-9", ScopeEditEvidence, `{"origin":"`+old+`"}`); r.status != 200 {
		t.Fatalf("put: %d %s", r.status, r.body)
	}
	if a := e.lastAudit(); a.Action != "subject.put" || a.Detail["origin"] != old || a.Detail["deletions"]+a.Detail["not_executable"] == "" {
		t.Fatalf("audit = %+v", a)
	}
}

// Revoking evidence can make the data it covered — the subject's and its
// children's, which inherit it — due for deletion at once: ?dry_run=true
// previews that and changes nothing; the revocation's audit entry counts
// the deletions it causes.
func TestEvidenceRevocationIsPreviewedWithItsChildren(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ref := model.SubjectRef{Entity: "contact", ID: "s-1"}
	phone := model.SubjectRef{Entity: "phone_number", ID: "+420999"}
	old := e.now.Add(-2000 * 24 * time.Hour)
	for _, s := range []model.Subject{{Ref: ref, Origin: old}, {Ref: phone, Origin: old, Parent: &ref}} {
		if err := e.store.PutSubject(ctx, s, audit.Entry{Actor: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := e.store.PutEvidence(ctx, []model.Evidence{{Subject: ref, LegalisationID: "contract-care", Origin: e.now.Add(-10 * 24 * time.Hour), CreatedBy: "t"}}, audit.Entry{Actor: "t", Time: e.now})
	if err != nil {
		t.Fatal(err)
	}
	path := "/v1/evidence/contact/s-1/" + evs[0].ID
	r := e.do("DELETE", path+"?dry_run=true", ScopeEditEvidence, "")
	var ans struct {
		DryRun  bool                 `json:"dry_run"`
		Preview forget.ChangePreview `json:"preview"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &ans) != nil || !ans.DryRun || ans.Preview.Subjects != 2 || ans.Preview.Changed != 2 || ans.Preview.Deletions.Total < 1 {
		t.Fatalf("dry run: %d %s", r.status, r.body)
	}
	if rec, _ := e.store.Subject(ctx, ref); len(rec.Evidence) != 1 {
		t.Fatal("a dry run revoked the evidence")
	}
	if r := e.do("DELETE", "/v1/evidence/contact/s-1/nope?dry_run=true", ScopeEditEvidence, ""); r.status != 404 {
		t.Fatalf("dry run of an unknown record: %d %s", r.status, r.body)
	}
	if r := e.do("DELETE", path, ScopeEditEvidence, ""); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if a := e.lastAudit(); a.Action != "evidence.revoke" || a.Detail["deletions"] == "" || a.Detail["deletions"] == "0" {
		t.Fatalf("audit = %+v", a)
	}
}
