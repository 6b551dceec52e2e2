package adminapi

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/policy/model"
)

// The console needs to know what a token may do without trying every
// route: whoami answers any valid token with its own name and scopes, and
// nothing without one.
func TestWhoamiTellsAnyValidTokenItsNameAndScopes(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/v1/whoami", ScopeAuditRead, "")
	m := r.json(t)
	if r.status != 200 || m["name"] != "tok-audit_read" || len(m["scopes"].([]any)) != 1 || m["scopes"].([]any)[0] != "audit_read" {
		t.Fatalf("whoami: %d %s", r.status, r.body)
	}
	for _, tok := range []string{"", "not-a-token"} {
		if r := e.do("GET", "/v1/whoami", tok, ""); r.status != 401 {
			t.Fatalf("whoami with %q: %d", tok, r.status)
		}
	}
}

// The console is served under /ui/ with a policy that keeps it on this
// origin, and the API's own answers are never a document a browser runs or
// frames.
func TestConsoleIsServedUnderUIWithItsSecurityHeaders(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Console = true })
	r := e.do("GET", "/ui/", "", "")
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("console: %d %s", r.status, r.header.Get("Content-Type"))
	}
	csp := r.header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "require-trusted-types-for 'script'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("console CSP %q lacks %q", csp, want)
		}
	}
	if r.header.Get("X-Frame-Options") != "DENY" || r.header.Get("X-Content-Type-Options") != "nosniff" || r.header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("console headers: %v", r.header)
	}
	api := e.do("GET", "/v1/whoami", ScopeAdmin, "")
	if api.header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(api.header.Get("Content-Security-Policy"), "frame-ancestors 'none'") || api.header.Get("Cache-Control") != "no-store" {
		t.Errorf("API headers: %v", api.header)
	}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"POST", "/ui/", 405},   // static files only: a form posting a token here gets nothing
		{"GET", "/ui/js", 404},  // a directory is not listed
		{"GET", "/ui/js/", 404}, // nor with its slash
		{"GET", "/ui/nothing.js", 404},
	} {
		if r := e.do(tc.method, tc.path, "", ""); r.status != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, r.status, tc.want)
		}
	}
	// Off unless configured: no page, and no redirect that would reveal one.
	off := newEnv(t)
	for _, p := range []string{"/ui/", "/ui", "/ui/js/app.js"} {
		if r := off.do("GET", p, "", ""); r.status != 404 {
			t.Errorf("console not configured: GET %s: %d", p, r.status)
		}
	}
}

// The subject view carries what the console's timeline draws: each bit's
// transitions from the data origin (past and future), when it entered its
// state, its next transition, and the evidence behind it.
func TestSubjectStateHasEachBitsTransitionsAndTheEvidenceBehindIt(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/v1/subjects/contact/c-1", ScopeExportEvidence, "")
	var v struct {
		TimelineFrom time.Time `json:"timeline_from"`
		Bits         []struct {
			Sensitivity    string         `json:"sensitivity"`
			State          string         `json:"state"`
			Since          *time.Time     `json:"since"`
			NextTransition *bitTransition `json:"next_transition"`
			Transitions    []bitTransition
			Evidence       []bitEvidence
		} `json:"bits"`
	}
	if err := json.Unmarshal(r.body, &v); err != nil || r.status != 200 {
		t.Fatalf("subject: %d %v %s", r.status, err, r.body)
	}
	origin := e.now.AddDate(0, 0, -100)
	day := 24 * time.Hour
	if !v.TimelineFrom.Equal(origin) {
		t.Fatalf("timeline_from %v, want the origin %v", v.TimelineFrom, origin)
	}
	// c-1: contract-care (customer-care: archive 365d, expire 730d,
	// obliviate 1095d) from the origin covers bits 0-2; health (bit 3) has
	// no ground and no period: obliviated from the start.
	for _, b := range v.Bits[:3] {
		want := []bitTransition{
			{At: origin.Add(365 * day), From: "active", To: "archived"},
			{At: origin.Add(730 * day), From: "archived", To: "expired"},
			{At: origin.Add(1095 * day), From: "expired", To: "obliviated"},
		}
		if len(b.Transitions) != 3 {
			t.Fatalf("%s transitions %+v", b.Sensitivity, b.Transitions)
		}
		for i := range want {
			if !b.Transitions[i].At.Equal(want[i].At) || b.Transitions[i].From != want[i].From || b.Transitions[i].To != want[i].To {
				t.Fatalf("%s transition %d: %+v, want %+v", b.Sensitivity, i, b.Transitions[i], want[i])
			}
		}
		if b.State != "active" || b.Since != nil || b.NextTransition == nil || !b.NextTransition.At.Equal(want[0].At) {
			t.Fatalf("%s: state %s since %v next %+v", b.Sensitivity, b.State, b.Since, b.NextTransition)
		}
		if len(b.Evidence) != 1 || b.Evidence[0].ID != "ev-1" || b.Evidence[0].LegalisationID != "contract-care" || b.Evidence[0].State != "active" || !b.Evidence[0].Counts {
			t.Fatalf("%s evidence %+v", b.Sensitivity, b.Evidence)
		}
	}
	if h := v.Bits[3]; h.State != "obliviated" || len(h.Transitions) != 0 || h.NextTransition != nil || len(h.Evidence) != 0 {
		t.Fatalf("health: %+v", h)
	}

	// A subject nobody knows is evaluated from now, and its timeline
	// starts now: the 30-day grace, then the defaults.
	r = e.do("GET", "/v1/subjects/contact/nobody", ScopeExportEvidence, "")
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatal(err)
	}
	if !v.TimelineFrom.Equal(e.now) || v.Bits[1].NextTransition == nil || !v.Bits[1].NextTransition.At.Equal(e.now.Add(180*day)) {
		t.Fatalf("unknown subject: from %v, contact bit %+v", v.TimelineFrom, v.Bits[1])
	}
}

// The audit trail filters by actor, action (exact or a "prefix."), subject
// (named in clear, matched by its keyed hash) and time, in pages and in the
// NDJSON export; bad filters change nothing and say why.
func TestAuditTrailFiltersByActorActionSubjectAndTime(t *testing.T) {
	e := newEnv(t)
	for _, body := range []string{`{"entity":"contact","id":"c-1"}`, `{"entity":"contact","id":"c-9"}`} {
		if r := e.do("POST", "/v1/wipes", ScopeWipe, body); r.status != 202 {
			t.Fatalf("wipe: %d %s", r.status, r.body)
		}
	}
	if r := e.do("PATCH", "/v1/purposes/marketing", ScopeEditItems, `{"name":"Marketing 2"}`); r.status != 200 {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	type page struct {
		Entries []struct{ Actor, Action, Subject string } `json:"entries"`
		Next    string                                    `json:"next"`
		End     bool                                      `json:"end"`
	}
	get := func(q string) page {
		t.Helper()
		r := e.do("GET", "/v1/audit?"+q, ScopeAuditRead, "")
		var p page
		if r.status != 200 || json.Unmarshal(r.body, &p) != nil {
			t.Fatalf("audit?%s: %d %s", q, r.status, r.body)
		}
		return p
	}
	hashC1 := e.srv.o.Hasher.Subject(model.SubjectRef{Entity: "contact", ID: "c-1"})
	for _, tc := range []struct {
		query string
		want  int
		check func(a, ac, s string) bool
	}{
		{"actor=tok-wipe", 2, func(a, _, _ string) bool { return a == "tok-wipe" }},
		{"action=wipe.", 2, func(_, ac, _ string) bool { return strings.HasPrefix(ac, "wipe.") }},
		{"action=register.patch", 1, func(_, ac, _ string) bool { return ac == "register.patch" }},
		{"entity=contact&id=c-1", 1, func(_, _, s string) bool { return s == hashC1 }},
		{"subject=" + hashC1 + "&actor=tok-wipe", 1, func(_, _, s string) bool { return s == hashC1 }},
		{"since=" + e.now.Add(time.Hour).Format(time.RFC3339), 0, nil},
		{"until=" + e.now.Add(-time.Hour).Format(time.RFC3339), 0, nil},
		{"since=" + e.now.Format(time.RFC3339) + "&until=" + e.now.Format(time.RFC3339) + "&actor=tok-edit_items", 1, nil},
	} {
		p := get(tc.query)
		if len(p.Entries) != tc.want || !p.End {
			t.Errorf("%s: %d entries (end %v), want %d: %+v", tc.query, len(p.Entries), p.End, tc.want, p.Entries)
		}
		for _, en := range p.Entries {
			if tc.check != nil && !tc.check(en.Actor, en.Action, en.Subject) {
				t.Errorf("%s: entry %+v does not match", tc.query, en)
			}
		}
	}
	// A filtered page stops at limit and its cursor continues the scan.
	p := get("action=wipe.&limit=1")
	if len(p.Entries) != 1 || p.End {
		t.Fatalf("first page: %+v", p)
	}
	if q := get("action=wipe.&limit=1&after=" + p.Next); len(q.Entries) != 1 || q.Entries[0] == p.Entries[0] {
		t.Fatalf("second page: %+v", q)
	}
	// The export applies the same filter.
	r := e.do("GET", "/v1/audit?format=ndjson&entity=contact&id=c-9", ScopeAuditRead, "")
	if lines := strings.Split(strings.TrimSpace(string(r.body)), "\n"); r.status != 200 || len(lines) != 1 || !strings.Contains(lines[0], `"wipe.request"`) {
		t.Fatalf("export: %d %s", r.status, r.body)
	}
	for _, q := range []string{"entity=contact", "id=c-1", "since=yesterday", "since=2026-06-02T00:00:00Z&until=2026-06-01T00:00:00Z", "subject=h:1&entity=contact&id=c-1"} {
		if r := e.do("GET", "/v1/audit?"+q, ScopeAuditRead, ""); r.status != 422 {
			t.Errorf("audit?%s: %d, want 422", q, r.status)
		}
	}
}
