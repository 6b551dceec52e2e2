package httpauthz

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/policy/model"
)

// TestHandlerReadsTheCanonicalRequest: the HTTP authz mode reads the
// original request (from its own path, X-Original-* or X-Forwarded-*) the
// one way every other front-end reads it (issue 10 §1, §2).
func TestHandlerReadsTheCanonicalRequest(t *testing.T) {
	sc := apptest.New(t, apptest.Options{Configure: func(c *config.Config) {
		c.Routes = append(c.Routes, config.Route{Name: "calls-by-query", Method: "GET", Path: "/api/calls", Kind: "read",
			Subject: &config.SubjectSpec{Entity: "contact", From: config.FromQuery, Name: "contact_id"}})
	}})
	ref := model.SubjectRef{Entity: "contact", ID: "c-8"}
	apptest.QueueWipe(t, sc.App.Store, ref, sc.Now)
	h := New(sc.App.Gate, Options{PathPrefix: "/authz", Logger: quietLogger()})
	sup := map[string]string{"X-Gdpr-Roles": "supervisor"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{"X-Gdpr-Roles": "marketer"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name, method, path string
		header             map[string]string
		body               string
		want               int
		wantStatus, reason string
	}{
		{"envoy: wiped subject, encoded id", "GET", "/authz/api/contacts/c%2D8", sup, "", 404, "404", "subject_not_found"},
		{"envoy: wiped subject, upper-case route", "GET", "/authz/API/Contacts/c-8;x=1", sup, "", 404, "404", "subject_not_found"},
		{"envoy: encoded slash", "GET", "/authz/api/contacts/c%2F8", sup, "", 400, "400", "encoded_slash"},
		{"envoy: override without identity", "POST", "/authz/api/contacts/c-1", map[string]string{"X-HTTP-Method-Override": "GET"}, "", 401, "401", "unauthenticated"},
		{"envoy: duplicate contact_id", "POST", "/authz/api/outbound/calls", with(), `{"contact_id":"c-1","type":"campaign","contact_id":"c-4"}`, 400, "400", "ambiguous_body"},
		{"envoy: CONTACT_ID alone", "POST", "/authz/api/outbound/calls", with(), `{"CONTACT_ID":"c-4","type":"campaign"}`, 403, "403", "communication_not_permitted"},
		{"envoy: repeated query subject", "GET", "/authz/api/calls?contact_id=c-1&contact_id=c-8", sup, "", 400, "400", "ambiguous_query_parameter"},
		{"nginx: wiped subject, dot segments", "GET", "/authz", with("X-Gdpr-Roles", "supervisor", "X-Original-URI", "/api/x/../contacts/%63-8"), "", 403, "404", "subject_not_found"},
		{"nginx: override without identity", "POST", "/authz", map[string]string{"X-Original-Method": "POST", "X-Original-URI": "/api/contacts/c-1?_method=GET"}, "", 401, "401", "unauthenticated"},
		{"forwarded: wiped subject, merged slashes", "GET", "/authz", with("X-Gdpr-Roles", "supervisor", "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api//contacts//c-8"), "", 404, "404", "subject_not_found"},
		{"forwarded: double encoding", "GET", "/authz", with("X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/contacts/c%252D8"), "", 400, "400", "double_encoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, nil)
			if tt.body != "" {
				req = httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			res := rec.Result()
			if res.StatusCode != tt.want || res.Header.Get(HeaderStatus) != tt.wantStatus || res.Header.Get(HeaderReason) != tt.reason {
				t.Errorf("= %d %s %s (%s), want %d %s %s", res.StatusCode, res.Header.Get(HeaderStatus), res.Header.Get(HeaderReason), rec.Body,
					tt.want, tt.wantStatus, tt.reason)
			}
		})
	}
}

// TestAllowListsTheClientsOwnHeadersForRemoval: Envoy's HTTP ext_authz
// removes what an allow lists in X-Envoy-Auth-Headers-To-Remove; every
// x-gdpr-* header the client sent is there, except the ones the answer sets.
func TestAllowListsTheClientsOwnHeadersForRemoval(t *testing.T) {
	sc := newScenario(t)
	h := New(sc.gate, Options{PathPrefix: "/authz", Logger: quietLogger()})
	req := httptest.NewRequest("GET", "/authz/api/contacts/c-1", nil)
	for k, v := range map[string]string{"X-Gdpr-Roles": "agent", "X-Gdpr-Mode": "archive", "X-Gdpr-Project": "p-1", "X-Gdpr-Decision-Id": "forged", "x_gdpr_caller": "m"} {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	got := rec.Header().Get(HeaderRemove)
	for _, want := range []string{"x-gdpr-roles", "x-gdpr-mode", "x-gdpr-project", "x_gdpr_caller"} {
		if !strings.Contains(got, want) {
			t.Errorf("%s = %q, lacks %s", HeaderRemove, got, want)
		}
	}
	if strings.Contains(got, "x-gdpr-decision-id") {
		t.Errorf("%s = %q removes the decision id the answer sets", HeaderRemove, got)
	}
}
