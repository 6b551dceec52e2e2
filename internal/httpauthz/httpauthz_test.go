package httpauthz

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandlerDecidesEachProxyConvention(t *testing.T) {
	sc := newScenario(t)
	authz := New(sc.gate, Options{PathPrefix: "/authz", Logger: quietLogger()})
	noPrefix := New(sc.gate, Options{Logger: quietLogger()})

	agent := map[string]string{"X-Gdpr-Roles": "agent"}
	with := func(base map[string]string, kv ...string) map[string]string {
		h := map[string]string{}
		for k, v := range base {
			h[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			h[kv[i]] = kv[i+1]
		}
		return h
	}
	bigBody := `{"contact_id":"c-1","type":"adhoc","pad":"` + strings.Repeat("x", MaxBodyBytes) + `"}`

	tests := []struct {
		name    string
		handler http.Handler
		method  string
		path    string
		header  map[string]string
		body    string
		// want is the HTTP status of the answer, wantStatus its
		// X-Gdpr-Status (the gate's real status), wantReason X-Gdpr-Reason.
		want       int
		wantStatus string
		wantReason string
		wantHeader map[string]string
	}{
		// Envoy HTTP ext_authz: original method, path appended to the prefix.
		{name: "envoy agent reads a contact", handler: authz, method: "GET", path: "/authz/api/contacts/c-1", header: agent,
			want: 200, wantStatus: "200", wantReason: "allowed", wantHeader: map[string]string{"X-Gdpr-Coverage": "blue"}},
		{name: "envoy obliviated subject is 404", handler: authz, method: "GET", path: "/authz/api/contacts/c-5", header: agent,
			want: 404, wantStatus: "404", wantReason: "subject_not_found"},
		{name: "envoy without roles is 401", handler: authz, method: "GET", path: "/authz/api/contacts/c-1",
			want: 401, wantStatus: "401", wantReason: "unauthenticated", wantHeader: map[string]string{"Www-Authenticate": `Bearer realm="gdprgate"`}},
		{name: "envoy export by agent is 403", handler: authz, method: "GET", path: "/authz/api/contacts/c-1/export", header: agent,
			want: 403, wantStatus: "403", wantReason: "export_not_permitted"},
		{name: "envoy unmapped route passes", handler: authz, method: "GET", path: "/authz/version",
			want: 200, wantStatus: "200", wantReason: "unmapped"},
		{name: "envoy path beats forged original headers", handler: authz, method: "GET", path: "/authz/api/contacts/c-5",
			header: with(agent, "X-Original-URI", "/version", "X-Forwarded-Uri", "/version"), want: 404, wantStatus: "404", wantReason: "subject_not_found"},
		{name: "envoy forwarded body names a permitted subject", handler: authz, method: "POST", path: "/authz/api/outbound/calls", header: agent,
			body: `{"contact_id":"c-1","type":"adhoc"}`, want: 200, wantStatus: "200", wantReason: "allowed"},
		{name: "envoy forwarded body names a subject without legal ground", handler: authz, method: "POST", path: "/authz/api/outbound/calls", header: agent,
			body: `{"contact_id":"c-4","type":"campaign"}`, want: 403, wantStatus: "403", wantReason: "communication_not_permitted"},
		{name: "envoy without with_request_body fails closed", handler: authz, method: "POST", path: "/authz/api/outbound/calls", header: agent,
			want: 400, wantStatus: "400", wantReason: "subject_missing"},
		{name: "envoy body over the limit is not used and fails closed", handler: authz, method: "POST", path: "/authz/api/outbound/calls", header: agent,
			body: bigBody, want: 400, wantStatus: "400", wantReason: "subject_missing"},

		// nginx auth_request: X-Original-*; denials other than 401 become 403.
		{name: "nginx agent reads a contact", handler: authz, method: "GET", path: "/authz",
			header: with(agent, "X-Original-Method", "GET", "X-Original-URI", "/api/contacts/c-1"),
			want:   200, wantStatus: "200", wantReason: "allowed", wantHeader: map[string]string{"X-Gdpr-Coverage": "blue"}},
		{name: "nginx obliviated subject is 403 carrying 404", handler: authz, method: "GET", path: "/authz",
			header: with(agent, "X-Original-Method", "GET", "X-Original-URI", "/api/contacts/c-5"),
			want:   403, wantStatus: "404", wantReason: "subject_not_found"},
		{name: "nginx without roles stays 401", handler: authz, method: "GET", path: "/authz",
			header: map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/api/contacts/c-1"},
			want:   401, wantStatus: "401", wantReason: "unauthenticated"},
		{name: "nginx outbound route without body fails closed", handler: authz, method: "POST", path: "/authz",
			header: with(agent, "X-Original-Method", "POST", "X-Original-URI", "/api/outbound/calls"),
			want:   403, wantStatus: "400", wantReason: "subject_missing"},
		{name: "nginx without method header uses the subrequest's", handler: authz, method: "GET", path: "/authz",
			header: with(agent, "X-Original-URI", "/api/contacts/c-1/export"), want: 403, wantStatus: "403", wantReason: "export_not_permitted"},
		{name: "nginx original headers beat forwarded ones", handler: authz, method: "GET", path: "/authz",
			header: with(agent, "X-Original-URI", "/api/contacts/c-5", "X-Forwarded-Uri", "/version"),
			want:   403, wantStatus: "404", wantReason: "subject_not_found"},
		{name: "nginx original URI that is not a path is refused", handler: authz, method: "GET", path: "/authz",
			header: with(agent, "X-Original-URI", "http://crm/api/contacts/c-5"), want: 403, wantStatus: "400", wantReason: "original_request_unknown"},

		// Caddy forward_auth and Traefik forwardAuth: X-Forwarded-*, real statuses.
		{name: "forwarded agent reads a contact", handler: authz, method: "GET", path: "/authz",
			header: with(agent, "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/contacts/c-1", "X-Forwarded-Host", "crm.example", "X-Forwarded-Proto", "https"),
			want:   200, wantStatus: "200", wantReason: "allowed", wantHeader: map[string]string{"X-Gdpr-Coverage": "blue"}},
		{name: "forwarded obliviated subject is 404", handler: authz, method: "GET", path: "/authz",
			header: with(agent, "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/contacts/c-5"),
			want:   404, wantStatus: "404", wantReason: "subject_not_found"},
		{name: "forwarded method is the original one", handler: authz, method: "GET", path: "/authz",
			header: with(agent, "X-Forwarded-Method", "POST", "X-Forwarded-Uri", "/api/outbound/emails"),
			want:   400, wantStatus: "400", wantReason: "subject_missing"},
		{name: "forwarded with body (traefik forwardBody)", handler: authz, method: "POST", path: "/authz",
			header: with(agent, "X-Forwarded-Method", "POST", "X-Forwarded-Uri", "/api/outbound/calls"), body: `{"contact_id":"c-1","type":"adhoc"}`,
			want: 200, wantStatus: "200", wantReason: "allowed"},
		{name: "trailing slash on the prefix still reads the headers", handler: authz, method: "GET", path: "/authz/",
			header: with(agent, "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/contacts/c-5"), want: 404, wantStatus: "404", wantReason: "subject_not_found"},

		// Misconfiguration fails closed instead of deciding about /authz itself.
		{name: "prefix alone without original headers is refused", handler: authz, method: "GET", path: "/authz", header: agent,
			want: 400, wantStatus: "400", wantReason: "original_request_unknown"},
		{name: "outside the prefix is not found", handler: authz, method: "GET", path: "/authzx/api/contacts/c-1", header: agent, want: 404},

		// Without a prefix the headers win when present, else the own path.
		{name: "no prefix uses original headers", handler: noPrefix, method: "GET", path: "/",
			header: with(agent, "X-Original-URI", "/api/contacts/c-5"), want: 403, wantStatus: "404", wantReason: "subject_not_found"},
		{name: "no prefix uses the own path", handler: noPrefix, method: "GET", path: "/api/contacts/c-1", header: agent,
			want: 200, wantStatus: "200", wantReason: "allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			if tt.body == "" {
				req = httptest.NewRequest(tt.method, tt.path, nil)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			tt.handler.ServeHTTP(rec, req)
			res := rec.Result()
			if res.StatusCode != tt.want {
				t.Fatalf("status = %d, want %d; body %s", res.StatusCode, tt.want, rec.Body)
			}
			if got := res.Header.Get(HeaderStatus); got != tt.wantStatus {
				t.Errorf("%s = %q, want %q", HeaderStatus, got, tt.wantStatus)
			}
			if got := res.Header.Get(HeaderReason); got != tt.wantReason {
				t.Errorf("%s = %q, want %q", HeaderReason, got, tt.wantReason)
			}
			for k, v := range tt.wantHeader {
				if got := res.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if tt.wantStatus == "" {
				return
			}
			if tt.want == 200 {
				if res.Header.Get("X-Gdpr-Decision-Id") == "" {
					t.Error("an allow carries no x-gdpr-decision-id for the upstream request")
				}
				if rec.Body.Len() != 0 {
					t.Errorf("an allow has a body: %s", rec.Body)
				}
				return
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content-type of a denial = %q, want application/json", ct)
			}
			var body struct{ Error, Message string }
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("denial body is not JSON: %v: %s", err, rec.Body)
			}
			if body.Error != tt.wantReason || body.Message == "" {
				t.Errorf("denial body = %+v, want error %q with a message", body, tt.wantReason)
			}
		})
	}
}

func TestTokenKeepsOnlyHeaderAndJSONSafeCharacters(t *testing.T) {
	tests := []struct{ in, want string }{
		{"subject_not_found", "subject_not_found"},
		{"Export_Not-Permitted.v2", "export_not-permitted.v2"},
		{`bad"reason\` + "\r\nx-injected: 1", "badreasonx-injected1"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := token(tt.in); got != tt.want {
			t.Errorf("token(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestAllowOnRouteNeedingRedactionWarnsOncePerRoute(t *testing.T) {
	sc := newScenario(t)
	var logs strings.Builder
	h := New(sc.gate, Options{PathPrefix: "/authz", Logger: slog.New(slog.NewTextHandler(&logs, nil))})

	for _, path := range []string{"/authz/api/contacts/c-1", "/authz/api/contacts/c-2", "/authz/version"} {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("X-Gdpr-Roles", "supervisor")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("GET %s = %d, want 200: %s", path, rec.Code, rec.Body)
		}
	}
	// Two allows on the contact route (it maps fields), one unmapped.
	if n := strings.Count(logs.String(), "needs response redaction"); n != 1 {
		t.Errorf("warnings about unredacted responses = %d, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "route=contact\n") {
		t.Errorf("the warning does not name the route:\n%s", logs.String())
	}
}

// TestConfirmedRoutesInThisMode: the HTTP authz mode never sees the answer,
// so subject.confirm cannot apply here (a documented limit): another
// spelling of an id is allowed as a subject never seen, and a warning
// says so once per route. subject.id_pattern does apply.
func TestConfirmedRoutesInThisMode(t *testing.T) {
	sc := newScenario(t)
	var logs strings.Builder
	h := New(sc.gate, Options{PathPrefix: "/authz", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	do := func(method, path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(`{"first_name":"Robert"}`))
		req.Header.Set("X-Gdpr-Roles", "supervisor")
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for _, path := range []string{"/authz/api/contacts/C-2", "/authz/api/contacts/c-2.json"} {
		if rec := do("GET", path); rec.Code != 200 {
			t.Errorf("GET %s = %d; the limit is documented as an allow", path, rec.Code)
		}
	}
	if n := strings.Count(logs.String(), "subject.id_pattern"); n != 1 || !strings.Contains(logs.String(), "route=contact\n") {
		t.Errorf("warnings about unconfirmed subjects = %d, want 1 naming the route:\n%s", n, logs.String())
	}
	// The example's write routes admit only canonical ids.
	if rec := do("PATCH", "/authz/api/contacts/C-2"); rec.Code != 400 || rec.Result().Header.Get(HeaderReason) != "subject_id_not_canonical" {
		t.Errorf("PATCH C-2 = %d %s, want 400 subject_id_not_canonical", rec.Code, rec.Result().Header.Get(HeaderReason))
	}
}
