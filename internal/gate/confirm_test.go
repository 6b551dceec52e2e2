package gate_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/gate"
	"github.com/gdprgate/gdprgate/policy/model"
)

// aliases is gdprgate (the example configuration) in front of a CRM that
// finds contacts the way many real backends do: ids in any letter case
// (a case-insensitive collation) and a Rails format suffix (c-2.json).
type aliases struct {
	sc  *apptest.Scenario
	g   *gate.Gate
	crm *crm.Server
}

func newAliases(t *testing.T, configure func(*config.Config)) *aliases {
	t.Helper()
	sc := apptest.New(t, apptest.Options{Configure: configure})
	// Heidi (c-8) is wiped: hidden at once, under any spelling.
	ref := model.SubjectRef{Entity: "contact", ID: "c-8"}
	apptest.QueueWipe(t, sc.App.Store, ref, sc.Now)
	return &aliases{sc: sc, g: sc.App.Gate, crm: crm.New(sc.Now, crm.CaseInsensitiveIDs(), crm.FormatSuffix())}
}

// answer is what the client gets.
type answer struct {
	status int
	reason string
	header map[string]string
	body   []byte
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("%d %s: %v", a.status, a.body, err)
	}
	return m
}

// do sends the request through the gate to the CRM (or answers it with
// backend, when given) and back.
func (a *aliases) do(t *testing.T, method, path string, h map[string]string, backend func() (int, string)) answer {
	t.Helper()
	ctx := context.Background()
	ex := a.g.Check(ctx, &gate.Request{Method: method, Path: path, Header: func(n string) string { return h[n] }})
	if !ex.Verdict.Allow {
		return answer{status: ex.Verdict.Status, reason: ex.Verdict.Reason, body: ex.Verdict.Body}
	}
	status, ct := 0, "application/json"
	var body []byte
	if backend != nil {
		var s string
		status, s = backend()
		body = []byte(s)
	} else {
		rec := httptest.NewRecorder()
		a.crm.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		status, body, ct = rec.Code, rec.Body.Bytes(), rec.Header().Get("content-type")
	}
	rw := a.g.Rewrite(ctx, ex, &gate.Response{Status: status, Body: body, Header: contentType(ct)})
	out := answer{status: status, reason: rw.Reason, header: map[string]string{}, body: body}
	for k, v := range ex.Verdict.ResponseHeaders {
		out.header[k] = v
	}
	for _, k := range rw.RemoveHeaders {
		delete(out.header, k)
	}
	for k, v := range rw.SetHeaders {
		out.header[k] = v
	}
	switch {
	case rw.Replace:
		out.status, out.body = rw.Status, rw.Body
	case rw.Modified:
		out.body = rw.Body
	}
	return out
}

func roles(r string) map[string]string { return map[string]string{"x-gdpr-roles": r} }

// TestAnswerAboutAnotherSpellingIsJudgedForItsSubject: a backend that finds
// archived Bob (c-2) under C-2 or c-2.json answers with Bob's record; the
// id gdprgate read is a subject never seen (inside its grace period, every
// bit active), but the answer states c-2, and c-2's rules apply: the agent
// sees none of Bob's data. On main this showed Bob in clear.
func TestAnswerAboutAnotherSpellingIsJudgedForItsSubject(t *testing.T) {
	a := newAliases(t, nil)
	direct := a.do(t, "GET", "/api/contacts/c-2", roles("agent"), nil)
	for _, path := range []string{"/api/contacts/C-2", "/api/contacts/c-2.json", "/api/contacts/C-2.JSON", "/api/contacts/%43-2", "/api/contacts/C-2.json"} {
		t.Run(path, func(t *testing.T) {
			got := a.do(t, "GET", path, roles("agent"), nil)
			if strings.HasSuffix(path, ".JSON") {
				// The CRM strips only ".json": nothing found, nothing shown.
				if got.status != 404 {
					t.Fatalf("%d %s, want the CRM's 404", got.status, got.body)
				}
				return
			}
			if got.status != 200 {
				t.Fatalf("%d %s", got.status, got.body)
			}
			m := got.json(t)
			if m["id"] != "c-2" {
				t.Fatalf("the CRM answered %v, want Bob's record", m["id"])
			}
			for _, f := range []string{"first_name", "last_name", "email", "phone", "address", "birth_year", "customer_number", "health_notes"} {
				if m[f] != nil {
					t.Errorf("%s = %v: archived Bob shown to an agent", f, m[f])
				}
			}
			if strings.Contains(string(got.body), "Bob") || strings.Contains(string(got.body), "Baker") {
				t.Errorf("Bob in clear: %s", got.body)
			}
			// The coverage headers are Bob's, not the unknown spelling's.
			for _, h := range []string{gate.HeaderCoverage, gate.HeaderCoverageBits} {
				if got.header[h] != direct.header[h] {
					t.Errorf("%s = %q, want c-2's %q", h, got.header[h], direct.header[h])
				}
			}
		})
	}
}

// TestConfirmedAnswersOfEveryKind: the list under a subject (every call
// states its contact), the export, a wiped and an obliviated subject under
// another spelling, and what "both allow" means.
func TestConfirmedAnswersOfEveryKind(t *testing.T) {
	a := newAliases(t, nil)
	archive := map[string]string{"x-gdpr-roles": "supervisor", "x-gdpr-mode": "archive"}

	t.Run("Bob's calls under C-2", func(t *testing.T) {
		got := a.do(t, "GET", "/api/contacts/C-2/calls", roles("agent"), nil)
		calls, _ := got.json(t)["data"].([]any)
		if got.status != 200 || len(calls) != 2 {
			t.Fatalf("%d %s", got.status, got.body)
		}
		for _, c := range calls {
			if p := c.(map[string]any)["phone"]; p != nil {
				t.Errorf("archived Bob's phone %v shown to an agent", p)
			}
		}
	})
	t.Run("wiped Heidi under C-8 is 404", func(t *testing.T) {
		for _, path := range []string{"/api/contacts/C-8", "/api/contacts/c-8.json", "/api/contacts/C-8/export"} {
			got := a.do(t, "GET", path, roles("auditor"), nil)
			if got.status != 404 || got.reason != "subject_not_found" || strings.Contains(string(got.body), "Heidi") {
				t.Errorf("%s: %d %s %s, want 404 subject_not_found", path, got.status, got.reason, got.body)
			}
		}
		// Heidi has no calls: an empty list confirms nobody and shows nothing.
		if got := a.do(t, "GET", "/api/contacts/C-8/calls", roles("auditor"), nil); got.status != 200 || string(got.body) != "{\"data\":[]}\n" {
			t.Errorf("C-8/calls: %d %q", got.status, got.body)
		}
	})
	t.Run("obliviated Eve under C-5 is 404", func(t *testing.T) {
		got := a.do(t, "GET", "/api/contacts/C-5", roles("auditor"), nil)
		if got.status != 404 || strings.Contains(string(got.body), "Eve") {
			t.Errorf("%d %s, want 404", got.status, got.body)
		}
	})
	t.Run("the canonical id is unchanged", func(t *testing.T) {
		got := a.do(t, "GET", "/api/contacts/c-1", roles("agent"), nil)
		if m := got.json(t); m["first_name"] != "Alice" || m["birth_year"] == nil || m["health_notes"] != nil {
			t.Errorf("Alice as an agent: %v", m)
		}
		if got.reason != "redacted" {
			t.Errorf("reason %q", got.reason)
		}
	})
	t.Run("both allow: a supervisor in archive mode", func(t *testing.T) {
		// c-2's bits 0-2 are archived (shown in archive mode); the unknown
		// spelling C-2 has bits 0-1 in grace and bit 2 expired (no grace):
		// the answer shows bits 0-1 only.
		direct := a.do(t, "GET", "/api/contacts/c-2", archive, nil).json(t)
		if direct["first_name"] != "Bob" || direct["birth_year"] == nil {
			t.Fatalf("c-2 in archive mode: %v", direct)
		}
		m := a.do(t, "GET", "/api/contacts/C-2", archive, nil).json(t)
		if m["first_name"] != "Bob" || m["birth_year"] != nil {
			t.Errorf("C-2 in archive mode: first_name %v birth_year %v, want Bob and hidden", m["first_name"], m["birth_year"])
		}
	})
	t.Run("a known subject answered as another", func(t *testing.T) {
		// Dan (c-4: bits 0-1 active, 2 expired) answered with Alice's
		// record (a merged record, a redirect): only what both allow.
		alice, _ := a.crm.Contact("c-1")
		b, _ := json.Marshal(alice)
		m := a.do(t, "GET", "/api/contacts/c-4", roles("agent"), func() (int, string) { return 200, string(b) }).json(t)
		if m["first_name"] != "Alice" || m["birth_year"] != nil {
			t.Errorf("first_name %v birth_year %v, want Alice and hidden (Dan's bit 2 is expired)", m["first_name"], m["birth_year"])
		}
	})
	t.Run("a write under another spelling is refused", func(t *testing.T) {
		for _, path := range []string{"/api/contacts/C-2", "/api/contacts/c-2.json"} {
			got := a.do(t, "PATCH", path, roles("agent"), nil)
			if got.status != 400 || got.reason != "subject_id_not_canonical" {
				t.Errorf("PATCH %s: %d %s, want 400 subject_id_not_canonical", path, got.status, got.reason)
			}
		}
	})
}

// TestAnswersThatDoNotConfirm: what a confirmed route does with answers
// that state no id, two ids, or one gdprgate cannot use.
func TestAnswersThatDoNotConfirm(t *testing.T) {
	a := newAliases(t, nil)
	cases := []struct {
		name, path string
		status     int
		body       string
		want       int
		reason     string
		hidden     string
	}{
		{"a 2xx without the id", "/api/contacts/c-1", 200, `{"first_name":"Alice"}`, 502, "subject_missing", ""},
		{"a 2xx with a null id", "/api/contacts/c-1", 200, `{"id":null,"first_name":"Alice"}`, 502, "subject_missing", ""},
		{"an error without the id hides every mapped field", "/api/contacts/c-1", 409, `{"error":"conflict","first_name":"Alice"}`, 409, "redacted", "first_name"},
		{"an error stating the id", "/api/contacts/c-1", 409, `{"error":"conflict","id":"c-1","first_name":"Alice"}`, 409, "nothing_redacted", ""},
		{"two ids", "/api/contacts/c-1", 200, `{"id":"c-1","ID":"c-2","first_name":"Bob"}`, 502, "subject_ambiguous", ""},
		{"an id that is an object", "/api/contacts/c-1", 200, `{"id":{"x":1},"first_name":"Alice"}`, 502, "body_rejected", ""},
		{"an id too long", "/api/contacts/c-1", 200, `{"id":"` + strings.Repeat("c", 300) + `","first_name":"Alice"}`, 502, "subject_invalid", ""},
		{"a list item without the id is hidden", "/api/contacts/c-1/calls", 200, `{"data":[{"contact_id":"c-1","phone":"1"},{"phone":"2"}]}`, 200, "redacted", "data.1.phone"},
		{"an empty list", "/api/contacts/c-1/calls", 200, `{"data":[]}`, 200, "nothing_redacted", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := a.do(t, "GET", tc.path, roles("agent"), func() (int, string) { return tc.status, tc.body })
			if got.status != tc.want || got.reason != tc.reason {
				t.Fatalf("%d %s %s, want %d %s", got.status, got.reason, got.body, tc.want, tc.reason)
			}
			if tc.want == 502 && strings.Contains(string(got.body), "Alice") {
				t.Errorf("refused answer carries the record: %s", got.body)
			}
			if tc.hidden != "" {
				var doc any
				if err := json.Unmarshal(got.body, &doc); err != nil {
					t.Fatal(err)
				}
				v := doc
				for _, k := range strings.Split(tc.hidden, ".") {
					switch x := v.(type) {
					case map[string]any:
						v = x[k]
					case []any:
						v = x[k[0]-'0']
					}
				}
				if v != nil {
					t.Errorf("%s = %v, want hidden", tc.hidden, v)
				}
			}
		})
	}
}

// TestOriginsComeFromTheStatedID: a contact gdprgate first meets under
// another spelling gets its origin recorded under the id the answer states,
// never under the request's spelling.
func TestOriginsComeFromTheStatedID(t *testing.T) {
	a := newAliases(t, nil)
	created := a.sc.Now.Add(-48 * time.Hour)
	a.crm.AddContact(crm.Contact{ID: "c-new", FirstName: "Olivia", CreatedAt: created.Format(time.RFC3339)})
	if got := a.do(t, "GET", "/api/contacts/C-NEW", roles("agent"), nil); got.status != 200 {
		t.Fatalf("%d %s", got.status, got.body)
	}
	ctx := context.Background()
	facts := func(id string) cache.Facts {
		f, err := a.sc.App.Store.Facts(ctx, model.SubjectRef{Entity: "contact", ID: id}, a.sc.Now)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	deadline := time.Now().Add(20 * time.Second)
	for facts("c-new").Origin != cache.OriginStated {
		if time.Now().After(deadline) {
			t.Fatalf("c-new's origin: %v, want stated from created_at", facts("c-new").Origin)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if o := facts("C-NEW").Origin; o != cache.OriginNone {
		t.Errorf("the spelling C-NEW got an origin (%v)", o)
	}
}

// TestIDPatternRefusesOtherSpellings: subject.id_pattern admits only the
// backend's canonical spelling, whatever the subject's source.
func TestIDPatternRefusesOtherSpellings(t *testing.T) {
	a := newAliases(t, func(c *config.Config) {
		for i := range c.Routes {
			if s := c.Routes[i].Subject; s != nil && s.From != config.FromItem && s.From != config.FromResponseBody {
				s.IDPattern = "c-[0-9]+"
			}
		}
		c.Routes = append(c.Routes,
			config.Route{Name: "calls-by-query", Method: "GET", Path: "/api/calls", Kind: "read",
				Subject: &config.SubjectSpec{Entity: "contact", From: config.FromQuery, Name: "contact_id", IDPattern: "c-[0-9]+"}},
			config.Route{Name: "calls-by-header", Method: "GET", Path: "/api/my/calls", Kind: "read",
				Subject: &config.SubjectSpec{Entity: "contact", From: config.FromHeader, Name: "x-contact-id", IDPattern: "c-[0-9]+"}})
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
	})
	cases := []struct {
		name, method, path string
		h                  map[string]string
		body               string
		want               int
	}{
		{"canonical path id", "GET", "/api/contacts/c-2", roles("agent"), "", 200},
		{"encoded canonical id", "GET", "/api/contacts/c%2D2", roles("agent"), "", 200},
		{"upper case", "GET", "/api/contacts/C-2", roles("agent"), "", 400},
		{"format suffix", "GET", "/api/contacts/c-2.json", roles("agent"), "", 400},
		{"leading zero is not refused by this pattern", "GET", "/api/contacts/c-02", roles("agent"), "", 200},
		{"query", "GET", "/api/calls?contact_id=C-1", roles("agent"), "", 400},
		{"header", "GET", "/api/my/calls", map[string]string{"x-gdpr-roles": "agent", "x-contact-id": "C-1"}, "", 400},
		{"body", "POST", "/api/outbound/calls", map[string]string{"x-gdpr-roles": "marketer", "content-type": "application/json"}, `{"contact_id":"C-1","type":"campaign"}`, 400},
		{"body, canonical", "POST", "/api/outbound/calls", map[string]string{"x-gdpr-roles": "marketer", "content-type": "application/json"}, `{"contact_id":"c-1","type":"campaign"}`, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, responseOnly := range []bool{false, true} {
				if responseOnly && tc.body != "" {
					continue // ext_proc has no request body
				}
				ex := a.g.Check(context.Background(), &gate.Request{Method: tc.method, Path: tc.path, Body: []byte(tc.body),
					ResponseOnly: responseOnly, Header: func(n string) string { return tc.h[n] }})
				status := ex.Verdict.Status
				if ex.Verdict.Allow {
					status = 200
				}
				if status != tc.want || tc.want == 400 && ex.Verdict.Reason != "subject_id_not_canonical" {
					t.Errorf("response only %v: %d %s, want %d", responseOnly, status, ex.Verdict.Reason, tc.want)
				}
			}
		})
	}
}
