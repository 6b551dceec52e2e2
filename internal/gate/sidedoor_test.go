package gate_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/gate"
	"github.com/gdprgate/gdprgate/policy/model"
)

// sideDoors is gdprgate in front of the reference scenario, with extra
// routes whose subject comes from a query parameter and from a header, and
// the example CRM's data to answer with.
type sideDoors struct {
	g   *gate.Gate
	crm *crm.Server
}

func newSideDoors(t *testing.T) *sideDoors {
	t.Helper()
	sc := apptest.New(t, apptest.Options{Configure: func(c *config.Config) {
		c.Routes = append(c.Routes,
			config.Route{Name: "calls-by-query", Method: "GET", Path: "/api/calls", Kind: "read",
				Subject: &config.SubjectSpec{Entity: "contact", From: config.FromQuery, Name: "contact_id"},
				Fields:  map[string]string{"data.#.phone": "contact"}},
			config.Route{Name: "calls-by-header", Method: "GET", Path: "/api/my/calls", Kind: "read",
				Subject: &config.SubjectSpec{Entity: "contact", From: config.FromHeader, Name: "x-contact-id"},
				Fields:  map[string]string{"data.#.phone": "contact"}})
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
	}})
	return &sideDoors{g: sc.App.Gate, crm: crm.New(sc.Now)}
}

type req struct {
	method, path string
	header       map[string]string
	body         string
}

func (s *sideDoors) check(t *testing.T, r req) *gate.Exchange {
	t.Helper()
	method := r.method
	if method == "" {
		method = "GET"
	}
	h := map[string]string{}
	for k, v := range r.header {
		h[strings.ToLower(k)] = v
	}
	return s.g.Check(context.Background(), &gate.Request{Method: method, Path: r.path, Body: []byte(r.body),
		Header: func(n string) string { return h[n] }})
}

// contactAs answers the exchange with contact id's record as the CRM holds
// it and returns what the client gets.
func (s *sideDoors) contactAs(t *testing.T, ex *gate.Exchange, id string) map[string]any {
	t.Helper()
	c, ok := s.crm.Contact(id)
	if !ok {
		t.Fatalf("no contact %s", id)
	}
	body, _ := json.Marshal(c)
	rw := s.g.Rewrite(context.Background(), ex, &gate.Response{Status: 200, Body: body,
		Header: contentType("application/json")})
	if rw.Replace {
		t.Fatalf("response replaced: %d %s", rw.Status, rw.Body)
	}
	if rw.Modified {
		body = rw.Body
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

var agent = map[string]string{"x-gdpr-roles": "agent"}

// TestPathVariantsAreTheMappedRoute: every spelling of Bob's URL that a
// backend router sends to Bob is judged as Bob (archived: the agent sees
// none of his contact data), never as an unmapped route or an unknown id.
func TestPathVariantsAreTheMappedRoute(t *testing.T) {
	s := newSideDoors(t)
	for _, path := range []string{
		"/api/contacts/c-2",
		"/api/contacts/c%2D2",
		"/api/contacts/c%2d2",
		"/api/contacts/%63-2",
		"/api//contacts/c-2",
		"//api/contacts/c-2",
		"/api/contacts/./c-2",
		"/api/x/../contacts/c-2",
		"/api/x/%2e%2e/contacts/c-2",
		"/api/x/..;/contacts/c-2",
		"/API/Contacts/c-2",
		"/api/contacts/c-2;jsessionid=1",
		"/api/%63ontacts/c-2",
		"/api/contacts/c-2/",
		`/api\contacts\c-2`,
		"http://crm.local/api/contacts/c-2",
	} {
		t.Run(path, func(t *testing.T) {
			ex := s.check(t, req{path: path, header: agent})
			if !ex.Verdict.Allow || ex.RouteName() != "contact" {
				t.Fatalf("allow %v route %q (%s), want the contact route", ex.Verdict.Allow, ex.RouteName(), ex.Verdict.Reason)
			}
			got := s.contactAs(t, ex, "c-2")
			for _, f := range []string{"first_name", "last_name", "email", "birth_year", "health_notes"} {
				if got[f] != nil {
					t.Errorf("%s = %v: archived Bob shown to an agent", f, got[f])
				}
			}
		})
	}
}

// TestAmbiguousTargetsAreRefused: what cannot be read one way is a 400.
func TestAmbiguousTargetsAreRefused(t *testing.T) {
	s := newSideDoors(t)
	cases := []struct{ path, reason string }{
		{"/api/contacts/c%2F2", "encoded_slash"},
		{"/api/contacts/c%5C2", "encoded_backslash"},
		{"/api/contacts/c-2%00", "encoded_nul"},
		{"/api/contacts/c%252D2", "double_encoding"},
		{"/api/contacts/%C0%AE%C0%AE", "invalid_utf8"},
		{"/api/contacts/c%0A2", "control_character"},
		{"/api/contacts/c%zz", "bad_percent_encoding"},
		{"/api/contacts/c-2#x", "fragment_in_target"},
		{"/api/contacts/" + strings.Repeat("c", 257), "subject_id_too_long"},
		{"/unmapped/%2F", "encoded_slash"},
	}
	for _, tc := range cases {
		ex := s.check(t, req{path: tc.path, header: agent})
		if ex.Verdict.Allow || ex.Verdict.Status != 400 || ex.Verdict.Reason != tc.reason {
			t.Errorf("%s: allow %v status %d reason %q, want 400 %s", tc.path, ex.Verdict.Allow, ex.Verdict.Status, ex.Verdict.Reason, tc.reason)
		}
	}
	// The bound is configurable.
	sc := apptest.New(t, apptest.Options{Configure: func(c *config.Config) { c.Limits.MaxIDBytes = 3 }})
	ex := sc.App.Gate.Check(context.Background(), &gate.Request{Method: "GET", Path: "/api/contacts/c-12",
		Header: func(n string) string { return agent[n] }})
	if ex.Verdict.Status != 400 || ex.Verdict.Reason != "subject_id_too_long" {
		t.Errorf("limits.max_id_bytes 3: %d %s", ex.Verdict.Status, ex.Verdict.Reason)
	}
}

// TestWipedSubjectUnderAnotherSpelling: a wiped subject is 404 however its
// id is encoded.
func TestWipedSubjectUnderAnotherSpelling(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	ref := model.SubjectRef{Entity: "contact", ID: "c-8"}
	apptest.QueueWipe(t, sc.App.Store, ref, sc.Now)
	for _, path := range []string{"/api/contacts/c-8", "/api/contacts/c%2D8", "/api/contacts/%63-8", "/API/CONTACTS/c-8;x"} {
		ex := sc.App.Gate.Check(context.Background(), &gate.Request{Method: "GET", Path: path,
			Header: func(n string) string { return map[string]string{"x-gdpr-roles": "supervisor"}[n] }})
		if ex.Verdict.Allow || ex.Verdict.Status != 404 {
			t.Errorf("%s: allow %v status %d %s, want 404", path, ex.Verdict.Allow, ex.Verdict.Status, ex.Verdict.Reason)
		}
	}
}

// TestMethodOverrides: a POST that asks to be a GET is judged as the GET.
func TestMethodOverrides(t *testing.T) {
	s := newSideDoors(t)
	override := func(kv ...string) map[string]string {
		h := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			h[kv[i]] = kv[i+1]
		}
		return h
	}
	cases := []struct {
		name   string
		r      req
		status int
		reason string
		route  string
	}{
		{"X-HTTP-Method-Override without identity", req{method: "POST", path: "/api/contacts/c-1", header: override("x-http-method-override", "GET")}, 401, "unauthenticated", "contact"},
		{"X-HTTP-Method as agent", req{method: "POST", path: "/api/contacts/c-2", header: override("x-http-method", "GET", "x-gdpr-roles", "agent")}, 200, "", "contact"},
		{"X-Method-Override as agent", req{method: "POST", path: "/api/contacts/c-2", header: override("x-method-override", "get", "x-gdpr-roles", "agent")}, 200, "", "contact"},
		{"_method query as agent", req{method: "POST", path: "/api/contacts/c-2?_method=GET", header: agent}, 200, "", "contact"},
		{"_method form field as agent", req{method: "POST", path: "/api/contacts/c-2", body: "_method=GET",
			header: override("content-type", "application/x-www-form-urlencoded", "x-gdpr-roles", "agent")}, 200, "", "contact"},
		{"form POST whose body gdprgate has not seen", req{method: "POST", path: "/api/contacts/c-2",
			header: override("content-type", "application/x-www-form-urlencoded", "content-length", "11", "x-gdpr-roles", "agent")}, 400, "method_override_unverifiable", ""},
		{"overrides that disagree", req{method: "POST", path: "/api/contacts/c-2?_method=PUT", header: override("x-http-method-override", "GET", "x-gdpr-roles", "agent")}, 400, "ambiguous_method_override", ""},
		{"override on a GET", req{method: "GET", path: "/api/contacts/c-2", header: override("x-http-method-override", "DELETE", "x-gdpr-roles", "agent")}, 400, "ambiguous_method_override", ""},
		{"lower-case method", req{method: "get", path: "/api/contacts/c-2", header: agent}, 200, "", "contact"},
		{"plain POST to an unmapped path passes", req{method: "POST", path: "/api/notes", header: agent}, 200, "unmapped", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ex := s.check(t, tc.r)
			status := ex.Verdict.Status
			if ex.Verdict.Allow {
				status = 200
			}
			if status != tc.status || tc.reason != "" && ex.Verdict.Reason != tc.reason || ex.RouteName() != tc.route {
				t.Fatalf("status %d reason %q route %q, want %d %q %q", status, ex.Verdict.Reason, ex.RouteName(), tc.status, tc.reason, tc.route)
			}
			if tc.status == 200 && tc.route == "contact" {
				if got := s.contactAs(t, ex, "c-2"); got["first_name"] != nil {
					t.Errorf("archived Bob shown to an agent through an override: %v", got["first_name"])
				}
			}
		})
	}
}

// TestSubjectReadingIsUnambiguous: the outbound call's subject and type
// are read one way or refused (§2 of issue 10).
func TestSubjectReadingIsUnambiguous(t *testing.T) {
	s := newSideDoors(t)
	marketer := map[string]string{"x-gdpr-roles": "marketer", "content-type": "application/json"}
	cases := []struct {
		name   string
		r      req
		status int
		reason string
	}{
		{"c-1 campaign is permitted", req{method: "POST", path: "/api/outbound/calls", body: `{"contact_id":"c-1","type":"campaign"}`}, 200, ""},
		{"c-4 campaign is not", req{method: "POST", path: "/api/outbound/calls", body: `{"contact_id":"c-4","type":"campaign"}`}, 403, "communication_not_permitted"},
		{"duplicate contact_id", req{method: "POST", path: "/api/outbound/calls", body: `{"contact_id":"c-1","type":"campaign","contact_id":"c-4"}`}, 400, "ambiguous_body"},
		{"CONTACT_ID beside contact_id", req{method: "POST", path: "/api/outbound/calls", body: `{"contact_id":"c-1","type":"campaign","CONTACT_ID":"c-4"}`}, 400, "ambiguous_body"},
		{"CONTACT_ID alone is c-4", req{method: "POST", path: "/api/outbound/calls", body: `{"CONTACT_ID":"c-4","type":"campaign"}`}, 403, "communication_not_permitted"},
		{"duplicate type", req{method: "POST", path: "/api/outbound/calls", body: `{"contact_id":"c-4","type":"adhoc","type":"campaign"}`}, 400, "ambiguous_body"},
		{"escaped key", req{method: "POST", path: "/api/outbound/calls", body: `{"contact_id":"c-4","type":"adhoc","typ\u0065":"campaign"}`}, 400, "ambiguous_body"},
		{"escaped key alone is read", req{method: "POST", path: "/api/outbound/calls", body: `{"contact_id":"c-4","typ\u0065":"campaign"}`}, 403, "communication_not_permitted"},
		{"escaped id is read", req{method: "POST", path: "/api/outbound/calls", body: `{"contact_id":"c\u002d4","type":"campaign"}`}, 403, "communication_not_permitted"},
		{"query beside the body (Rails merges it over)", req{method: "POST", path: "/api/outbound/calls?contact_id=c-4", body: `{"contact_id":"c-1","type":"campaign"}`}, 400, "ambiguous_query_parameter"},
		{"query type beside the body", req{method: "POST", path: "/api/outbound/calls?type=campaign", body: `{"contact_id":"c-1","type":"adhoc"}`}, 400, "ambiguous_query_parameter"},
		{"trailing data", req{method: "POST", path: "/api/outbound/calls", body: `{"contact_id":"c-1","type":"campaign"}{"contact_id":"c-4"}`}, 400, "invalid_body"},
		{"id as an object", req{method: "POST", path: "/api/outbound/calls", body: `{"contact_id":{"id":"c-4"},"type":"campaign"}`}, 400, "subject_invalid"},
		{"id too long", req{method: "POST", path: "/api/outbound/calls", body: `{"contact_id":"` + strings.Repeat("c", 300) + `","type":"campaign"}`}, 400, "subject_id_too_long"},
		{"override to another route", req{method: "POST", path: "/api/outbound/calls?_method=GET", body: `{"contact_id":"c-1","type":"campaign"}`}, 200, "unmapped"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.r.header = marketer
			ex := s.check(t, tc.r)
			status := ex.Verdict.Status
			if ex.Verdict.Allow {
				status = 200
			}
			if status != tc.status || tc.reason != "" && ex.Verdict.Reason != tc.reason {
				t.Fatalf("status %d reason %q, want %d %q", status, ex.Verdict.Reason, tc.status, tc.reason)
			}
		})
	}
}

// TestWipedSubjectInTheBody: a wiped subject in an outbound request is
// refused however the body spells it.
func TestWipedSubjectInTheBody(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	ref := model.SubjectRef{Entity: "contact", ID: "c-1"}
	if err := sc.App.Store.EnqueueWipe(context.Background(), cache.WipeRecord{ID: "w-c1", Subject: ref, Status: cache.WipeQueued,
		CreatedAt: sc.Now, UpdatedAt: sc.Now}, audit.Entry{Time: sc.Now, Actor: "test", Action: "wipe.request"}); err != nil {
		t.Fatal(err)
	}
	h := map[string]string{"x-gdpr-roles": "marketer", "content-type": "application/json"}
	for _, body := range []string{`{"contact_id":"c-1","type":"campaign"}`, `{"Contact_Id":"c\u002d1","type":"campaign"}`} {
		ex := sc.App.Gate.Check(context.Background(), &gate.Request{Method: "POST", Path: "/api/outbound/calls", Body: []byte(body),
			Header: func(n string) string { return h[n] }})
		if ex.Verdict.Allow || ex.Verdict.Status != 404 {
			t.Errorf("%s: allow %v %d %s, want 404", body, ex.Verdict.Allow, ex.Verdict.Status, ex.Verdict.Reason)
		}
	}
}

// TestQueryAndHeaderSubjects: a subject named twice with different values
// is refused; a backend may act on either.
func TestQueryAndHeaderSubjects(t *testing.T) {
	s := newSideDoors(t)
	cases := []struct {
		name   string
		r      req
		status int
		reason string
	}{
		{"one query value", req{path: "/api/calls?contact_id=c-1", header: agent}, 200, ""},
		{"first and last differ", req{path: "/api/calls?contact_id=c-1&contact_id=c-2", header: agent}, 400, "ambiguous_query_parameter"},
		{"same value twice", req{path: "/api/calls?contact_id=c-1&contact_id=c%2D1", header: agent}, 200, ""},
		{"other case", req{path: "/api/calls?contact_id=c-1&Contact_ID=c-2", header: agent}, 400, "ambiguous_query_parameter"},
		{"array", req{path: "/api/calls?contact_id[]=c-2", header: agent}, 400, "ambiguous_query_parameter"},
		{"semicolon", req{path: "/api/calls?contact_id=c-1;contact_id=c-2", header: agent}, 400, "ambiguous_query_parameter"},
		{"missing", req{path: "/api/calls?x=1", header: agent}, 400, "subject_missing"},
		{"control character", req{path: "/api/calls?contact_id=c-1%0A", header: agent}, 400, "control_character"},
		{"header", req{path: "/api/my/calls", header: map[string]string{"x-gdpr-roles": "agent", "x-contact-id": "c-1"}}, 200, ""},
		{"repeated header", req{path: "/api/my/calls", header: map[string]string{"x-gdpr-roles": "agent", "x-contact-id": "c-1,c-2"}}, 400, "ambiguous_header"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ex := s.check(t, tc.r)
			status := ex.Verdict.Status
			if ex.Verdict.Allow {
				status = 200
			}
			if status != tc.status || tc.reason != "" && ex.Verdict.Reason != tc.reason {
				t.Fatalf("status %d reason %q, want %d %q", status, ex.Verdict.Reason, tc.status, tc.reason)
			}
		})
	}
}

// TestProjectHeaderIgnoredUnderJWT: with identity from a verified JWT (and
// the roles header not trusted) the project header counts for nothing, like
// the roles header; where headers are trusted a repeated one is refused.
func TestProjectHeaderIgnoredUnderJWT(t *testing.T) {
	const secret = "a-test-secret-of-at-least-32-bytes!!"
	t.Setenv("TEST_GATE_JWT_SECRET", secret)
	sc := apptest.New(t, apptest.Options{Configure: func(c *config.Config) {
		c.Identity.JWT = &config.JWTConfig{HS256SecretEnv: "TEST_GATE_JWT_SECRET"}
	}})
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u1", "exp": time.Now().Add(time.Hour).Unix(),
		"roles": []string{"agent"}}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]string{"authorization": "Bearer " + tok, "x-gdpr-project": "p-1,p-2"}
	ex := sc.App.Gate.Check(context.Background(), &gate.Request{Method: "POST", Path: "/api/outbound/calls",
		Body: []byte(`{"contact_id":"c-1","type":"adhoc"}`), Header: func(n string) string { return h[n] }})
	if !ex.Verdict.Allow {
		t.Errorf("JWT caller with an untrusted project header: %d %s, want allowed (header ignored)", ex.Verdict.Status, ex.Verdict.Reason)
	}

	s := newSideDoors(t)
	ex = s.check(t, req{method: "POST", path: "/api/outbound/calls", body: `{"contact_id":"c-1","type":"adhoc"}`,
		header: map[string]string{"x-gdpr-roles": "agent", "x-gdpr-project": "p-1,p-2"}})
	if ex.Verdict.Status != 400 || ex.Verdict.Reason != "ambiguous_header" {
		t.Errorf("trusted, repeated project header: %d %s, want 400 ambiguous_header", ex.Verdict.Status, ex.Verdict.Reason)
	}
}

// TestResponsePlanOfAnUnseenFormOverride: ext_proc never has the request
// body; a form POST to a path mapped for GET is planned as that GET (the
// request decision was made with the body, or refused), so an override in
// the body cannot get the answer out unredacted.
func TestResponsePlanOfAnUnseenFormOverride(t *testing.T) {
	s := newSideDoors(t)
	h := map[string]string{"x-gdpr-roles": "agent", "content-type": "application/x-www-form-urlencoded", "content-length": "11"}
	ex := s.g.Check(context.Background(), &gate.Request{Method: "POST", Path: "/api/contacts/c-2", ResponseOnly: true,
		Header: func(n string) string { return h[n] }})
	if !ex.Verdict.Allow || ex.RouteName() != "contact" {
		t.Fatalf("allow %v route %q (%s), want the contact route's plan", ex.Verdict.Allow, ex.RouteName(), ex.Verdict.Reason)
	}
	if got := s.contactAs(t, ex, "c-2"); got["first_name"] != nil {
		t.Errorf("archived Bob in clear: %v", got["first_name"])
	}
}
