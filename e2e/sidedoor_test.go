package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/policy/model"
)

// methodOverride is the backend behaviour that made the override attack
// work: like Express's method-override, Rails' Rack::MethodOverride or
// ASP.NET Core's HttpMethodOverride, a POST carrying an override header or
// _method is served as that method.
func methodOverride(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			for _, h := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"} {
				if m := r.Header.Get(h); m != "" {
					r.Method = strings.ToUpper(m)
				}
			}
			if m := r.URL.Query().Get("_method"); m != "" {
				r.Method = strings.ToUpper(m)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// newSideDoorStack is the reference stack with a backend that honours
// method overrides, no wipe worker (a wiped subject's data stays in the
// backend, so only gdprgate stands between it and the client), and one
// extra route whose subject is a query parameter.
func newSideDoorStack(t *testing.T) *stack {
	t.Helper()
	return newSideDoorStackWith(t, nil)
}

func newSideDoorStackWith(t *testing.T, configure func(*config.Config)) *stack {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	backend := crm.New(now)
	crmSrv := httptest.NewServer(methodOverride(backend))
	t.Cleanup(crmSrv.Close)
	sc := apptest.New(t, apptest.Options{Now: now, Configure: func(cfg *config.Config) {
		cfg.Upstream = crmSrv.URL
		cfg.Routes = append(cfg.Routes, config.Route{Name: "calls-by-query", Method: "GET", Path: "/api/calls", Kind: "read",
			Subject: &config.SubjectSpec{Entity: "contact", From: config.FromQuery, Name: "contact_id"},
			Fields:  map[string]string{"data.#.phone": "contact", "data.#.notes": "health"}})
		if configure != nil {
			configure(cfg)
		}
	}})
	s := front(t, sc, crmSrv.URL, func(method, path string) bool { return strings.HasPrefix(path, "/api/outbound/") })
	s.crm, s.crmURL = backend, crmSrv.URL
	return s
}

// rawCall is a request whose target is sent byte for byte as written.
type rawCall struct {
	method, target string
	header         map[string]string
	body           string
}

func (c rawCall) request(t *testing.T, base string) *http.Request {
	t.Helper()
	method := c.method
	if method == "" {
		method = "GET"
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	var rd io.Reader
	if c.body != "" {
		rd = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(method, base+"/", rd)
	if err != nil {
		t.Fatal(err)
	}
	// Opaque keeps the target exactly as written (no cleaning, no
	// re-encoding) on the wire and in the emulator.
	req.URL = &url.URL{Scheme: u.Scheme, Host: u.Host, Opaque: c.target}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	return req
}

// noRedirects is a client that shows a backend's redirect to the test
// instead of following it (Envoy does not follow them either).
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// ways sends c through the Envoy emulator (Check and ext_proc over real
// gRPC) and through gdprgate proxy, and returns both answers.
func (s *stack) ways(t *testing.T, c rawCall) map[string]result {
	t.Helper()
	out := map[string]result{}
	resp, err := s.envoy.Do(context.Background(), c.request(t, "http://gateway.local"))
	if err != nil {
		t.Fatalf("envoy emulator: %v", err)
	}
	out["envoy"] = result{resp.Status, resp.Header, resp.Body}
	presp, err := noRedirects.Do(c.request(t, s.proxy))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(presp.Body)
	presp.Body.Close()
	out["proxy"] = result{presp.StatusCode, presp.Header, b}
	return out
}

var agentHdr = map[string]string{"x-gdpr-roles": "agent"}

// TestSideDoorPaths: Bob is archived, so an agent sees none of his contact
// data however the URL is spelt; the spelling the backend itself serves
// (c%2D2) used to show him in clear.
func TestSideDoorPaths(t *testing.T) {
	s := newSideDoorStack(t)
	for _, target := range []string{
		"/api/contacts/c%2D2",
		"/api/contacts/c%2d2",
		"/api/contacts/%63-2",
		"/api//contacts/c-2",
		"/api/contacts/./c-2",
		"/api/x/../contacts/c-2",
		"/API/Contacts/c-2",
		"/api/contacts/c-2;jsessionid=1",
		"/api/%63ontacts/c-2",
		"/api/contacts/c-2/",
	} {
		for way, r := range s.ways(t, rawCall{target: target, header: agentHdr}) {
			if bytes.Contains(r.body, []byte("Bob")) || bytes.Contains(r.body, []byte("bob@")) {
				t.Errorf("%s via %s: %d, archived Bob in clear: %s", target, way, r.status, r.body)
			}
			if target == "/api/contacts/c%2D2" && r.status != 200 {
				t.Errorf("%s via %s: %d, want the backend's (redacted) 200", target, way, r.status)
			}
		}
	}
}

func TestSideDoorRefusedTargets(t *testing.T) {
	s := newSideDoorStack(t)
	for target, reason := range map[string]string{
		"/api/contacts/c%2F2":                       "encoded_slash",
		"/api/contacts/c%5C2":                       "encoded_backslash",
		"/api/contacts/c-2%00":                      "encoded_nul",
		"/api/contacts/c%252D2":                     "double_encoding",
		"/api/contacts/%C0%AE":                      "invalid_utf8",
		"/api/contacts/c%0D%0A2":                    "control_character",
		"/api/contacts/" + strings.Repeat("c", 300): "subject_id_too_long",
	} {
		for way, r := range s.ways(t, rawCall{target: target, header: agentHdr}) {
			if r.status != 400 || !bytes.Contains(r.body, []byte(reason)) {
				t.Errorf("%s via %s: %d %s, want 400 %s", target, way, r.status, r.body, reason)
			}
		}
	}
}

// TestSideDoorWipedSubject: a wiped subject (the backend still holds its
// data: no wipe worker here) is 404 under every spelling of its id.
func TestSideDoorWipedSubject(t *testing.T) {
	s := newSideDoorStack(t)
	ref := model.SubjectRef{Entity: "contact", ID: "c-8"}
	apptest.QueueWipe(t, s.app.Store, ref, s.now)
	for _, target := range []string{"/api/contacts/c-8", "/api/contacts/c%2D8", "/api/contacts/%63-8", "/API/contacts/c-8/"} {
		for way, r := range s.ways(t, rawCall{target: target, header: map[string]string{"x-gdpr-roles": "supervisor"}}) {
			if r.status != 404 || bytes.Contains(r.body, []byte("Heidi")) {
				t.Errorf("%s via %s: %d %s, want 404", target, way, r.status, r.body)
			}
		}
	}
}

// TestSideDoorMethodOverride: the backend serves a POST with an override
// as a GET; gdprgate judges it as that GET.
func TestSideDoorMethodOverride(t *testing.T) {
	s := newSideDoorStack(t)
	cases := []struct {
		name   string
		c      rawCall
		status int
	}{
		{"no identity", rawCall{method: "POST", target: "/api/contacts/c-1", header: map[string]string{"x-http-method-override": "GET"}}, 401},
		{"X-HTTP-Method as agent", rawCall{method: "POST", target: "/api/contacts/c-1", header: map[string]string{"x-http-method": "GET", "x-gdpr-roles": "agent"}}, 200},
		{"_method as agent", rawCall{method: "POST", target: "/api/contacts/c-1?_method=GET", header: agentHdr}, 200},
		{"disagreeing overrides", rawCall{method: "POST", target: "/api/contacts/c-1?_method=GET", header: map[string]string{"x-http-method-override": "DELETE", "x-gdpr-roles": "agent"}}, 400},
	}
	for _, tc := range cases {
		for way, r := range s.ways(t, tc.c) {
			if r.status != tc.status {
				t.Errorf("%s via %s: %d %s, want %d", tc.name, way, r.status, r.body, tc.status)
				continue
			}
			if bytes.Contains(r.body, []byte("Diabetic")) || bytes.Contains(r.body, []byte(`"health_notes":"`)) {
				t.Errorf("%s via %s: Alice's health notes reached an agent: %s", tc.name, way, r.body)
			}
		}
	}
}

// TestSideDoorOutboundBodies: the marketer may not have c-4 called; no
// spelling of the body gets the CRM (Go's encoding/json: last duplicate
// wins, keys matched case-insensitively) to call c-4.
func TestSideDoorOutboundBodies(t *testing.T) {
	s := newSideDoorStack(t)
	hdr := map[string]string{"x-gdpr-roles": "marketer", "content-type": "application/json"}
	cases := []struct {
		name, target, body string
		status             int
	}{
		{"duplicate contact_id", "/api/outbound/calls", `{"contact_id":"c-1","type":"campaign","contact_id":"c-4"}`, 400},
		{"CONTACT_ID beside contact_id", "/api/outbound/calls", `{"contact_id":"c-1","type":"campaign","CONTACT_ID":"c-4"}`, 400},
		{"CONTACT_ID alone", "/api/outbound/calls", `{"CONTACT_ID":"c-4","type":"campaign"}`, 403},
		{"duplicate type", "/api/outbound/calls", `{"contact_id":"c-4","type":"adhoc","type":"campaign"}`, 400},
		{"escaped key", "/api/outbound/calls", `{"contact_id":"c-4","type":"adhoc","typ\u0065":"campaign"}`, 400},
		{"query beside the body", "/api/outbound/calls?contact_id=c-4", `{"contact_id":"c-1","type":"campaign"}`, 400},
	}
	for _, tc := range cases {
		for way, r := range s.ways(t, rawCall{method: "POST", target: tc.target, header: hdr, body: tc.body}) {
			if r.status != tc.status {
				t.Errorf("%s via %s: %d %s, want %d", tc.name, way, r.status, r.body, tc.status)
			}
		}
	}
	for _, o := range s.crm.Outbound() {
		if o.ContactID == "c-4" {
			t.Errorf("the CRM called c-4 for a marketer: %+v", o)
		}
	}
}

// TestSideDoorQuerySubject: PHP and Rails act on the last of repeated
// parameters, others on the first: gdprgate refuses both readings.
func TestSideDoorQuerySubject(t *testing.T) {
	s := newSideDoorStack(t)
	for _, target := range []string{
		"/api/calls?contact_id=c-1&contact_id=c-2",
		"/api/calls?contact_id=c-1&CONTACT_ID=c-2",
		"/api/calls?contact_id=c-1;contact_id=c-2",
		"/api/calls?contact_id[]=c-2",
	} {
		for way, r := range s.ways(t, rawCall{target: target, header: agentHdr}) {
			if r.status != 400 || !bytes.Contains(r.body, []byte("ambiguous_query_parameter")) {
				t.Errorf("%s via %s: %d %s, want 400", target, way, r.status, r.body)
			}
		}
	}
}

// TestSideDoorClientHeadersNeverReachTheBackend: Check removes the
// client's x-gdpr-* headers but the identity ones ext_proc decides with
// again; ext_proc removes those. The backend sees gdprgate's headers only,
// and the processor decides like Check (issue 10 §5).
func TestSideDoorClientHeadersNeverReachTheBackend(t *testing.T) {
	s := newSideDoorStack(t)
	h := map[string]string{"x-gdpr-roles": "supervisor", "x-gdpr-mode": "archive", "x-gdpr-project": "p-1", "x-gdpr-caller": "mallory",
		"x-gdpr-coverage": "green", "x-gdpr-decision-id": "forged", "x-gdpr-anything": "x"}
	for _, target := range []string{"/api/contacts/c-2", "/api/notes"} {
		resp, err := s.envoy.Do(context.Background(), rawCall{target: target, header: h}.request(t, "http://gateway.local"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Upstream == nil {
			t.Fatalf("%s: %d %s, never reached the backend", target, resp.Status, resp.Body)
		}
		for k, v := range resp.Upstream.Header {
			lk := strings.ToLower(k)
			if strings.HasPrefix(lk, "x-gdpr-") && lk != "x-gdpr-decision-id" {
				t.Errorf("%s: the backend got %s: %v", target, k, v)
			}
		}
		if id := resp.Upstream.Header.Get("x-gdpr-decision-id"); id == "" || id == "forged" {
			t.Errorf("%s: decision id %q upstream", target, id)
		}
		// ext_proc decided with the same identity as Check: the supervisor
		// in archive mode sees archived Bob.
		if target == "/api/contacts/c-2" && (resp.Status != 200 || !bytes.Contains(resp.Body, []byte(`"first_name":"Bob"`))) {
			t.Errorf("%s: %d %s, want Bob for a supervisor in archive mode", target, resp.Status, resp.Body)
		}
	}
}
