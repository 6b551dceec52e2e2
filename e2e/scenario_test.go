package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/examples/crm"
)

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// Field groups of a contact by sensitivity bit (examples/crm/README.md).
var contactBits = [4][]string{
	{"customer_number", "ip_address"},
	{"first_name", "last_name", "email", "phone", "address"},
	{"birth_year", "sex", "income_category"},
	{"health_notes"},
}

// redactContact nulls, in a decoded contact, every field of a bit not in visible.
func redactContact(c map[string]any, visible uint32) {
	for bit, fields := range contactBits {
		if visible&(1<<bit) != 0 {
			continue
		}
		for _, f := range fields {
			if _, ok := c[f]; ok {
				c[f] = nil
			}
		}
	}
}

func decode(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return v
}

func sameJSON(t *testing.T, got []byte, want any) {
	t.Helper()
	g := decode(t, got)
	wb, _ := json.Marshal(want)
	w := decode(t, wb)
	if !reflect.DeepEqual(g, w) {
		t.Errorf("body\n got %s\nwant %s", got, wb)
	}
}

// both runs a call through the Envoy emulator and through the proxy and
// requires identical answers.
func both(t *testing.T, s *stack, c call) result {
	t.Helper()
	e := s.viaEnvoy(t, c)
	p := s.viaProxy(t, c)
	// Writes are not idempotent (the CRM numbers what it accepts): compare
	// their status only.
	sameBody := c.method != "" && c.method != "GET" || bytes.Equal(e.body, p.body)
	if e.status != p.status || !sameBody {
		t.Errorf("%s %s: envoy and proxy differ\n envoy %d %s\n proxy %d %s", c.method, c.path, e.status, e.body, p.status, p.body)
	}
	for _, h := range []string{"x-gdpr-coverage", "x-gdpr-coverage-bits", "x-gdpr-redacted"} {
		if e.header.Get(h) != p.header.Get(h) {
			t.Errorf("%s %s: header %s: envoy %q, proxy %q", c.method, c.path, h, e.header.Get(h), p.header.Get(h))
		}
	}
	return e
}

func TestScenario(t *testing.T) {
	s := newRedisStack(t)

	t.Run("single contacts", func(t *testing.T) {
		cases := []struct {
			name     string
			c        call
			status   int
			visible  uint32
			coverage string
		}{
			{"Alice: agent sees bits 0-2, not health", call{path: "/api/contacts/c-1", roles: "agent"}, 200, 7, "blue"},
			{"Alice: supervisor sees everything", call{path: "/api/contacts/c-1", roles: "supervisor"}, 200, 15, "blue"},
			{"Alice: marketer sees bits 0-1", call{path: "/api/contacts/c-1", roles: "marketer"}, 200, 3, "blue"},
			{"Bob archived: agent sees none of 0-2", call{path: "/api/contacts/c-2", roles: "agent"}, 200, 0, "blue"},
			{"Bob archived: agent asking for archive mode still sees nothing", call{path: "/api/contacts/c-2", roles: "agent", mode: "archive"}, 200, 0, "blue"},
			{"Bob archived: supervisor without archive mode", call{path: "/api/contacts/c-2", roles: "supervisor"}, 200, 0, "blue"},
			{"Bob archived: supervisor in archive mode sees 0-2, health obliviated", call{path: "/api/contacts/c-2", roles: "supervisor", mode: "archive"}, 200, 7, "blue"},
			// Her expired consent grants nothing now: "Red – We have no coverage".
			{"Carol expired: agent sees nothing", call{path: "/api/contacts/c-3", roles: "agent"}, 200, 0, "red"},
			{"Carol expired: auditor sees 0-1", call{path: "/api/contacts/c-3", roles: "auditor"}, 200, 3, "red"},
			{"Dan in grace: agent sees 0-1, bit 2 expired", call{path: "/api/contacts/c-4", roles: "agent"}, 200, 3, "red"},
			{"Dan: auditor also sees expired bit 2, never obliviated health", call{path: "/api/contacts/c-4", roles: "auditor"}, 200, 7, "red"},
			{"Eve obliviated: 404 for everyone", call{path: "/api/contacts/c-5", roles: "auditor", mode: "archive"}, 404, 0, ""},
			{"Frank: retired legalisation's old evidence still covers 0-1", call{path: "/api/contacts/c-6", roles: "agent"}, 200, 3, "blue"},
			{"Ivan: bit 1 archived by default", call{path: "/api/contacts/c-9", roles: "agent"}, 200, 1, "red"},
			{"Ken: health expired, supervisor cannot see it", call{path: "/api/contacts/c-11", roles: "supervisor"}, 200, 7, "blue"},
			{"Ken: auditor sees expired health", call{path: "/api/contacts/c-11", roles: "auditor"}, 200, 15, "blue"},
			{"Laura: renewal keeps her data active", call{path: "/api/contacts/c-12", roles: "agent"}, 200, 7, "blue"},
			{"several roles: union of masks", call{path: "/api/contacts/c-1", roles: "marketer, agent"}, 200, 7, "blue"},
			// Colours are over the bits the caller may see: none.
			{"unknown role sees nothing", call{path: "/api/contacts/c-1", roles: "janitor"}, 200, 0, "red"},
			{"Mallory: an agent's colour does not tell of her health consent", call{path: "/api/contacts/c-13", roles: "agent"}, 200, 3, "red"},
			{"Mallory: the supervisor sees the health consent's colour", call{path: "/api/contacts/c-13", roles: "supervisor"}, 200, 11, "blue"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := both(t, s, tc.c)
				if r.status != tc.status {
					t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
				}
				if tc.status != 200 {
					if bytes.Contains(r.body, []byte("Eve")) {
						t.Errorf("denial leaks personal data: %s", r.body)
					}
					return
				}
				id := strings.TrimPrefix(tc.c.path, "/api/contacts/")
				want := decode(t, s.raw(t, "/api/contacts/"+id)).(map[string]any)
				redactContact(want, tc.visible)
				sameJSON(t, r.body, want)
				if got := r.header.Get("x-gdpr-coverage"); got != tc.coverage {
					t.Errorf("coverage %q, want %q", got, tc.coverage)
				}
			})
		}
	})

	t.Run("contact list: each item redacted for its own subject", func(t *testing.T) {
		// Reads never delete: meeting Eve (obliviated) above queued nothing.
		if ws, err := s.app.Store.ListWipes(t.Context(), 0); err != nil || len(ws) != 0 {
			t.Fatalf("reads created deletion work: %+v %v", ws, err)
		}
		if _, ok := s.crm.Contact("c-5"); !ok {
			t.Fatal("a read deleted Eve from the backend")
		}
		for _, roles := range []string{"agent", "auditor"} {
			c := call{path: "/api/contacts?per_page=50", roles: roles}
			r := both(t, s, c)
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			want := decode(t, s.raw(t, "/api/contacts?per_page=50")).(map[string]any)
			for _, it := range want["data"].([]any) {
				item := it.(map[string]any)
				one := s.viaProxy(t, call{path: "/api/contacts/" + item["id"].(string), roles: roles})
				if one.status == 404 {
					redactContact(item, 0)
					continue
				}
				single := decode(t, one.body).(map[string]any)
				for k := range item {
					item[k] = single[k]
				}
			}
			sameJSON(t, r.body, want)
			if len(want["data"].([]any)) < 12 {
				t.Errorf("list has only %d items", len(want["data"].([]any)))
			}
		}
	})

	t.Run("calls: phone by contact bit, notes by health bit", func(t *testing.T) {
		r := both(t, s, call{path: "/api/contacts/c-1/calls", roles: "agent"})
		want := decode(t, s.raw(t, "/api/contacts/c-1/calls")).(map[string]any)
		for _, it := range want["data"].([]any) {
			it.(map[string]any)["notes"] = nil
		}
		sameJSON(t, r.body, want)
		if got := r.header.Get("x-gdpr-redacted"); got != "data.#.notes" {
			t.Errorf("x-gdpr-redacted %q", got)
		}
	})

	t.Run("issue: subject named in the response body", func(t *testing.T) {
		r := both(t, s, call{path: "/api/issues/i-3", roles: "agent"}) // Bob's: archived
		want := decode(t, s.raw(t, "/api/issues/i-3")).(map[string]any)
		want["reporter_email"] = nil
		sameJSON(t, r.body, want)
		r = both(t, s, call{path: "/api/issues/i-1", roles: "agent"}) // Alice's
		sameJSON(t, r.body, decode(t, s.raw(t, "/api/issues/i-1")))
	})

	t.Run("export needs export_evidence", func(t *testing.T) {
		r := both(t, s, call{path: "/api/contacts/c-1/export", roles: "agent"})
		if r.status != 403 || !bytes.Contains(r.body, []byte("export_not_permitted")) {
			t.Fatalf("agent export: %d %s", r.status, r.body)
		}
		r = both(t, s, call{path: "/api/contacts/c-1/export", roles: "auditor"})
		if r.status != 200 {
			t.Fatalf("auditor export: %d %s", r.status, r.body)
		}
		want := decode(t, s.raw(t, "/api/contacts/c-1/export")).(map[string]any)
		redactContact(want["contact"].(map[string]any), 15)
		sameJSON(t, r.body, want)
	})

	t.Run("outbound communication needs a permitting legal ground", func(t *testing.T) {
		cases := []struct {
			name   string
			body   string
			path   string
			status int
		}{
			{"campaign call to Dan (no evidence)", `{"contact_id":"c-4","type":"campaign"}`, "/api/outbound/calls", 403},
			{"campaign call to Alice (marketing consent)", `{"contact_id":"c-1","type":"campaign"}`, "/api/outbound/calls", 202},
			{"adhoc e-mail to Alice (contract)", `{"contact_id":"c-1","type":"adhoc"}`, "/api/outbound/emails", 202},
			{"campaign call to Carol (consent expired)", `{"contact_id":"c-3","type":"campaign"}`, "/api/outbound/calls", 403},
			{"adhoc call to Judy (only marketing consent)", `{"contact_id":"c-10","type":"adhoc"}`, "/api/outbound/calls", 403},
			{"campaign call to Judy", `{"contact_id":"c-10","type":"campaign"}`, "/api/outbound/calls", 202},
			{"call to Eve (obliviated)", `{"contact_id":"c-5","type":"adhoc"}`, "/api/outbound/calls", 404},
			{"unknown communication type", `{"contact_id":"c-1","type":"pigeon"}`, "/api/outbound/calls", 400},
			{"no subject in the body", `{"type":"campaign"}`, "/api/outbound/calls", 400},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := both(t, s, call{method: "POST", path: tc.path, roles: "marketer", body: tc.body})
				if r.status != tc.status {
					t.Errorf("status %d, want %d: %s", r.status, tc.status, r.body)
				}
			})
		}
	})

	t.Run("identity", func(t *testing.T) {
		r := both(t, s, call{path: "/api/contacts/c-1"})
		if r.status != 401 {
			t.Errorf("no roles: %d %s", r.status, r.body)
		}
		r = both(t, s, call{path: "/healthz-of-the-crm-not-mapped"})
		if r.status == 401 {
			t.Errorf("unmapped route required identity")
		}
	})

	t.Run("forged gdpr headers never reach the backend", func(t *testing.T) {
		req := call{path: "/api/contacts/c-1", roles: "agent"}.request(t, "http://gateway.local")
		req.Header.Set("x-gdpr-coverage", "forged")
		resp, err := s.envoy.Do(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Upstream.Header.Get("x-gdpr-coverage"); got != "" {
			t.Errorf("backend saw forged header %q", got)
		}
	})

	t.Run("wipe: the subject is gone at once, the backend deletions run", func(t *testing.T) {
		before := s.crm.Deleted()
		resp, err := postJSON(s.adminTS.URL+"/v1/wipes", `{"entity":"contact","id":"c-7"}`)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 202 {
			t.Fatalf("wipe request: %d", resp.StatusCode)
		}
		for _, c := range []call{{path: "/api/contacts/c-7", roles: "auditor"}, {path: "/api/contacts/c-7/calls", roles: "auditor"}} {
			if r := both(t, s, c); r.status != 404 {
				t.Errorf("%s after wipe: %d", c.path, r.status)
			}
		}
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			d := s.crm.Deleted()
			_, stillThere := s.crm.Contact("c-7")
			if !stillThere && len(s.crm.Calls("c-7")) == 0 && len(s.crm.Issues("c-7")) == 0 {
				// Each of the three routes deleted c-7's data exactly once.
				for _, r := range []string{crm.RouteDeleteContact, crm.RouteDeleteCalls, crm.RouteDeleteIssues} {
					if d[r]-before[r] != 1 {
						t.Errorf("%s deleted %d times", r, d[r]-before[r])
					}
				}
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("backend deletions: %v", s.crm.Deleted())
	})
}

func postJSON(url, body string) (*http.Response, error) {
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("authorization", "Bearer "+adminToken)
	req.Header.Set("content-type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return resp, nil
}
