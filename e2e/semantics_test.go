package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
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

// Writes need rights: a write may change a mapped field only when the
// caller may see it now — its sensitivity in the caller's mask and active,
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
