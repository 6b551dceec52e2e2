package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gdprgate/gdprgate/internal/testid"
	"github.com/gdprgate/gdprgate/policy/model"
)

// admin calls the admin API with the stack's admin token.
func (s *stack) admin(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.adminTS.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("authorization", "Bearer "+adminToken)
	if body != "" {
		req.Header.Set("content-type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// contactVisible runs a contact read both ways and returns the bits whose
// fields came back unredacted (-1 for a denial).
func (s *stack) contactVisible(t *testing.T, c call) (int, uint32) {
	t.Helper()
	r := both(t, s, c)
	if r.status != 200 {
		return r.status, 0
	}
	var got map[string]any
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("%s: %v", c.path, err)
	}
	var visible uint32
	for bit, fields := range contactBits {
		if got[fields[0]] != nil {
			visible |= 1 << bit
		}
	}
	return r.status, visible
}

// The manual, on GdprEnforced false: "the corresponding processes of
// archiving, expiration and forgetting in data processing are not running".
// Only the lifecycle stops: role masks, permissions and restrictions still
// apply, and what was obliviated when enforcement stopped never comes back.
func TestGdprNotEnforcedStopsOnlyTheLifecycle(t *testing.T) {
	s := newStack(t, "")
	// Switching enforcement off is an admin's confirmed act (issue 10 §4).
	if st, b := s.admin(t, "PATCH", "/v1/config", `{"gdpr_enforced":false,"confirm":true}`); st != 200 {
		t.Fatalf("PATCH /v1/config: %d %s", st, b)
	} else if !strings.Contains(string(b), `"enforcement_stopped_at"`) {
		t.Errorf("the config does not record when enforcement stopped: %s", b)
	}
	cases := []struct {
		name    string
		c       call
		status  int
		visible uint32
	}{
		{"agent still never sees Alice's health notes (role mask applies)", call{path: "/api/contacts/c-1", roles: "agent"}, 200, 7},
		{"archiving not running: the agent sees Bob's archived bits, not his obliviated health", call{path: "/api/contacts/c-2", roles: "agent"}, 200, 7},
		{"expiration not running: the agent sees Carol's expired name", call{path: "/api/contacts/c-3", roles: "agent"}, 200, 3},
		{"obliviated Eve never comes back", call{path: "/api/contacts/c-5", roles: "auditor"}, 404, 0},
		{"export still needs export_evidence", call{path: "/api/contacts/c-1/export", roles: "agent"}, 403, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, vis := s.contactVisible(t, tc.c)
			if st != tc.status || vis != tc.visible {
				t.Errorf("status %d visible %04b, want %d %04b", st, vis, tc.status, tc.visible)
			}
		})
	}
	t.Run("a wiped subject stays gone", func(t *testing.T) {
		if st, b := s.admin(t, "POST", "/v1/wipes", `{"entity":"contact","id":"c-7"}`); st != 202 {
			t.Fatalf("wipe: %d %s", st, b)
		}
		if st, _ := s.contactVisible(t, call{path: "/api/contacts/c-7", roles: "supervisor"}); st != 404 {
			t.Errorf("wiped Grace: %d", st)
		}
	})
}

// The manual's editor colours: "Red – We have no coverage. Blue – We have
// coverage - at least one explicit. Green – We have at least one inherited
// coverage." Only evidence that grants something now counts, per bit in
// x-gdpr-coverage-bits, and only for the bits the caller may see.
func TestCoverageColoursPerSensitivity(t *testing.T) {
	s := newStack(t, "")
	cases := []struct {
		name          string
		c             call
		overall, bits string
	}{
		{"Alice, supervisor: every bit explicit", call{path: "/api/contacts/c-1", roles: "supervisor"}, "blue", "0:blue,1:blue,2:blue,3:blue"},
		{"Alice, agent: only the agent's bits", call{path: "/api/contacts/c-1", roles: "agent"}, "blue", "0:blue,1:blue,2:blue"},
		{"Bob: archived evidence still covers, his health has none", call{path: "/api/contacts/c-2", roles: "supervisor"}, "blue", "0:blue,1:blue,2:blue,3:red"},
		{"Carol: an expired consent is no coverage", call{path: "/api/contacts/c-3", roles: "auditor"}, "red", "0:red,1:red,2:red,3:red"},
		{"Ken: contract in force, health consent expired", call{path: "/api/contacts/c-11", roles: "auditor"}, "blue", "0:blue,1:blue,2:blue,3:red"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := both(t, s, tc.c)
			if got := r.header.Get("x-gdpr-coverage"); got != tc.overall {
				t.Errorf("x-gdpr-coverage %q, want %q", got, tc.overall)
			}
			if got := r.header.Get("x-gdpr-coverage-bits"); got != tc.bits {
				t.Errorf("x-gdpr-coverage-bits %q, want %q", got, tc.bits)
			}
		})
	}
	t.Run("the admin API's subject view colours each bit", func(t *testing.T) {
		st, b := s.admin(t, "GET", "/v1/subjects/contact/c-11", "")
		if st != 200 {
			t.Fatalf("%d %s", st, b)
		}
		var v struct {
			Coverage string `json:"coverage"`
			Bits     []struct {
				Bit      int    `json:"bit"`
				Coverage string `json:"coverage"`
			} `json:"bits"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		got := map[int]string{}
		for _, bv := range v.Bits {
			got[bv.Bit] = bv.Coverage
		}
		if v.Coverage != "blue" || got[0] != "blue" || got[2] != "blue" || got[3] != "red" {
			t.Errorf("subject view: overall %q, bits %v", v.Coverage, got)
		}
	})
}

// Writes need rights. The manual gives agents their GDPR rights in the
// agent profile ("Viewing GDPR expiration records", "Viewing GDPR archived
// records") and the GdprSensitivity role "Categories of sensitivity of
// displayed data"; gdprgate reads them for writes too: a write may change a
// mapped field only when the caller may see it now — its sensitivity in the caller's mask and active,
// or archived/expired when the caller may view those (in archive mode for
// archived) — and a refused write names the fields, never their values.
func TestWritesNeedRights(t *testing.T) {
	s := newStack(t, "")
	cases := []struct {
		name   string
		c      call
		status int
		fields string
	}{
		{"an agent may rectify Alice's contact data", call{method: "PUT", path: "/api/contacts/c-1", roles: "agent", body: `{"first_name":"Alicia","tags":["x"]}`}, 200, ""},
		{"an agent may not write health notes (not in its mask)", call{method: "PUT", path: "/api/contacts/c-1", roles: "agent", body: `{"first_name":"Alicia","health_notes":"x"}`}, 403, `["health_notes"]`},
		{"keys are matched as the backend binds them: HEALTH_NOTES is health_notes", call{method: "PUT", path: "/api/contacts/c-1", roles: "agent", body: `{"HEALTH_NOTES":"x"}`}, 403, `["health_notes"]`},
		{"a key given twice is refused", call{method: "PUT", path: "/api/contacts/c-1", roles: "agent", body: `{"email":"a@x","EMAIL":"b@x"}`}, 400, ""},
		{"a marketer may not write to Carol's expired name", call{method: "PUT", path: "/api/contacts/c-3", roles: "marketer", body: `{"email":"new@example.com"}`}, 403, `["email"]`},
		{"the auditor may (view_expired)", call{method: "PUT", path: "/api/contacts/c-3", roles: "auditor", body: `{"email":"new@example.com"}`}, 200, ""},
		{"a supervisor may not write to Bob's archived data outside archive mode", call{method: "PUT", path: "/api/contacts/c-2", roles: "supervisor", body: `{"last_name":"B","address":{"city":"X"}}`}, 403, `["address","last_name"]`},
		{"in archive mode it may", call{method: "PUT", path: "/api/contacts/c-2", roles: "supervisor", mode: "archive", body: `{"last_name":"B"}`}, 200, ""},
		{"unmapped fields are the backend's business", call{method: "PUT", path: "/api/contacts/c-2", roles: "agent", body: `{"tags":["vip"]}`}, 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := both(t, s, tc.c)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.fields != "" {
				var got struct {
					Error  string          `json:"error"`
					Fields json.RawMessage `json:"fields"`
				}
				if err := json.Unmarshal(r.body, &got); err != nil || got.Error != "write_not_permitted" || string(got.Fields) != tc.fields {
					t.Errorf("refusal %s, want write_not_permitted naming %s", r.body, tc.fields)
				}
				if strings.Contains(string(r.body), "example.com") || strings.Contains(string(r.body), `"x"`) {
					t.Errorf("refusal carries a value: %s", r.body)
				}
			}
		})
	}
	t.Run("a write whose body gdprgate cannot see is refused", func(t *testing.T) {
		big := `{"health_notes":"x","tags":["` + strings.Repeat("a", 70<<10) + `"]}`
		r := s.viaProxy(t, call{method: "PUT", path: "/api/contacts/c-1", roles: "agent", body: big})
		if r.status != 413 || !strings.Contains(string(r.body), "write_body_too_large") {
			t.Errorf("oversized write: %d %s", r.status, r.body)
		}
	})
}

// evidenceOf lists a subject's stored evidence.
func (s *stack) evidenceOf(t *testing.T, id string) []model.Evidence {
	t.Helper()
	rec, err := s.app.Store.Subject(t.Context(), model.SubjectRef{Entity: "contact", ID: id})
	if err != nil {
		t.Fatal(err)
	}
	return rec.Evidence
}

// The manual's "Authorization" button without backend code: a request that
// creates a communication record is matched against the GDPR rules table
// ("Scenario selection table", evaluated by "Rank", stopped by "Terminate" —
// "A flag that should not continue to the next rule"); the rules give the
// communication its sensitivity ("Which sensitivity to add") and the
// legalisation whose proof gdprgate records ("The proof of which
// legalization to add") once the backend answered, with the new record as
// the evidence's communication (CommIdObligatory: "a link to at least one
// communication (IC / OC / M / CH)").
func TestCommunicationRecordsTheRulesEvidence(t *testing.T) {
	for _, via := range []string{"envoy", "proxy"} {
		t.Run(via, func(t *testing.T) {
			s := newStack(t, "")
			do := func(c call) result {
				if via == "envoy" {
					return s.viaEnvoy(t, c)
				}
				return s.viaProxy(t, c)
			}
			// Dan has no evidence: red, bit 2 expired.
			if r := do(call{path: "/api/contacts/c-4", roles: "agent"}); r.header.Get("x-gdpr-coverage") != "red" {
				t.Fatalf("Dan before: %q", r.header.Get("x-gdpr-coverage"))
			}
			r := do(call{method: "POST", path: "/api/calls", roles: "agent", body: `{"contact_id":"c-4","direction":"inbound","topic":"care","notes":"Asked about delivery."}`})
			if r.status != 201 {
				t.Fatalf("log call: %d %s", r.status, r.body)
			}
			var created struct{ ID string }
			_ = json.Unmarshal(r.body, &created)
			if got := r.header.Get("x-gdpr-comm-sensitivity"); got != "2" {
				t.Errorf("x-gdpr-comm-sensitivity %q, want 2 (inbound-care: contact)", got)
			}
			evs := s.evidenceOf(t, "c-4")
			if len(evs) != 1 || evs[0].LegalisationID != "contract-care" || len(evs[0].CommIDs) != 1 || evs[0].CommIDs[0] != created.ID || !evs[0].CreatedAt.Equal(s.now) {
				t.Fatalf("Dan's evidence after the call: %+v (call %s)", evs, created.ID)
			}
			if got := r.header.Get("x-gdpr-evidence"); got != evs[0].ID {
				t.Errorf("x-gdpr-evidence %q, want %s", got, evs[0].ID)
			}
			if r.header.Get("x-gdpr-coverage") == "" && via == "proxy" {
				t.Logf("no coverage header on the call answer")
			}
			// The evidence works at once: Dan is blue and his bit 2 active.
			st, vis := s.contactVisible(t, call{path: "/api/contacts/c-4", roles: "agent"})
			if st != 200 || vis != 7 {
				t.Errorf("Dan after the call: %d visible %04b, want bits 0-2", st, vis)
			}
			if c := do(call{path: "/api/contacts/c-4", roles: "agent"}).header.Get("x-gdpr-coverage"); c != "blue" {
				t.Errorf("Dan's colour after the call: %q", c)
			}
			audited := false
			entries, _, _ := s.app.Store.Audit(t.Context(), "", 10000)
			for _, e := range entries {
				if e.Action == "evidence.communication" && e.Detail["rules"] == "inbound-care" {
					audited = true
					if testid.MentionsID(fmt.Sprint(e), "c-4") {
						t.Errorf("audit entry names the subject in clear: %+v", e)
					}
				}
			}
			if !audited {
				t.Error("the communication's evidence is not audited")
			}

			cases := []struct {
				name, roles, body string
				sensitivity       string
				evidence, refused string
				evidenceOn        string
			}{
				{"a rule whose legalisation needs an evidence key: refused, named", "agent",
					`{"contact_id":"c-8","direction":"inbound","topic":"newsletter"}`, "2", "none", "marketing-consent:evidence_key", "c-8"},
				{"a rule without a legalisation adds only its sensitivity (health-topic)", "agent",
					`{"contact_id":"c-9","direction":"inbound","topic":"health"}`, "8", "none", "", "c-9"},
				{"no rule matches: default_sensitivity", "agent",
					`{"contact_id":"c-9","direction":"inbound","topic":"weather"}`, "2", "none", "", "c-9"},
				{"a caller without edit_evidence records nothing", "marketer",
					`{"contact_id":"c-8","direction":"inbound","topic":"care"}`, "2", "none", "contract-care:not_permitted", "c-8"},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					before := len(s.evidenceOf(t, tc.evidenceOn))
					r := do(call{method: "POST", path: "/api/calls", roles: tc.roles, body: tc.body})
					if r.status != 201 {
						t.Fatalf("%d %s", r.status, r.body)
					}
					if got := r.header.Get("x-gdpr-comm-sensitivity"); got != tc.sensitivity {
						t.Errorf("x-gdpr-comm-sensitivity %q, want %q", got, tc.sensitivity)
					}
					if got := r.header.Get("x-gdpr-evidence"); got != tc.evidence {
						t.Errorf("x-gdpr-evidence %q, want %q", got, tc.evidence)
					}
					if got := r.header.Get("x-gdpr-evidence-refused"); got != tc.refused {
						t.Errorf("x-gdpr-evidence-refused %q, want %q", got, tc.refused)
					}
					if after := len(s.evidenceOf(t, tc.evidenceOn)); after != before {
						t.Errorf("evidence %d -> %d, want unchanged", before, after)
					}
				})
			}
			t.Run("a call the backend refuses records nothing", func(t *testing.T) {
				r := do(call{method: "POST", path: "/api/calls", roles: "agent", body: `{"contact_id":"c-8","direction":"sideways","topic":"care"}`})
				if r.status != 400 || r.header.Get("x-gdpr-evidence") != "" || len(s.evidenceOf(t, "c-8")) != 0 {
					t.Errorf("%d %q, evidence %v", r.status, r.header.Get("x-gdpr-evidence"), s.evidenceOf(t, "c-8"))
				}
			})
			t.Run("a wiped or forgotten subject's call is refused like its reads", func(t *testing.T) {
				r := do(call{method: "POST", path: "/api/calls", roles: "agent", body: `{"contact_id":"c-5","direction":"inbound","topic":"care"}`})
				if r.status != 404 {
					t.Errorf("call for Eve: %d %s", r.status, r.body)
				}
			})
		})
	}
}

// The manual's RenewalType, the purposes' "origin" offset: "NULL - Cannot,
// Explicit - Manual (if the agent has rights), Implicit - When every IC / OC
// / M / CH record is marked as IsRenewal, Auto - When every IC / OC / M / CH
// communication record is acquired". Each renewal moves the evidence's
// origin to now and is audited; lapsed evidence is not brought back.
func TestCommunicationsRenewEvidence(t *testing.T) {
	for _, via := range []string{"envoy", "proxy"} {
		t.Run(via, func(t *testing.T) {
			s := newStack(t, "")
			do := func(c call) result {
				if via == "envoy" {
					return s.viaEnvoy(t, c)
				}
				return s.viaProxy(t, c)
			}
			renewedAt := func(contact, evID string) bool {
				for _, e := range s.evidenceOf(t, contact) {
					if e.ID == evID {
						return e.RenewedAt != nil && e.RenewedAt.Equal(s.now)
					}
				}
				t.Fatalf("%s has no evidence %s", contact, evID)
				return false
			}
			logCall := func(roles, body string) result {
				t.Helper()
				r := do(call{method: "POST", path: "/api/calls", roles: roles, body: body})
				if r.status != 201 {
					t.Fatalf("log call: %d %s", r.status, r.body)
				}
				return r
			}

			// Auto: any call with Bob renews his archived customer-care
			// evidence: his data is active again.
			if _, vis := s.contactVisible(t, call{path: "/api/contacts/c-2", roles: "agent"}); vis != 0 {
				t.Fatalf("Bob before: visible %04b", vis)
			}
			r := logCall("marketer", `{"contact_id":"c-2","direction":"outbound","topic":"follow-up"}`)
			if got := r.header.Get("x-gdpr-renewed"); got != "ev-c2-care" || !renewedAt("c-2", "ev-c2-care") {
				t.Errorf("auto renewal of Bob: x-gdpr-renewed %q", got)
			}
			if _, vis := s.contactVisible(t, call{path: "/api/contacts/c-2", roles: "agent"}); vis != 7 {
				t.Errorf("Bob after the call: visible %04b, want bits 0-2 active again", vis)
			}

			// Implicit: only a call marked as a renewal renews Frank's
			// service-info consent; his customer-care evidence is under a
			// retired legalisation and is not extended.
			logCall("agent", `{"contact_id":"c-6","direction":"inbound","topic":"billing"}`)
			if renewedAt("c-6", "ev-c6-service") || renewedAt("c-6", "ev-c6-legit") {
				t.Errorf("an unmarked call renewed Frank's evidence: %+v", s.evidenceOf(t, "c-6"))
			}
			logCall("agent", `{"contact_id":"c-6","direction":"inbound","topic":"billing","is_renewal":true}`)
			if !renewedAt("c-6", "ev-c6-service") || renewedAt("c-6", "ev-c6-legit") {
				t.Errorf("implicit renewal of Frank: %+v", s.evidenceOf(t, "c-6"))
			}

			// Explicit: a marked call renews Alice's marketing consent only
			// when the caller has gdpr_permission (the supervisor).
			logCall("agent", `{"contact_id":"c-1","direction":"inbound","topic":"billing","is_renewal":true}`)
			if renewedAt("c-1", "ev-c1-mkt") {
				t.Error("an agent without gdpr_permission renewed an explicit purpose")
			}
			logCall("supervisor", `{"contact_id":"c-1","direction":"inbound","topic":"billing","is_renewal":true}`)
			if !renewedAt("c-1", "ev-c1-mkt") {
				t.Error("a supervisor's marked call did not renew Alice's marketing consent")
			}

			// Lapsed evidence stays lapsed: Carol's consent expired.
			logCall("supervisor", `{"contact_id":"c-3","direction":"inbound","topic":"billing","is_renewal":true}`)
			if renewedAt("c-3", "ev-c3-mkt") {
				t.Error("an expired consent was renewed")
			}

			n := 0
			entries, _, _ := s.app.Store.Audit(t.Context(), "", 10000)
			for _, e := range entries {
				if e.Action == "evidence.renew" {
					n++
					if e.Detail["renewal"] == "" || e.Detail["evidence"] == "" {
						t.Errorf("renewal audit entry without its type or records: %+v", e)
					}
				}
			}
			if n != 4 {
				t.Errorf("%d evidence.renew audit entries, want 4 (Bob; Frank marked; both of Alice's calls)", n)
			}
		})
	}
}
