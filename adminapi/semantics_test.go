package adminapi

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/policy/model"
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

// The manual's legalisation RetireFrom: "Period to which the legalization
// may be used to create GdprEvidence evidence". Whether evidence may be
// created is judged at the instant it is created — the server's — so a
// client cannot back-date a record under a retired legalisation. Importing
// historical records with their real creation time is its own, audited
// permission (import_history), and still judged at that time.
func TestEvidenceCreatedAtIsTheServersInstant(t *testing.T) {
	const retired = `{"subject":{"entity":"contact","id":"c-1"},"legalisation_id":"old-legit-interest","origin":"2026-01-01T00:00:00Z","created_at":"2026-02-01T00:00:00Z"}`
	// Both scopes at once: import_history alone may not write evidence.
	historyToken := func(o *Options) {
		o.Tokens = append(o.Tokens, Token{Name: "historian", SHA256: HashToken("historian"), Scopes: []string{ScopeEditEvidence, ScopeImportHistory}})
	}
	t.Run("a back-dated created_at under a retired legalisation is refused", func(t *testing.T) {
		e := newEnv(t)
		before := e.snapshot()
		r := e.do("POST", "/v1/evidence", ScopeEditEvidence, retired)
		if r.status != 422 || !strings.Contains(string(r.body), `"created_at"`) || !strings.Contains(string(r.body), "import_history") {
			t.Fatalf("back-dated create: %d %s", r.status, r.body)
		}
		if e.snapshot() != before {
			t.Fatal("refused create changed state")
		}
	})
	t.Run("the server sets created_at and created_by", func(t *testing.T) {
		e := newEnv(t)
		r := e.do("POST", "/v1/evidence", ScopeEditEvidence, `{"subject":{"entity":"contact","id":"c-1"},"legalisation_id":"contract-care","origin":"2026-05-01T00:00:00Z"}`)
		if r.status != 201 {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
		ev := r.json(t)
		if ev["created_at"] != e.now.Format(time.RFC3339) || ev["created_by"] != "tok-edit_evidence" {
			t.Fatalf("created_at %v created_by %v, want the server's now and the token", ev["created_at"], ev["created_by"])
		}
		for field, body := range map[string]string{
			"renewed_at": `{"subject":{"entity":"contact","id":"c-1"},"legalisation_id":"contract-care","origin":"2026-05-01T00:00:00Z","renewed_at":"2026-05-30T00:00:00Z"}`,
			"created_by": `{"subject":{"entity":"contact","id":"c-1"},"legalisation_id":"contract-care","origin":"2026-05-01T00:00:00Z","created_by":"someone-else"}`,
		} {
			if r := e.do("POST", "/v1/evidence", ScopeEditEvidence, body); r.status != 422 || !strings.Contains(string(r.body), `"`+field+`"`) {
				t.Errorf("client %s: %d %s", field, r.status, r.body)
			}
		}
	})
	t.Run("import_history may carry the real created_at, judged then and audited", func(t *testing.T) {
		e := newEnv(t, historyToken)
		r := e.do("POST", "/v1/evidence", "historian", retired)
		if r.status != 201 {
			t.Fatalf("historical create while the legalisation was active: %d %s", r.status, r.body)
		}
		if a := e.lastAudit(); a.Action != "evidence.import_history" || a.Detail["created_at"] != "2026-02-01T00:00:00Z" {
			t.Fatalf("historical create audit: %+v", a)
		}
		afterRetirement := strings.Replace(retired, "2026-02-01", "2026-05-30", 1)
		if r := e.do("POST", "/v1/evidence", "historian", afterRetirement); r.status != 422 || !strings.Contains(string(r.body), `"legalisation_id"`) {
			t.Fatalf("historical create after retirement: %d %s", r.status, r.body)
		}
		future := strings.Replace(retired, "2026-02-01", "2027-02-01", 1)
		if r := e.do("POST", "/v1/evidence", "historian", future); r.status != 422 || !strings.Contains(string(r.body), "future") {
			t.Fatalf("created_at in the future: %d %s", r.status, r.body)
		}
	})
	t.Run("imports: created_at needs import_history, per record", func(t *testing.T) {
		var clock atomic.Int64 // read by the server's goroutines
		clock.Store(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano())
		e := newEnv(t, historyToken, func(o *Options) { o.Clock = func() time.Time { return time.Unix(0, clock.Load()).UTC() } })
		body := retired + "\n" + `{"subject":{"entity":"contact","id":"c-1"},"legalisation_id":"contract-care","origin":"2026-05-01T00:00:00Z"}` + "\n"
		r := e.do("POST", "/v1/evidence:import", ScopeEditEvidence, body, "Content-Type: application/x-ndjson")
		if r.status != 207 || !strings.Contains(string(r.body), "import_history") {
			t.Fatalf("import without import_history: %d %s", r.status, r.body)
		}
		if a := e.lastAudit(); a.Action != "evidence.import" {
			t.Fatalf("plain import audited as %q", a.Action)
		}
		r = e.do("POST", "/v1/evidence:import", "historian", body, "Content-Type: application/x-ndjson")
		if r.status != 200 {
			t.Fatalf("import with import_history: %d %s", r.status, r.body)
		}
		if a := e.lastAudit(); a.Action != "evidence.import_history" || a.Detail["historical"] != "1" {
			t.Fatalf("historical import audit: %+v", a)
		}
		// Importing the same file again stores nothing twice, although the
		// server's created_at moved on.
		rec, _ := e.store.Subject(context.Background(), model.SubjectRef{Entity: "contact", ID: "c-1"})
		n := len(rec.Evidence)
		clock.Add(int64(time.Hour))
		if r = e.do("POST", "/v1/evidence:import", "historian", body, "Content-Type: application/x-ndjson"); r.status != 200 {
			t.Fatalf("re-import: %d %s", r.status, r.body)
		}
		if rec, _ = e.store.Subject(context.Background(), model.SubjectRef{Entity: "contact", ID: "c-1"}); len(rec.Evidence) != n {
			t.Fatalf("re-import stored %d records, had %d", len(rec.Evidence), n)
		}
	})
}

// The manual's RenewalType "Explicit - Manual (if the agent has rights)":
// the admin API renews by hand with the gdpr_permission scope; each renewal
// moves the origin and is audited.
func TestExplicitRenewalNeedsGdprPermission(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/v1/evidence", ScopeEditEvidence, `{"subject":{"entity":"contact","id":"c-1"},"legal_key":"MK","evidence_key":"web-9","origin":"2026-02-01T00:00:00Z"}`)
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	id := r.json(t)["id"].(string)
	path := "/v1/evidence/contact/c-1/" + id + "/renew"
	if r = e.do("POST", path, ScopeEditEvidence, ""); r.status != 403 {
		t.Fatalf("renewal with edit_evidence only: %d %s", r.status, r.body)
	}
	if r = e.do("POST", path, ScopeGdprPermission, ""); r.status != 200 || r.json(t)["renewed_at"] != e.now.Format(time.RFC3339) {
		t.Fatalf("renewal: %d %s", r.status, r.body)
	}
	if a := e.lastAudit(); a.Action != "evidence.renew" || a.Detail["renewal"] != "explicit" || a.Actor != "tok-gdpr_permission" {
		t.Fatalf("renewal audit: %+v", a)
	}
	// customer-care renews automatically (by communications), not by hand.
	if r = e.do("POST", "/v1/evidence/contact/c-1/ev-1/renew", ScopeGdprPermission, ""); r.status != 422 || !strings.Contains(string(r.body), "renewal_type") {
		t.Fatalf("renewing an auto purpose by hand: %d %s", r.status, r.body)
	}
	if r = e.do("POST", "/v1/evidence/contact/c-1/ev-nope/renew", ScopeGdprPermission, ""); r.status != 404 {
		t.Fatalf("renewing missing evidence: %d %s", r.status, r.body)
	}
	// A consent that expired is not brought back by a renewal.
	r = e.do("POST", "/v1/evidence", ScopeEditEvidence, `{"subject":{"entity":"contact","id":"c-1"},"legal_key":"MK","evidence_key":"old-1","origin":"2025-01-01T00:00:00Z"}`)
	if r.status != 201 {
		t.Fatalf("create old consent: %d %s", r.status, r.body)
	}
	old := r.json(t)["id"].(string)
	if r = e.do("POST", "/v1/evidence/contact/c-1/"+old+"/renew", ScopeGdprPermission, ""); r.status != 409 {
		t.Fatalf("renewing lapsed evidence: %d %s", r.status, r.body)
	}
}

// The rules table, dry run: "Scenario selection table", evaluated by "Rank",
// "Terminate – A flag that should not continue to the next rule"; with no
// rule, the manual's GdprDefaultSensitivity.
func TestRulesDryRunSaysWhichRuleACommunicationHits(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/v1/rules:evaluate", ScopeEditItems, `{"channel":"InboundCall"}`)
	if r.status != 200 {
		t.Fatalf("dry run: %d %s", r.status, r.body)
	}
	var got struct {
		Matched []struct {
			ID string `json:"id"`
		} `json:"matched"`
		Sensitivity uint32 `json:"sensitivity"`
		Default     bool   `json:"default_sensitivity"`
		Evidence    []struct {
			LegalisationID string             `json:"legalisation_id"`
			Recorded       bool               `json:"recorded"`
			Problems       []model.FieldError `json:"problems"`
		} `json:"evidence"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	// The test registers' one rule matches any channel and names
	// marketing-consent, whose evidence key no communication gives.
	if len(got.Matched) != 1 || got.Matched[0].ID != "r-marketing" || got.Sensitivity != 2 || got.Default {
		t.Fatalf("dry run: %s", r.body)
	}
	if len(got.Evidence) != 1 || got.Evidence[0].Recorded || len(got.Evidence[0].Problems) != 1 || got.Evidence[0].Problems[0].Field != "evidence_key" {
		t.Fatalf("dry run evidence: %s", r.body)
	}
	// Without rules the default sensitivity applies.
	if r = e.do("DELETE", "/v1/rules/r-marketing", ScopeEditItems, ""); r.status != 200 {
		t.Fatalf("delete rule: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/v1/rules:evaluate", ScopeEditItems, `{"channel":"InboundCall"}`)
	if err := json.Unmarshal(r.body, &got); err != nil || !got.Default || got.Sensitivity != 2 || len(got.Matched) != 0 {
		t.Fatalf("dry run without rules: %s", r.body)
	}
	if r = e.do("POST", "/v1/rules:evaluate", ScopeEditItems, `{"chanel":"x"}`); r.status != 400 {
		t.Fatalf("unknown attribute: %d %s", r.status, r.body)
	}
}
