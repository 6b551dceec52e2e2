package gate_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/gate"
	"github.com/gdprgate/gdprgate/policy/model"
)

type originEnv struct {
	sc *apptest.Scenario
	g  *gate.Gate
}

func newOriginEnv(t *testing.T) *originEnv {
	sc := apptest.New(t, apptest.Options{})
	return &originEnv{sc: sc, g: sc.App.Gate}
}

func (e *originEnv) read(t *testing.T, path, body string, status int) {
	t.Helper()
	ex := e.g.Check(context.Background(), &gate.Request{Method: "GET", Path: path, Header: func(n string) string {
		if n == "x-gdpr-roles" {
			return "agent"
		}
		return ""
	}})
	if !ex.Verdict.Allow {
		t.Fatalf("%s denied: %d %s", path, ex.Verdict.Status, ex.Verdict.Body)
	}
	e.g.Rewrite(context.Background(), ex, &gate.Response{Status: status, Body: []byte(body), Header: contentType("application/json")})
}

func (e *originEnv) origin(t *testing.T, id string) (time.Time, cache.OriginSource) {
	t.Helper()
	ref := model.SubjectRef{Entity: "contact", ID: id}
	var rec cache.SubjectRecord
	var f cache.Facts
	// Recording happens off the request path: wait for it (bounded). The
	// facts are read first and the record after them: facts that show an
	// origin were computed from a record that has it, whereas a record
	// read first may predate a recording the facts then show.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var err error
		if f, err = e.sc.App.Store.Facts(context.Background(), ref, e.sc.Now); err != nil {
			t.Fatal(err)
		}
		if f.Origin != cache.OriginNone || time.Now().After(deadline) {
			if rec, err = e.sc.App.Store.Subject(context.Background(), ref); err != nil {
				t.Fatal(err)
			}
			return rec.Subject.Origin, f.Origin
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *originEnv) ignored(reason string) float64 {
	mfs, _ := e.sc.App.Registry.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "gdprgate_origin_ignored_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// An id the backend never answered 2xx for stays unknown: nothing is
// stored, its state is computed from now. The backend's created_at
// (origin_from) is recorded at the first 2xx; a future or unparsable one
// is ignored, counted, and the first sighting recorded instead.
func TestOriginsComeOnlyFromAnswersThatNameTheSubject(t *testing.T) {
	e := newOriginEnv(t)
	now := e.sc.Now
	e.read(t, "/api/contacts/x-404", `{"error":"not found"}`, 404)
	time.Sleep(100 * time.Millisecond) // a wrong write would have happened by now
	if _, src := e.origin(t, "x-404"); src != cache.OriginNone {
		t.Fatalf("a 404 recorded an origin (%s)", src)
	}
	created := now.Add(-300 * 24 * time.Hour)
	e.read(t, "/api/contacts/x-1", fmt.Sprintf(`{"id":"x-1","created_at":%q}`, created.Format(time.RFC3339)), 200)
	if at, src := e.origin(t, "x-1"); src != cache.OriginStated || !at.Equal(created) {
		t.Fatalf("origin = %s %s, want the backend's created_at %s", at, src, created)
	}
	e.read(t, "/api/contacts/x-2", fmt.Sprintf(`{"id":"x-2","created_at":%q}`, now.Add(48*time.Hour).Format(time.RFC3339)), 200)
	if at, src := e.origin(t, "x-2"); src != cache.OriginObserved || !at.Equal(now) {
		t.Fatalf("future created_at: origin %s %s, want first seen now", at, src)
	}
	if e.ignored("future") != 1 {
		t.Fatalf("future origins counted %v", e.ignored("future"))
	}
	e.read(t, "/api/contacts/x-3", `{"id":"x-3","created_at":"yesterday"}`, 200)
	if _, src := e.origin(t, "x-3"); src != cache.OriginObserved || e.ignored("unparsable") != 1 {
		t.Fatalf("unparsable created_at: origin %s, counted %v", src, e.ignored("unparsable"))
	}
	// A list: each item's own created_at.
	older := now.Add(-40 * 24 * time.Hour)
	e.read(t, "/api/contacts", fmt.Sprintf(`{"data":[{"id":"x-4","created_at":%q},{"id":"x-5"}],"page":1,"total":2}`, older.Format(time.RFC3339)), 200)
	if at, src := e.origin(t, "x-4"); src != cache.OriginStated || !at.Equal(older) {
		t.Fatalf("list item origin = %s %s", at, src)
	}
	if _, src := e.origin(t, "x-5"); src != cache.OriginObserved {
		t.Fatalf("list item without created_at: %s", src)
	}
	// An item stating its creation twice is not guessed at: first seen.
	e.read(t, "/api/contacts", fmt.Sprintf(`{"data":[{"id":"x-6","created_at":%q,"created_at":%q}],"page":1,"total":1}`,
		older.Format(time.RFC3339), now.Add(-time.Hour).Format(time.RFC3339)), 200)
	if at, src := e.origin(t, "x-6"); src != cache.OriginObserved || !at.Equal(now) {
		t.Fatalf("item with two created_at: origin %s %s, want first seen now", at, src)
	}
	// The seed's subjects have an operator's origin: answers change nothing.
	e.read(t, "/api/contacts/c-1", fmt.Sprintf(`{"id":"c-1","created_at":%q}`, now.Add(-5000*24*time.Hour).Format(time.RFC3339)), 200)
	if at, src := e.origin(t, "c-1"); src != cache.OriginSet || !at.Equal(now.Add(-100*24*time.Hour)) {
		t.Fatalf("c-1 origin = %s %s", at, src)
	}
}

func TestParseInstantFormats(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"2026-01-02T03:04:05Z", true}, {"2026-01-02T03:04:05.123+02:00", true}, {"2026-01-02 03:04:05", true},
		{"2026-01-02", true}, {"1767225600", true}, {"1767225600000", true},
		{"", false}, {"0", false}, {"-5", false}, {"0001-01-01T00:00:00Z", false}, {"soon", false}, {strings.Repeat("9", 80), false},
	} {
		if _, ok := gate.ParseInstant(tc.in); ok != tc.ok {
			t.Errorf("ParseInstant(%q) ok = %v, want %v", tc.in, ok, tc.ok)
		}
	}
}
