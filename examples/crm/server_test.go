package crm

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

var testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func do(t *testing.T, h http.Handler, method, target, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out map[string]any
	// ServeMux answers 405 itself, in plain text.
	if rec.Body.Len() > 0 && rec.Code != http.StatusMethodNotAllowed {
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %s: Content-Type %q", method, target, ct)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %s: body not a JSON object: %v: %s", method, target, err, rec.Body)
		}
	}
	return rec.Code, out
}

func TestRoutesAnswerAsTheScenarioSays(t *testing.T) {
	cases := []struct {
		name, method, target, body string
		wantStatus                 int
		check                      func(t *testing.T, body map[string]any)
	}{
		{"get contact", "GET", "/api/contacts/c-1", "", 200, func(t *testing.T, b map[string]any) {
			if b["first_name"] != "Alice" || b["created_at"] != "2026-02-21T12:00:00Z" {
				t.Errorf("c-1 = %v", b)
			}
			addr, _ := b["address"].(map[string]any)
			if addr["city"] != "Berlin" || b["health_notes"] == "" || b["customer_number"] == "" {
				t.Errorf("c-1 misses fields: %v", b)
			}
		}},
		{"unknown contact", "GET", "/api/contacts/c-999", "", 404, wantError("not found")},
		{"unknown route", "GET", "/api/nothing", "", 404, wantError("not found")},
		{"calls of c-1", "GET", "/api/contacts/c-1/calls", "", 200, func(t *testing.T, b map[string]any) {
			data := b["data"].([]any)
			if len(data) != 3 {
				t.Fatalf("c-1 has %d calls, want 3", len(data))
			}
			if c := data[0].(map[string]any); c["contact_id"] != "c-1" || c["phone"] == "" || c["notes"] == "" {
				t.Errorf("call = %v", c)
			}
		}},
		{"calls of a contact without calls", "GET", "/api/contacts/c-4/calls", "", 200, func(t *testing.T, b map[string]any) {
			if data := b["data"].([]any); len(data) != 0 {
				t.Errorf("c-4 calls = %v, want []", data)
			}
		}},
		{"calls of unknown contact", "GET", "/api/contacts/c-999/calls", "", 404, wantError("not found")},
		{"issue", "GET", "/api/issues/i-4", "", 200, func(t *testing.T, b map[string]any) {
			if b["contact_id"] != "c-7" || !strings.Contains(b["body"].(string), "c-7") || b["reporter_email"] == "" {
				t.Errorf("i-4 = %v", b)
			}
		}},
		{"unknown issue", "GET", "/api/issues/i-999", "", 404, wantError("not found")},
		{"export", "GET", "/api/contacts/c-7/export", "", 200, func(t *testing.T, b map[string]any) {
			if b["contact"].(map[string]any)["id"] != "c-7" || len(b["calls"].([]any)) != 3 || len(b["issues"].([]any)) != 2 {
				t.Errorf("export = %v", b)
			}
		}},
		{"export unknown", "GET", "/api/contacts/c-999/export", "", 404, wantError("not found")},
		{"outbound call", "POST", "/api/outbound/calls", `{"contact_id":"c-1","type":"campaign"}`, 202, func(t *testing.T, b map[string]any) {
			if b["status"] != "queued" || b["contact_id"] != "c-1" || b["type"] != "campaign" {
				t.Errorf("ack = %v", b)
			}
		}},
		{"outbound callback", "POST", "/api/outbound/calls", `{"contact_id":"c-1","type":"callback"}`, 202, nil},
		{"outbound email", "POST", "/api/outbound/emails", `{"contact_id":"c-4","type":"adhoc"}`, 202, nil},
		{"outbound email callback is not a type", "POST", "/api/outbound/emails", `{"contact_id":"c-4","type":"callback"}`, 400, nil},
		{"outbound not JSON", "POST", "/api/outbound/calls", `contact=c-1`, 400, nil},
		{"outbound empty body", "POST", "/api/outbound/calls", ``, 400, nil},
		{"outbound unknown field", "POST", "/api/outbound/calls", `{"contact_id":"c-1","type":"adhoc","x":1}`, 400, nil},
		{"outbound missing contact", "POST", "/api/outbound/calls", `{"type":"adhoc"}`, 400, nil},
		{"outbound unknown contact", "POST", "/api/outbound/calls", `{"contact_id":"c-999","type":"adhoc"}`, 404, nil},
		{"put", "PUT", "/api/contacts/c-2", `{"email":"bob@new.example","address":{"street":"1 New St","city":"Bonn","zip":"53111","country":"DE"}}`, 200, func(t *testing.T, b map[string]any) {
			if b["email"] != "bob@new.example" || b["first_name"] != "Bob" || b["address"].(map[string]any)["city"] != "Bonn" {
				t.Errorf("put result = %v", b)
			}
		}},
		{"put cannot change id", "PUT", "/api/contacts/c-2", `{"id":"c-3"}`, 400, nil},
		{"put bad JSON", "PUT", "/api/contacts/c-2", `{"email":`, 400, nil},
		{"put unknown contact", "PUT", "/api/contacts/c-999", `{"email":"x@example.com"}`, 404, wantError("not found")},
		{"wrong method", "PATCH", "/api/contacts/c-1/export", `{}`, 405, nil},
		{"patch with null clears a field (erasure)", "PATCH", "/api/contacts/c-2", `{"health_notes":null,"birth_year":null}`, 200, func(t *testing.T, m map[string]any) {
			if m["health_notes"] != "" || m["birth_year"] != float64(0) || m["first_name"] != "Bob" {
				t.Errorf("after patch: %v", m)
			}
		}},
		{"patch of an unknown field changes nothing", "PATCH", "/api/contacts/c-2", `{"nope":null}`, 400, nil},
		{"patch cannot change the id", "PATCH", "/api/contacts/c-2", `{"id":"c-9"}`, 400, nil},
		{"delete issues needs contact_id", "DELETE", "/api/issues", "", 400, nil},
	}
	srv := New(testNow)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := do(t, srv, tc.method, tc.target, tc.body)
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d (body %v)", status, tc.wantStatus, body)
			}
			if tc.check != nil {
				tc.check(t, body)
			}
		})
	}
	if c, _ := srv.Contact("c-2"); c.Email != "bob@new.example" {
		t.Errorf("PUT not stored: %+v", c)
	}
	if n := len(srv.Outbound()); n != 3 {
		t.Errorf("outbound recorded %d, want 3", n)
	}
}

func wantError(msg string) func(*testing.T, map[string]any) {
	return func(t *testing.T, b map[string]any) {
		if b["error"] != msg {
			t.Errorf("error = %v, want %q", b["error"], msg)
		}
	}
}

func TestBadPutChangesNothing(t *testing.T) {
	srv := New(testNow)
	before, _ := srv.Contact("c-1")
	if status, _ := do(t, srv, "PUT", "/api/contacts/c-1", `{"email":"x@example.com","bogus":true}`); status != 400 {
		t.Fatalf("status %d, want 400", status)
	}
	if after, _ := srv.Contact("c-1"); after.Email != before.Email {
		t.Errorf("email changed to %q by a refused PUT", after.Email)
	}
}

func TestListPaging(t *testing.T) {
	total := len(ContactIDs)
	cases := []struct {
		query             string
		wantStatus        int
		wantPage, wantLen int
		wantFirst         string
	}{
		{"", 200, 1, total, "c-1"},
		{"?per_page=5", 200, 1, 5, "c-1"},
		{"?page=2&per_page=5", 200, 2, 5, "c-6"},
		{"?page=3&per_page=5", 200, 3, total - 10, "c-11"},
		{"?page=4&per_page=5", 200, 4, 0, ""},
		{"?page=999999999999&per_page=500", 200, 999999999999, 0, ""},
		{"?per_page=100000", 200, 1, total, "c-1"},
		{"?page=0", 400, 0, 0, ""},
		{"?per_page=-1", 400, 0, 0, ""},
		{"?page=x", 400, 0, 0, ""},
	}
	srv := New(testNow)
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			status, b := do(t, srv, "GET", "/api/contacts"+tc.query, "")
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d", status, tc.wantStatus)
			}
			if status != 200 {
				return
			}
			data := b["data"].([]any)
			if int(b["total"].(float64)) != total || int(b["page"].(float64)) != tc.wantPage || len(data) != tc.wantLen {
				t.Fatalf("page %v total %v len %d, want %d %d %d", b["page"], b["total"], len(data), tc.wantPage, total, tc.wantLen)
			}
			if tc.wantFirst != "" && data[0].(map[string]any)["id"] != tc.wantFirst {
				t.Errorf("first = %v, want %s", data[0].(map[string]any)["id"], tc.wantFirst)
			}
		})
	}
	if _, b := do(t, srv, "GET", "/api/contacts?per_page=100000", ""); int(b["per_page"].(float64)) != MaxPerPage {
		t.Errorf("per_page not capped: %v", b["per_page"])
	}
}

// Wipes retry: every DELETE must succeed again when what it deletes is gone,
// and the counters must tell real deletions from repeats.
func TestDeletesAreIdempotent(t *testing.T) {
	srv := New(testNow)
	steps := []string{"/api/contacts/c-7/calls", "/api/issues?contact_id=c-7", "/api/contacts/c-7"}
	for round := 0; round < 3; round++ {
		for _, target := range steps {
			if status, _ := do(t, srv, "DELETE", target, ""); status != http.StatusNoContent {
				t.Fatalf("round %d DELETE %s: status %d, want 204", round, target, status)
			}
		}
	}
	if _, ok := srv.Contact("c-7"); ok {
		t.Error("c-7 still exists")
	}
	if len(srv.Calls("c-7")) != 0 || len(srv.Issues("c-7")) != 0 {
		t.Error("c-7's calls or issues survived")
	}
	if status, _ := do(t, srv, "GET", "/api/contacts/c-7", ""); status != 404 {
		t.Errorf("GET deleted contact: %d, want 404", status)
	}
	if len(srv.Calls("c-1")) != 3 || len(srv.Issues("c-1")) != 2 {
		t.Error("deleting c-7 touched c-1's calls or issues")
	}
	for _, route := range []string{RouteDeleteContact, RouteDeleteCalls, RouteDeleteIssues} {
		if got := srv.Deleted()[route]; got != 1 {
			t.Errorf("Deleted[%s] = %d, want 1", route, got)
		}
		if got := srv.DeleteCalls()[route]; got != 3 {
			t.Errorf("DeleteCalls[%s] = %d, want 3", route, got)
		}
	}
	if _, b := do(t, srv, "GET", "/api/contacts", ""); int(b["total"].(float64)) != len(ContactIDs)-1 {
		t.Errorf("total after delete = %v", b["total"])
	}
}

func TestFailNextInjects503ThenRecovers(t *testing.T) {
	srv := New(testNow)
	srv.FailNext("DELETE", "/api/issues", 2)
	for i := 0; i < 2; i++ {
		if status, b := do(t, srv, "DELETE", "/api/issues?contact_id=c-7", ""); status != 503 || b["error"] == nil {
			t.Fatalf("attempt %d: status %d, want 503 with an error", i, status)
		}
	}
	if len(srv.Issues("c-7")) != 2 {
		t.Fatal("a faulted request deleted data")
	}
	// Other methods and paths are not affected.
	if status, _ := do(t, srv, "GET", "/api/issues/i-4", ""); status != 200 {
		t.Errorf("GET issue during fault: %d", status)
	}
	if status, _ := do(t, srv, "DELETE", "/api/issues?contact_id=c-7", ""); status != 204 {
		t.Fatalf("third attempt: %d, want 204", status)
	}
	if srv.Deleted()[RouteDeleteIssues] != 1 || srv.DeleteCalls()[RouteDeleteIssues] != 1 {
		t.Errorf("counters = %v / %v, faults must not count", srv.Deleted(), srv.DeleteCalls())
	}
	srv.FailNext("", "/api/contacts/", 1)
	if status, _ := do(t, srv, "GET", "/api/contacts/c-1", ""); status != 503 {
		t.Errorf("any-method fault: %d, want 503", status)
	}
	if got := srv.Requests(); len(got) != 5 || got[0] != "DELETE /api/issues?contact_id=c-7" {
		t.Errorf("requests = %v", got)
	}
}

func TestConcurrentUseIsSafe(t *testing.T) {
	srv := New(testNow)
	srv.FailNext("GET", "/api/contacts", 10)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				for _, r := range []struct{ m, u, b string }{
					{"GET", "/api/contacts?per_page=3", ""},
					{"PUT", "/api/contacts/c-1", `{"sex":"F"}`},
					{"POST", "/api/outbound/emails", `{"contact_id":"c-1","type":"campaign"}`},
					{"DELETE", "/api/contacts/c-7/calls", ""},
				} {
					req := httptest.NewRequest(r.m, r.u, strings.NewReader(r.b))
					srv.ServeHTTP(httptest.NewRecorder(), req)
				}
				_ = srv.Deleted()
			}
		}()
	}
	wg.Wait()
	if srv.Deleted()[RouteDeleteCalls] != 1 || srv.DeleteCalls()[RouteDeleteCalls] != 160 {
		t.Errorf("counters = %v / %v", srv.Deleted(), srv.DeleteCalls())
	}
}

func TestDataSetIsDeterministic(t *testing.T) {
	a, b := New(testNow), New(testNow)
	for _, id := range ContactIDs {
		ca, _ := a.Contact(id)
		cb, _ := b.Contact(id)
		ja, _ := json.Marshal(ca)
		jb, _ := json.Marshal(cb)
		if string(ja) != string(jb) {
			t.Errorf("%s differs between two servers", id)
		}
		want := testNow.Add(-time.Duration(ContactAges[id]) * 24 * time.Hour).Format(time.RFC3339)
		if ca.CreatedAt != want {
			t.Errorf("%s created_at %s, want %s", id, ca.CreatedAt, want)
		}
	}
	if len(a.Calls("c-2")) < 2 || len(a.Calls("c-7")) < 2 || len(a.Issues("c-2")) < 1 || len(a.Issues("c-7")) < 2 {
		t.Error("c-2 and c-7 need calls and issues")
	}
}

// TestLenientIDsFindTheStoredRecord: with the options, the CRM finds a
// contact the way many real backends do, and answers with the stored id;
// without them, only the exact id.
func TestLenientIDsFindTheStoredRecord(t *testing.T) {
	strict := New(testNow)
	lenient := New(testNow, CaseInsensitiveIDs(), FormatSuffix())
	for _, target := range []string{"/api/contacts/C-2", "/api/contacts/c-2.json", "/api/contacts/C-2.json"} {
		if code, _ := do(t, strict, "GET", target, ""); code != 404 {
			t.Errorf("strict %s: %d, want 404", target, code)
		}
		code, b := do(t, lenient, "GET", target, "")
		if code != 200 || b["id"] != "c-2" || b["first_name"] != "Bob" {
			t.Errorf("lenient %s: %d %v, want Bob as c-2", target, code, b)
		}
	}
	code, b := do(t, lenient, "GET", "/api/contacts/C-2/calls", "")
	if data, _ := b["data"].([]any); code != 200 || len(data) != 2 || data[0].(map[string]any)["contact_id"] != "c-2" {
		t.Errorf("lenient calls of C-2: %d %v", code, b)
	}
	code, b = do(t, lenient, "GET", "/api/contacts/c-2.json/export", "")
	if c, _ := b["contact"].(map[string]any); code != 200 || c["id"] != "c-2" {
		t.Errorf("lenient export of c-2.json: %d %v", code, b)
	}
	if code, b := do(t, lenient, "PATCH", "/api/contacts/C-2", `{"first_name":"Robert"}`); code != 200 || b["id"] != "c-2" {
		t.Errorf("lenient PATCH C-2: %d %v", code, b)
	}
	if c, _ := lenient.Contact("c-2"); c.FirstName != "Robert" {
		t.Errorf("PATCH C-2 did not change c-2: %+v", c)
	}
	if code, b := do(t, lenient, "POST", "/api/outbound/calls", `{"contact_id":"C-4","type":"campaign"}`); code != 202 || b["contact_id"] != "c-4" {
		t.Errorf("lenient outbound to C-4: %d %v", code, b)
	}
}
