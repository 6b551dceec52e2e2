package gate_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/gate"
	"github.com/gdprgate/gdprgate/internal/testlog"
)

const responseConfig = `
body: {unseen_after: 3}
routes:
  - name: contact
    method: GET
    path: /api/contacts/{id}
    kind: read
    subject: {entity: contact, from: path, name: id}
    fields: {email: contact, health_notes: health, address.street: contact, profile.emial: contact}
  - name: contacts
    method: GET
    path: /api/contacts
    kind: list
    subject: {entity: contact, from: item, path: "#.id"}
    fields: {"#.email": contact, "#.health_notes": health}
  - name: issue
    method: GET
    path: /api/issues/{id}
    kind: read
    subject: {entity: contact, from: response_body, path: contact_id}
    fields: {reporter_email: contact, notes: health}
  - name: issue-bare
    method: GET
    path: /api/bare-issues/{id}
    kind: read
    subject: {entity: contact, from: response_body, path: contact_id}
`

type responseRig struct {
	g    *gate.Gate
	sc   *apptest.Scenario
	logs *testlog.Buffer
}

// contentType is the header lookup of an answer whose only header is its
// Content-Type, ct.
func contentType(ct string) func(name string) string {
	return func(n string) string {
		if n == "content-type" {
			return ct
		}
		return ""
	}
}

func newResponseRig(t *testing.T, configure func(*config.Config)) *responseRig {
	t.Helper()
	logs := &testlog.Buffer{}
	sc := apptest.New(t, apptest.Options{ConfigYAML: []byte(responseConfig), Configure: configure,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	return &responseRig{g: sc.App.Gate, sc: sc, logs: logs}
}

// answer sends the agent's GET path, answers it with status, content type
// and body, and returns what the client gets.
func (r *responseRig) answer(t *testing.T, path string, status int, ct, body string) gate.Rewritten {
	t.Helper()
	h := map[string]string{"x-gdpr-roles": "agent"}
	ex := r.g.Check(context.Background(), &gate.Request{Method: "GET", Path: path, Header: func(n string) string { return h[n] }})
	if !ex.Verdict.Allow {
		t.Fatalf("%s refused: %+v", path, ex.Verdict)
	}
	return r.g.Rewrite(context.Background(), ex, &gate.Response{Status: status, Body: []byte(body),
		Header: contentType(ct)})
}

// client is the body the client gets.
func client(rw gate.Rewritten, original string) string {
	if rw.Replace || rw.Modified {
		return string(rw.Body)
	}
	return original
}

func TestAnswersOfEveryStatusAreChecked(t *testing.T) {
	const record = `{"email":"alice@example.com","health_notes":"Allergic to penicillin"}`
	tests := []struct {
		name, path string
		status     int
		ct, body   string
		nonJSON    string
		refused    string // the reason of a replaced answer
		want       string // the exact body the client gets otherwise
	}{
		{name: "an error page follows body.non_json like a 2xx", path: "/api/contacts/c-1", status: 500, ct: "text/html",
			body: "<p>Allergic to penicillin</p>", refused: "body_not_json"},
		{name: "a 404 text page too", path: "/api/contacts/c-1", status: 404, ct: "text/plain", body: "no such contact", refused: "body_not_json"},
		{name: "with non_json: pass, an error page passes", path: "/api/contacts/c-1", status: 500, ct: "text/html", nonJSON: "pass",
			body: "<p>oops</p>", want: "<p>oops</p>"},
		{name: "invalid JSON of an error status is refused", path: "/api/contacts/c-1", status: 500, ct: "application/json",
			body: `{"health_notes":"Allergic",}`, nonJSON: "pass", refused: "body_not_json"},
		{name: "an error answer carrying the record is redacted", path: "/api/contacts/c-1", status: 409, ct: "application/json",
			body: `{"error":"conflict","email":"alice@example.com","health_notes":"Allergic to penicillin"}`,
			want: `{"error":"conflict","email":"alice@example.com","health_notes":null}`},
		{name: "a list where the route expects a record", path: "/api/contacts/c-1", status: 200, ct: "application/json",
			body: `[` + record + `]`, refused: "body_shape"},
		{name: "a record where the route expects a list", path: "/api/contacts", status: 200, ct: "application/json",
			body: `{"id":"c-1","health_notes":"Allergic"}`, refused: "body_shape"},
		{name: "the list the route expects", path: "/api/contacts", status: 200, ct: "application/json",
			body: `[{"id":"c-1","health_notes":"Allergic"}]`, want: `[{"id":"c-1","health_notes":null}]`},
		{name: "a scalar carries no mapped field", path: "/api/contacts/c-1", status: 200, ct: "application/json", body: `null`, want: `null`},
		{name: "keys in another case or escaped are the mapped field", path: "/api/contacts/c-1", status: 200, ct: "application/json",
			body: `{"HEALTH_NOTES":"a","health\u005fnotes":"b","Health_Notes":"c"}`,
			want: `{"HEALTH_NOTES":null,"health\u005fnotes":null,"Health_Notes":null}`},
		{name: "an error answer without its subject hides every mapped field", path: "/api/issues/i-1", status: 404, ct: "application/json",
			body: `{"error":"gone","reporter_email":"carol@example.com","notes":"x"}`, want: `{"error":"gone","reporter_email":null,"notes":null}`},
		{name: "a 2xx without its subject is refused", path: "/api/issues/i-1", status: 200, ct: "application/json",
			body: `{"reporter_email":"carol@example.com"}`, refused: "subject_missing"},
		{name: "a subject named twice is refused", path: "/api/issues/i-1", status: 200, ct: "application/json",
			body: `{"contact_id":"c-1","CONTACT_ID":"c-5","reporter_email":"x"}`, refused: "subject_ambiguous"},
		{name: "a subject named twice is refused on a route without fields too", path: "/api/bare-issues/i-1", status: 200, ct: "application/json",
			body: `{"contact_id":"c-1","contact_id":"c-5"}`, refused: "subject_ambiguous"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newResponseRig(t, func(c *config.Config) {
				if tt.nonJSON != "" {
					c.Body.NonJSON = tt.nonJSON
				}
			})
			rw := r.answer(t, tt.path, tt.status, tt.ct, tt.body)
			got := client(rw, tt.body)
			if tt.refused != "" {
				if !rw.Replace || rw.Status != 502 || !strings.Contains(got, tt.refused) {
					t.Fatalf("got %v %d %s, want 502 %s", rw.Replace, rw.Status, got, tt.refused)
				}
				if strings.Contains(got, "llergic") || strings.Contains(got, "alice") {
					t.Fatalf("refusal carries the record: %s", got)
				}
				return
			}
			if rw.Replace || got != tt.want {
				t.Fatalf("got %s (replaced %v), want %s", got, rw.Replace, tt.want)
			}
		})
	}
}

func TestMappedFieldNeverSeenIsReportedOnce(t *testing.T) {
	r := newResponseRig(t, nil)
	answer := func(status int) {
		rw := r.answer(t, "/api/contacts/c-1", status, "application/json", `{"email":"a","address":{"street":"x"},"health_notes":"n"}`)
		if rw.Replace {
			t.Fatalf("refused: %s", rw.Body)
		}
	}
	warnings := func() []string {
		var out []string
		for _, l := range strings.Split(r.logs.String(), "\n") {
			if strings.Contains(l, "a mapped field was in none") {
				out = append(out, l)
			}
		}
		return out
	}
	answer(404) // errors do not count
	answer(200)
	answer(200)
	if w := warnings(); len(w) != 0 {
		t.Fatalf("warned before the window closed: %q", w)
	}
	answer(200)
	answer(200)
	w := warnings()
	if len(w) != 1 {
		t.Fatalf("want one warning, got %q", w)
	}
	var line map[string]any
	if err := json.Unmarshal([]byte(w[0]), &line); err != nil {
		t.Fatal(err)
	}
	if line["route"] != "contact" || line["path"] != "profile.emial" || line["level"] != "WARN" {
		t.Errorf("warning %v", line)
	}
	mfs, err := r.sc.App.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var unseen []string
	for _, mf := range mfs {
		if mf.GetName() != "gdprgate_route_field_unseen" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if m.GetGauge().GetValue() == 1 {
				unseen = append(unseen, labels["route"]+" "+labels["path"])
			}
		}
	}
	if len(unseen) != 1 || unseen[0] != "contact profile.emial" {
		t.Errorf("gdprgate_route_field_unseen = %q", unseen)
	}
}

func TestUnseenWatchCanBeTurnedOff(t *testing.T) {
	r := newResponseRig(t, func(c *config.Config) { zero := 0; c.Body.UnseenAfter = &zero })
	for range 5 {
		r.answer(t, "/api/contacts/c-1", 200, "application/json", `{"email":"a"}`)
	}
	if strings.Contains(r.logs.String(), "a mapped field was in none") {
		t.Fatal("warned with unseen_after: 0")
	}
}

func TestUnseenWatchAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	r := newResponseRig(t, func(c *config.Config) { n := 1 << 30; c.Body.UnseenAfter = &n })
	off := newResponseRig(t, func(c *config.Config) { zero := 0; c.Body.UnseenAfter = &zero })
	body := `{"email":"a","address":{"street":"x"},"health_notes":"n","other":[1,2,3]}`
	measure := func(rig *responseRig) float64 {
		return testing.AllocsPerRun(50, func() { rig.answer(t, "/api/contacts/c-1", 200, "application/json", body) })
	}
	if on, base := measure(r), measure(off); on > base {
		t.Errorf("allocs per answer: %v watching, %v not", on, base)
	}
}
