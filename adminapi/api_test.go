package adminapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/gdprgate/gdprgate/internal/testid"
	"github.com/gdprgate/gdprgate/policy/model"
)

func TestRegisterCRUDMovesVersionAndAudits(t *testing.T) {
	e := newEnv(t)
	adm := ScopeEditItems

	r := e.do("GET", "/v1/purposes", adm, "")
	if r.status != 200 || r.header.Get("ETag") != `"1"` {
		t.Fatalf("list: %d %q %s", r.status, r.header.Get("ETag"), r.body)
	}
	if n := len(r.json(t)["items"].([]any)); n != 3 {
		t.Fatalf("list has %d purposes, want 3", n)
	}

	r = e.do("POST", "/v1/purposes", adm, `{"id":"research","name":"Research","expiration_period":100}`)
	if r.status != 201 || r.header.Get("ETag") != `"2"` || r.header.Get("Location") != "/v1/purposes/research" {
		t.Fatalf("create: %d %v %s", r.status, r.header, r.body)
	}
	if a := e.lastAudit(); a.Action != "register.create" || a.Object != "purposes/research" || a.Actor != "tok-edit_items" || a.Before != 1 || a.After != 2 {
		t.Fatalf("audit after create: %+v", a)
	}

	r = e.do("PATCH", "/v1/purposes/research", adm, `{"name":"Research 2"}`, `If-Match: "2"`, "Content-Type: application/merge-patch+json")
	if r.status != 200 || r.header.Get("ETag") != `"3"` {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	if a := e.lastAudit(); a.Action != "register.patch" || a.Object != "purposes/research" {
		t.Fatalf("audit after patch: %+v", a)
	}
	r = e.do("GET", "/v1/purposes/research", adm, "")
	if r.status != 200 || r.json(t)["name"] != "Research 2" {
		t.Fatalf("get: %d %s", r.status, r.body)
	}

	r = e.do("DELETE", "/v1/purposes/research", adm, "")
	if r.status != 200 || r.header.Get("ETag") != `"4"` {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r = e.do("GET", "/v1/purposes/research", adm, ""); r.status != 404 {
		t.Fatalf("get after delete: %d", r.status)
	}
	if a := e.lastAudit(); a.Action != "register.delete" {
		t.Fatalf("audit after delete: %+v", a)
	}

	// Roles are keyed by name.
	if r = e.do("POST", "/v1/roles", adm, `{"name":"auditor","sensitivity_mask":15,"view_expired":true,"export_evidence":true}`); r.status != 201 {
		t.Fatalf("create role: %d %s", r.status, r.body)
	}
	if r = e.do("GET", "/v1/roles/auditor", adm, ""); r.status != 200 {
		t.Fatalf("get role: %d %s", r.status, r.body)
	}
}

func TestLegalisationShowsDerivedStatusAndAcceptsItBack(t *testing.T) {
	e := newEnv(t)
	for id, want := range map[string]string{"contract-care": "active", "old-legit-interest": "retired", "future-program": "prepared"} {
		r := e.do("GET", "/v1/legalisations/"+id, ScopeAdmin, "")
		if got := r.json(t)["status"]; got != want {
			t.Errorf("%s: status %v, want %s", id, got, want)
		}
	}
	// What was read can be written back: the derived status is ignored.
	r := e.do("GET", "/v1/legalisations/contract-care", ScopeAdmin, "")
	body := strings.Replace(string(r.body), `"Contract care"`, `"Contract care v2"`, 1)
	if r = e.do("PUT", "/v1/legalisations/contract-care", ScopeAdmin, body); r.status != 200 {
		t.Fatalf("round trip: %d %s", r.status, r.body)
	}
}

func TestRefusedRequestsChangeNothing(t *testing.T) {
	big := `{"id":"x","name":"` + strings.Repeat("a", 2<<20) + `"}`
	tests := []struct {
		name       string
		method     string
		path       string
		token      string
		body       string
		headers    []string
		wantStatus int
		wantCode   string
		wantField  string
	}{
		{"malformed JSON", "POST", "/v1/purposes", ScopeEditItems, `{"id":"p",`, nil, 400, "malformed_json", ""},
		{"not JSON at all", "PUT", "/v1/config", ScopeEditItems, `gdpr_enforced=true`, nil, 400, "malformed_json", ""},
		{"empty body", "POST", "/v1/categories", ScopeEditItems, ``, nil, 400, "malformed_json", ""},
		{"trailing data", "POST", "/v1/purposes", ScopeEditItems, `{"id":"p","name":"P"} {}`, nil, 400, "malformed_json", ""},
		{"unknown field", "POST", "/v1/purposes", ScopeEditItems, `{"id":"p","name":"P","colour":"red"}`, nil, 400, "unknown_field", ""},
		{"wrong type", "POST", "/v1/sensitivities", ScopeEditItems, `{"id":"s","bit":"four","name":"S"}`, nil, 400, "malformed_json", ""},
		{"oversized body", "POST", "/v1/purposes", ScopeEditItems, big, nil, 413, "body_too_large", ""},
		{"legalisation naming a missing purpose", "POST", "/v1/legalisations", ScopeEditItems,
			`{"id":"l","name":"L","category_id":"consent","purpose_id":"nope","coverage":1}`, nil, 422, "validation_failed", "purpose_id"},
		{"invalid sensitivity bit", "POST", "/v1/sensitivities", ScopeEditItems, `{"id":"s","bit":40,"name":"S"}`, nil, 422, "validation_failed", "bit"},
		{"duplicate create", "POST", "/v1/categories", ScopeEditItems, `{"id":"consent","name":"C","article":"6.1.a"}`, nil, 409, "exists", ""},
		{"rename through PUT", "PUT", "/v1/categories/consent", ScopeEditItems, `{"id":"other","name":"C","article":"6.1.a"}`, nil, 422, "validation_failed", "id"},
		{"replace missing", "PUT", "/v1/categories/nope", ScopeEditItems, `{"name":"C","article":"6.1.a"}`, nil, 404, "not_found", ""},
		{"delete purpose in use", "DELETE", "/v1/purposes/marketing", ScopeEditItems, ``, nil, 409, "in_use", ""},
		{"delete category in use", "DELETE", "/v1/categories/contract", ScopeEditItems, ``, nil, 409, "in_use", ""},
		{"delete sensitivity in use", "DELETE", "/v1/sensitivities/health", ScopeEditItems, ``, nil, 409, "in_use", ""},
		{"delete legalisation in use", "DELETE", "/v1/legalisations/marketing-consent", ScopeEditItems, ``, nil, 409, "in_use", ""},
		{"stale ETag", "PUT", "/v1/config", ScopeEditItems, wholeConfig(`"suspend_wipes":true`), []string{`If-Match: "0"`}, 412, "precondition_failed", ""},
		{"stale ETag on a patch", "PATCH", "/v1/config", ScopeEditItems, `{"suspend_wipes":true}`, []string{`If-Match: "0"`}, 412, "precondition_failed", ""},
		{"bad config", "PUT", "/v1/config", ScopeEditItems, wholeConfig(`"identity_entity":"fax"`), nil, 422, "validation_failed", "identity_entity"},
		{"bad config and missing members at once", "PUT", "/v1/config", ScopeEditItems, `{"identity_entity":"fax"}`, nil, 422, "validation_failed", "gdpr_enforced"},
		{"no token", "POST", "/v1/purposes", "", `{"id":"p","name":"P"}`, nil, 401, "unauthenticated", ""},
		{"invalid token", "POST", "/v1/purposes", "guess", `{"id":"p","name":"P"}`, nil, 401, "invalid_token", ""},
		{"wrong scope", "POST", "/v1/purposes", ScopeEditEvidence, `{"id":"p","name":"P"}`, nil, 403, "forbidden", ""},
		{"registers replace needs admin", "PUT", "/v1/registers", ScopeEditItems, `{}`, nil, 403, "forbidden", ""},
		{"evidence missing obligatory key", "POST", "/v1/evidence", ScopeEditEvidence,
			`{"subject":{"entity":"contact","id":"c-1"},"legalisation_id":"marketing-consent","origin":"2026-05-01T00:00:00Z"}`, nil, 422, "validation_failed", "evidence_key"},
		{"evidence under a retired legalisation", "POST", "/v1/evidence", ScopeEditEvidence,
			`{"subject":{"entity":"contact","id":"c-1"},"legalisation_id":"old-legit-interest","origin":"2026-05-30T00:00:00Z"}`, nil, 422, "validation_failed", "legalisation_id"},
		{"evidence with unknown legal_key", "POST", "/v1/evidence", ScopeEditEvidence,
			`{"subject":{"entity":"contact","id":"c-1"},"legal_key":"ZZ","origin":"2026-05-01T00:00:00Z"}`, nil, 422, "validation_failed", "legal_key"},
		{"evidence unknown field", "POST", "/v1/evidence", ScopeEditEvidence,
			`{"subject":{"entity":"contact","id":"c-1"},"legalisation_id":"contract-care","origin":"2026-05-01T00:00:00Z","ssn":"1"}`, nil, 400, "unknown_field", ""},
		{"evidence read with edit scope only", "GET", "/v1/evidence?entity=contact&id=c-1", ScopeEditItems, ``, nil, 403, "forbidden", ""},
		{"revoke missing evidence", "DELETE", "/v1/evidence/contact/c-1/nope", ScopeEditEvidence, ``, nil, 404, "not_found", ""},
		{"wipe of an entity without plan", "POST", "/v1/wipes", ScopeWipe, `{"entity":"invoice","id":"i-1"}`, nil, 422, "validation_failed", "entity"},
		{"wipe without id", "POST", "/v1/wipes", ScopeWipe, `{"entity":"contact"}`, nil, 422, "validation_failed", "id"},
		{"subject without origin", "PUT", "/v1/subjects/contact/c-9", ScopeEditEvidence, `{}`, nil, 422, "validation_failed", "origin"},
		{"audit with wipe scope", "GET", "/v1/audit", ScopeWipe, ``, nil, 403, "forbidden", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			before := e.snapshot()
			r := e.do(tc.method, tc.path, tc.token, tc.body, tc.headers...)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
			m := r.json(t)
			if m["error"] != tc.wantCode || m["message"] == "" {
				t.Fatalf("error %v, want %s: %s", m["error"], tc.wantCode, r.body)
			}
			if tc.wantField != "" {
				var fields []string
				for _, fe := range m["errors"].([]any) {
					fields = append(fields, fe.(map[string]any)["field"].(string))
				}
				if !slices.Contains(fields, tc.wantField) {
					t.Fatalf("fields %v do not name %q", fields, tc.wantField)
				}
			}
			if tc.wantStatus == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("401 without WWW-Authenticate: Bearer")
			}
			if tc.wantStatus == 403 && !strings.Contains(m["message"].(string), "scope") {
				t.Fatalf("403 does not name the scope: %s", m["message"])
			}
			if after := e.snapshot(); after != before {
				t.Fatalf("refused request changed state:\nbefore %+v\nafter  %+v", before, after)
			}
		})
	}
}

func TestConcurrentWriteWithSameETagLosesWith412(t *testing.T) {
	e := newEnv(t)
	a := e.do("PUT", "/v1/config", ScopeEditItems, wholeConfig(`"suspend_wipe_issue":true`), `If-Match: "1"`)
	b := e.do("PUT", "/v1/config", ScopeEditItems, wholeConfig(`"suspend_wipes":true`), `If-Match: "1"`)
	if a.status != 200 || b.status != 412 {
		t.Fatalf("first %d, second %d (want 200, 412): %s", a.status, b.status, b.body)
	}
	if b.header.Get("ETag") != `"2"` {
		t.Fatalf("412 should carry the current ETag, got %q", b.header.Get("ETag"))
	}
}

func TestRegistersReplaceIsAtomicAndNamesFullPaths(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/v1/registers", ScopeAdmin, "")
	var regs model.Registers
	if err := json.Unmarshal(r.body, &regs); err != nil {
		t.Fatal(err)
	}
	regs.Legalisations[1].PurposeID = "gone"
	bad, _ := json.Marshal(regs)
	before := e.snapshot()
	r = e.do("PUT", "/v1/registers", ScopeAdmin, string(bad))
	if r.status != 422 || !strings.Contains(string(r.body), `"legalisations[1].purpose_id"`) {
		t.Fatalf("bad replace: %d %s", r.status, r.body)
	}
	if e.snapshot() != before {
		t.Fatal("refused replace changed state")
	}
	regs.Legalisations[1].PurposeID = "marketing"
	regs.Config.SuspendWipes = true
	good, _ := json.Marshal(regs)
	if r = e.do("PUT", "/v1/registers", ScopeAdmin, string(good), `If-Match: "1"`); r.status != 200 || r.header.Get("ETag") != `"2"` {
		t.Fatalf("replace: %d %s", r.status, r.body)
	}
	if r = e.do("GET", "/v1/config", ScopeEditItems, ""); r.json(t)["suspend_wipes"] != true {
		t.Fatalf("config after replace: %s", r.body)
	}
}

func TestEvidenceCreateListRevoke(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/v1/evidence", ScopeEditEvidence,
		`{"subject":{"entity":"contact","id":"c-1"},"legal_key":"MK","evidence_key":"web-123","origin":"2026-05-01T00:00:00Z"}`)
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	ev := r.json(t)
	if ev["legalisation_id"] != "marketing-consent" || ev["created_by"] != "tok-edit_evidence" || ev["id"] == "" {
		t.Fatalf("stored evidence: %s", r.body)
	}
	a := e.lastAudit()
	if a.Action != "evidence.create" || !strings.HasPrefix(a.Subject, "h:") || testid.MentionsID(fmt.Sprint(a), "c-1") {
		t.Fatalf("audit entry must name the subject by hash only: %+v", a)
	}
	r = e.do("GET", "/v1/evidence?entity=contact&id=c-1", ScopeExportEvidence, "")
	if n := len(r.json(t)["evidence"].([]any)); r.status != 200 || n != 2 {
		t.Fatalf("list: %d, %d records: %s", r.status, n, r.body)
	}
	if r = e.do("DELETE", "/v1/evidence/contact/c-1/"+ev["id"].(string), ScopeEditEvidence, ""); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if e.lastAudit().Action != "evidence.revoke" {
		t.Fatalf("revoke not audited: %+v", e.lastAudit())
	}
	r = e.do("GET", "/v1/evidence?entity=contact&id=c-1", ScopeExportEvidence, "")
	if n := len(r.json(t)["evidence"].([]any)); n != 1 {
		t.Fatalf("after revoke %d records", n)
	}
}

func importBody(n int, bad map[int]string) string {
	var b strings.Builder
	for i := range n {
		if s, ok := bad[i]; ok {
			b.WriteString(s + "\n")
			continue
		}
		fmt.Fprintf(&b, `{"subject":{"entity":"contact","id":"imp-%d"},"legal_key":"MK","evidence_key":"k-%d","origin":"2026-05-01T00:00:00Z"}`+"\n", i, i)
	}
	return b.String()
}

func TestImportStoresValidRecordsAndReportsEachFailure(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ImportBatch = 2 })
	body := importBody(5, map[int]string{
		1: `{"subject":{"entity":"contact","id":"x"},"legal_key":"MK","origin":"2026-05-01T00:00:00Z"}`,
		3: `{"subject":{"entity":"contact","id":"x"},"legal_key":"MK","evidence_key":"e","origin":"2026-05-01T00:00:00Z","extra":1}`,
	})
	r := e.do("POST", "/v1/evidence:import", ScopeEditEvidence, body, "Content-Type: application/x-ndjson")
	if r.status != http.StatusMultiStatus {
		t.Fatalf("import: %d %s", r.status, r.body)
	}
	var out struct {
		Summary importSummary  `json:"summary"`
		Results []importResult `json:"results"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	if out.Summary.Total != 5 || out.Summary.Stored != 3 || out.Summary.Failed != 2 || !out.Summary.Complete {
		t.Fatalf("summary %+v", out.Summary)
	}
	if out.Results[1].Status != "error" || out.Results[1].Errors[0].Field != "evidence_key" || out.Results[3].Errors[0].Field != "extra" {
		t.Fatalf("results %+v", out.Results)
	}
	rec, _ := e.store.Subject(context.Background(), model.SubjectRef{Entity: "contact", ID: "imp-4"})
	if len(rec.Evidence) != 1 {
		t.Fatalf("imp-4 has %d evidence", len(rec.Evidence))
	}

	// Re-import is idempotent by (legalisation, evidence_key).
	r = e.do("POST", "/v1/evidence:import?atomic=true", ScopeEditEvidence, "["+strings.ReplaceAll(strings.TrimSpace(importBody(1, nil)), "\n", ",")+"]")
	if r.status != 200 {
		t.Fatalf("re-import: %d %s", r.status, r.body)
	}
	rec, _ = e.store.Subject(context.Background(), model.SubjectRef{Entity: "contact", ID: "imp-0"})
	if len(rec.Evidence) != 1 {
		t.Fatalf("re-import duplicated evidence: %d records", len(rec.Evidence))
	}
}

func TestAtomicImportStoresNothingWhenOneRecordFails(t *testing.T) {
	e := newEnv(t)
	before := e.snapshot()
	body := importBody(10, map[int]string{7: `{"subject":{"entity":"contact","id":"c-1"},"legalisation_id":"nope","origin":"2026-05-01T00:00:00Z"}`})
	r := e.do("POST", "/v1/evidence:import?atomic=true", ScopeEditEvidence, body, "Content-Type: application/x-ndjson", "Accept: application/x-ndjson")
	if r.status != 422 {
		t.Fatalf("atomic import: %d %s", r.status, r.body)
	}
	lines := strings.Split(strings.TrimSpace(string(r.body)), "\n")
	if len(lines) != 11 || !strings.Contains(lines[7], `"legalisation_id"`) || !strings.Contains(lines[0], "not_stored") {
		t.Fatalf("ndjson results: %s", r.body)
	}
	if e.snapshot() != before {
		t.Fatal("atomic import stored something")
	}
	rec, _ := e.store.Subject(context.Background(), model.SubjectRef{Entity: "contact", ID: "imp-0"})
	if len(rec.Evidence) != 0 {
		t.Fatal("atomic import stored imp-0")
	}
}

func TestImportLimitsAndBrokenStreams(t *testing.T) {
	tests := []struct {
		name, ct, body, query string
		wantStatus            int
		wantStored            int
	}{
		{"more records than MaxImport", "application/x-ndjson", importBody(4, nil), "", 413, 3},
		{"more records than MaxImport, atomic", "application/x-ndjson", importBody(4, nil), "?atomic=true", 413, 0},
		{"syntax error mid-stream", "application/x-ndjson", importBody(2, nil) + "{oops\n", "", 400, 2},
		{"array not closed", "application/json", `[` + strings.TrimSpace(importBody(1, nil)), "", 400, 1},
		{"not an array", "application/json", `{"a":1}`, "", 400, 0},
		{"unsupported type", "text/csv", "a,b", "", 415, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.MaxImport = 3 })
			r := e.do("POST", "/v1/evidence:import"+tc.query, ScopeEditEvidence, tc.body, "Content-Type: "+tc.ct)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
			stored := 0
			for i := range 4 {
				rec, _ := e.store.Subject(context.Background(), model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("imp-%d", i)})
				stored += len(rec.Evidence)
			}
			if stored != tc.wantStored {
				t.Fatalf("stored %d, want %d", stored, tc.wantStored)
			}
		})
	}
}

func TestSubjectStateAndPut(t *testing.T) {
	e := newEnv(t)
	r := e.do("PUT", "/v1/subjects/phone_number/+420111", ScopeEditEvidence, `{"origin":"2026-05-01T00:00:00Z","parent":{"entity":"contact","id":"c-1"}}`)
	if r.status != 200 {
		t.Fatalf("put subject: %d %s", r.status, r.body)
	}
	if a := e.lastAudit(); a.Action != "subject.put" || strings.Contains(fmt.Sprint(a), "+420111") || testid.MentionsID(fmt.Sprint(a), "c-1") {
		t.Fatalf("audit leaks the subject: %+v", a)
	}
	r = e.do("GET", "/v1/subjects/contact/c-1", ScopeExportEvidence, "")
	if r.status != 200 {
		t.Fatalf("subject: %d %s", r.status, r.body)
	}
	m := r.json(t)
	bits := m["bits"].([]any)
	if len(bits) != 4 || m["known"] != true || m["restricted"] != false || len(m["evidence"].([]any)) != 1 {
		t.Fatalf("subject state: %s", r.body)
	}
	b0 := bits[0].(map[string]any)
	if b0["bit"] != 0.0 || b0["sensitivity"] != "auxiliary" || b0["state"] == "" {
		t.Fatalf("bit 0: %v", b0)
	}
	if _, ok := m["next_transition"]; !ok {
		t.Fatal("next_transition missing")
	}
	if c := m["coverage"]; c != "red" && c != "blue" && c != "green" {
		t.Fatalf("coverage %v", c)
	}
	// Looking at an unknown subject does not create it.
	r = e.do("GET", "/v1/subjects/contact/nobody", ScopeExportEvidence, "")
	if r.status != 200 || r.json(t)["known"] != false {
		t.Fatalf("unknown subject: %d %s", r.status, r.body)
	}
	if rec, _ := e.store.Subject(context.Background(), model.SubjectRef{Entity: "contact", ID: "nobody"}); rec.Known {
		t.Fatal("GET created the subject")
	}
}

func TestWipeRequestRestrictsAtOnceAndCanBeCancelled(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c7 := model.SubjectRef{Entity: "contact", ID: "c-7"}

	r := e.do("POST", "/v1/wipes?dry_run=true", ScopeWipe, `{"entity":"contact","id":"c 7/x"}`)
	if r.status != 200 || !strings.Contains(string(r.body), `/api/issues?contact_id=c+7%2Fx`) || !strings.Contains(string(r.body), `/api/contacts/c%207%2Fx/calls`) {
		t.Fatalf("dry run: %d %s", r.status, r.body)
	}
	if ws, _ := e.store.ListWipes(ctx, 10); len(ws) != 0 {
		t.Fatal("dry run queued a wipe")
	}

	r = e.do("POST", "/v1/wipes", ScopeWipe, `{"entity":"contact","id":"c-7","scope":"all"}`)
	if r.status != 202 {
		t.Fatalf("wipe: %d %s", r.status, r.body)
	}
	id := r.json(t)["id"].(string)
	if r.header.Get("Location") != "/v1/wipes/"+id {
		t.Fatalf("Location %q", r.header.Get("Location"))
	}
	f, err := e.store.Facts(ctx, c7, e.now)
	if err != nil || !f.Restricted {
		t.Fatalf("subject not restricted at once: %+v %v", f, err)
	}
	if a := e.lastAudit(); a.Action != "wipe.request" || a.Subject != e.srv.o.Hasher.Subject(c7) {
		t.Fatalf("wipe audit: %+v", a)
	}
	// Asking again answers the same wipe.
	r = e.do("POST", "/v1/wipes", ScopeWipe, `{"entity":"contact","id":"c-7"}`)
	if r.status != 200 || r.json(t)["id"] != id {
		t.Fatalf("repeat: %d %s", r.status, r.body)
	}

	r = e.do("GET", "/v1/wipes/"+id, ScopeWipe, "")
	if r.status != 200 || len(r.json(t)["steps"].([]any)) != 3 {
		t.Fatalf("get wipe: %d %s", r.status, r.body)
	}
	r = e.do("GET", "/v1/wipes", ScopeWipe, "")
	if r.status != 200 || len(r.json(t)["wipes"].([]any)) != 1 {
		t.Fatalf("list: %d %s", r.status, r.body)
	}

	r = e.do("DELETE", "/v1/wipes/"+id, ScopeWipe, "")
	if r.status != 200 || r.json(t)["status"] != "cancelled" {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	if f, _ = e.store.Facts(ctx, c7, e.now); f.Restricted {
		t.Fatal("cancel did not lift the restriction")
	}
	if all := e.auditTail(2); all[0].Action != "wipe.cancel" || all[1].Action != "subject.unrestrict" {
		t.Fatalf("cancel not audited: %+v", all)
	}
	if r = e.do("DELETE", "/v1/wipes/"+id, ScopeWipe, ""); r.status != 409 {
		t.Fatalf("second cancel: %d %s", r.status, r.body)
	}
	if r = e.do("GET", "/v1/wipes/w-missing", ScopeWipe, ""); r.status != 404 {
		t.Fatalf("missing wipe: %d", r.status)
	}
}

func TestMassDeletionGuardNeedsConfirm(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.WipesPerMinute = 2 })
	for i := range 2 {
		if r := e.do("POST", "/v1/wipes", ScopeWipe, fmt.Sprintf(`{"entity":"contact","id":"g-%d"}`, i)); r.status != 202 {
			t.Fatalf("wipe %d: %d %s", i, r.status, r.body)
		}
	}
	before := e.snapshot()
	r := e.do("POST", "/v1/wipes", ScopeWipe, `{"entity":"contact","id":"g-2"}`)
	if r.status != 429 || r.json(t)["error"] != "mass_deletion_guard" || r.header.Get("Retry-After") == "" {
		t.Fatalf("third wipe: %d %s", r.status, r.body)
	}
	if e.snapshot() != before {
		t.Fatal("refused wipe was audited")
	}
	if r = e.do("POST", "/v1/wipes", ScopeWipe, `{"entity":"contact","id":"g-2","confirm":true}`); r.status != 202 {
		t.Fatalf("confirmed wipe: %d %s", r.status, r.body)
	}
}

func TestAuditPagingAndNDJSONExport(t *testing.T) {
	e := newEnv(t)
	for i := range 3 {
		e.do("POST", "/v1/categories", ScopeEditItems, fmt.Sprintf(`{"id":"c%d","name":"C","article":"6.1.a"}`, i))
	}
	all, _, _ := e.store.Audit(context.Background(), "", 1000)
	var got []string
	after := ""
	for range 10 {
		r := e.do("GET", "/v1/audit?limit=2&after="+after, ScopeAuditRead, "")
		if r.status != 200 {
			t.Fatalf("audit: %d %s", r.status, r.body)
		}
		var page struct {
			Entries []struct{ ID string } `json:"entries"`
			Next    string                `json:"next"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Entries) == 0 {
			break
		}
		for _, en := range page.Entries {
			got = append(got, en.ID)
		}
		after = page.Next
	}
	if len(got) != len(all) {
		t.Fatalf("paged %d entries, store has %d", len(got), len(all))
	}
	r := e.do("GET", "/v1/audit?format=ndjson", ScopeAuditRead, "")
	if r.status != 200 || r.header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("export: %d %v", r.status, r.header)
	}
	if n := len(strings.Split(strings.TrimSpace(string(r.body)), "\n")); n != len(all) {
		t.Fatalf("exported %d lines, want %d", n, len(all))
	}
}

func TestOpenEndpoints(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Ready = func(context.Context) []ReadyCheck { return []ReadyCheck{{Name: "policy", Reason: "policy not loaded"}} }
	})
	if r := e.do("GET", "/healthz", "", ""); r.status != 200 {
		t.Fatalf("healthz %d", r.status)
	}
	if r := e.do("GET", "/readyz", "", ""); r.status != 503 || !strings.Contains(string(r.body), "policy not loaded") {
		t.Fatalf("readyz %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/metrics", "", ""); r.status != 200 {
		t.Fatalf("metrics %d", r.status)
	}
	if r := e.do("GET", "/v1/nope", ScopeAdmin, ""); r.status != 404 || r.json(t)["error"] != "not_found" {
		t.Fatalf("unknown route %d %s", r.status, r.body)
	}
}

// TestOpenAPIDocumentsExactlyTheRoutes walks the served document: every
// path+method is a real route (the mux routes it to a registered pattern,
// and over the wire it is not a 404/405 of the router), and every route the
// server registers is documented.
func TestOpenAPIDocumentsExactlyTheRoutes(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/v1/openapi.json", "", "")
	if r.status != 200 {
		t.Fatalf("openapi: %d", r.status)
	}
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			m := strings.ToUpper(method)
			documented[m+" "+path] = true
			concrete := strings.NewReplacer("{entity}", "contact", "{id}", "x", "{evidence_id}", "e", "{name}", "agent").Replace(path)
			req := httptest.NewRequest(m, concrete, nil)
			_, pattern := e.srv.mux.Handler(req)
			if pattern != m+" "+path {
				t.Errorf("%s %s is routed to pattern %q", m, path, pattern)
			}
			// Over the wire, with no token: a real route answers 401 (or 200
			// when open), never the router's 404/405.
			res := e.do(m, concrete, "", "")
			if res.status == 404 || res.status == 405 {
				t.Errorf("%s %s: %d %s", m, concrete, res.status, res.body)
			}
		}
	}
	for _, rt := range e.srv.routes {
		if !documented[rt.method+" "+rt.path] {
			t.Errorf("route %s %s is not documented", rt.method, rt.path)
		}
	}
	if len(documented) != len(e.srv.routes) {
		t.Errorf("documented %d operations, server has %d routes", len(documented), len(e.srv.routes))
	}
}
