package e2e

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/policy/model"
)

// newAliasStack is the reference stack (example configuration) in front of
// a CRM that finds contacts the way many real backends do: any letter case
// of an id (a case-insensitive collation) and a Rails format suffix
// (c-2.json). No wipe worker: a wiped subject's data stays in the backend.
func newAliasStack(t *testing.T, configure func(*config.Config)) *stack {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	backend := crm.New(now, crm.CaseInsensitiveIDs(), crm.FormatSuffix())
	crmSrv := httptest.NewServer(backend)
	t.Cleanup(crmSrv.Close)
	sc := apptest.New(t, apptest.Options{Now: now, Configure: func(cfg *config.Config) {
		cfg.Upstream = crmSrv.URL
		if configure != nil {
			configure(cfg)
		}
	}})
	s := front(t, sc, crmSrv.URL, crmBodies)
	s.crm, s.crmURL = backend, crmSrv.URL
	ref := model.SubjectRef{Entity: "contact", ID: "c-8"}
	apptest.QueueWipe(t, s.app.Store, ref, s.now)
	return s
}

// TestAliasedIDs: archived Bob (c-2) asked for as C-2 or c-2.json, and
// wiped Heidi (c-8) as C-8: the CRM answers with their records, and
// gdprgate judges each answer for the subject it states, through Envoy
// (Check and ext_proc over gRPC) and gdprgate proxy. On main the agent saw
// Bob in clear and the auditor Heidi's record.
func TestAliasedIDs(t *testing.T) {
	s := newAliasStack(t, nil)
	for _, target := range []string{"/api/contacts/C-2", "/api/contacts/c-2.json", "/api/contacts/C-2/calls", "/api/contacts/c-2.json/calls"} {
		for way, r := range s.ways(t, rawCall{target: target, header: agentHdr}) {
			if r.status != 200 {
				t.Errorf("%s via %s: %d %s, want the CRM's answer, redacted", target, way, r.status, r.body)
				continue
			}
			for _, leak := range []string{"Bob", "Baker", "bob.baker", "+4930"} {
				if bytes.Contains(r.body, []byte(leak)) {
					t.Errorf("%s via %s: archived Bob (%s) in clear: %s", target, way, leak, r.body)
				}
			}
		}
	}
	for _, target := range []string{"/api/contacts/C-8", "/api/contacts/c-8.json", "/api/contacts/C-8/export"} {
		for way, r := range s.ways(t, rawCall{target: target, header: map[string]string{"x-gdpr-roles": "auditor"}}) {
			if r.status != 404 || bytes.Contains(r.body, []byte("Heidi")) || !bytes.Contains(r.body, []byte("subject_not_found")) {
				t.Errorf("%s via %s: %d %s, want 404 subject_not_found", target, way, r.status, r.body)
			}
		}
	}
	// A write acts before it answers: the example admits only canonical ids
	// on write routes, and the CRM never sees the aliased one.
	before := s.crm.Patches()
	for way, r := range s.ways(t, rawCall{method: "PATCH", target: "/api/contacts/C-2", body: `{"first_name":"Robert"}`,
		header: map[string]string{"x-gdpr-roles": "supervisor", "content-type": "application/json"}}) {
		if r.status != 400 || !bytes.Contains(r.body, []byte("subject_id_not_canonical")) {
			t.Errorf("PATCH C-2 via %s: %d %s, want 400 subject_id_not_canonical", way, r.status, r.body)
		}
	}
	if c, _ := s.crm.Contact("c-2"); s.crm.Patches() != before || c.FirstName != "Bob" {
		t.Errorf("the CRM applied an aliased write: %d patches, first_name %q", s.crm.Patches()-before, c.FirstName)
	}
	// The canonical id is served as before.
	for way, r := range s.ways(t, rawCall{target: "/api/contacts/c-1", header: agentHdr}) {
		var m map[string]any
		if err := json.Unmarshal(r.body, &m); err != nil || r.status != 200 || m["first_name"] != "Alice" || m["health_notes"] != nil {
			t.Errorf("c-1 via %s: %d %s", way, r.status, r.body)
		}
		if r.header.Get("x-gdpr-coverage") != "blue" {
			t.Errorf("c-1 via %s: coverage %q", way, r.header.Get("x-gdpr-coverage"))
		}
	}
}

// TestAliasedIDsWithoutConfirm is the example configuration without
// subject.confirm or id_pattern, as on main: the leak, reproduced, so
// that the test above is known to test something. (Only the first request
// of a spelling leaks there: its answer's created_at is then recorded as the
// origin of "C-2", a subject that does not exist, which hides Bob later.)
func TestAliasedIDsWithoutConfirm(t *testing.T) {
	s := newAliasStack(t, func(cfg *config.Config) {
		for i := range cfg.Routes {
			if sub := cfg.Routes[i].Subject; sub != nil {
				sub.Confirm, sub.IDPattern = "", ""
			}
		}
	})
	for way, r := range map[string]result{
		"proxy": s.viaProxy(t, call{path: "/api/contacts/C-2", roles: "agent"}),
		"envoy": s.viaEnvoy(t, call{path: "/api/contacts/c-2.json", roles: "agent"}),
	} {
		if !bytes.Contains(r.body, []byte("Bob")) {
			t.Errorf("via %s: %d %s; the backend no longer leaks without confirm, so the test above proves nothing", way, r.status, r.body)
		}
	}
}
