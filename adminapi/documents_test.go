package adminapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/memstore"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/model"
)

// wholeConfig is the test seed's config with the members in set (a JSON
// object's inside, `"suspend_wipes":true`) changed: a complete PUT body.
func wholeConfig(set string) string {
	m := map[string]any{
		"gdpr_enforced": true, "default_sensitivity": 2, "identity_entity": "contact",
		"phone_number_sensitivity": 2, "suspend_wipes": false, "suspend_wipe_issue": false,
	}
	var over map[string]any
	if err := json.Unmarshal([]byte("{"+set+"}"), &over); err != nil {
		panic(err)
	}
	for k, v := range over {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func fieldsOf(t *testing.T, r resp) []string {
	t.Helper()
	var fields []string
	errs, _ := r.json(t)["errors"].([]any)
	for _, fe := range errs {
		fields = append(fields, fe.(map[string]any)["field"].(string))
	}
	return fields
}

func (e *env) config() model.Config {
	e.t.Helper()
	ix, err := e.store.Registers(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return ix.Registers.Config
}

// TestPartialConfigPutIsRefused is the side door of issue 10 §4: a PUT of
// one setting with edit_items used to store gdpr_enforced=false and an
// empty identity_entity, and agents saw archived data and health notes.
func TestPartialConfigPutIsRefused(t *testing.T) {
	e := newEnv(t)
	before := e.snapshot()
	r := e.do("PUT", "/v1/config", ScopeEditItems, `{"suspend_wipes":true}`)
	if r.status != 422 || r.json(t)["error"] != "validation_failed" {
		t.Fatalf("partial PUT: %d %s", r.status, r.body)
	}
	fields := fieldsOf(t, r)
	for _, f := range []string{"gdpr_enforced", "identity_entity", "default_sensitivity", "phone_number_sensitivity", "suspend_wipe_issue"} {
		if !slices.Contains(fields, f) {
			t.Errorf("422 does not name the missing %q (names %v)", f, fields)
		}
	}
	if e.snapshot() != before {
		t.Fatal("refused PUT changed state")
	}
	if c := e.config(); !c.GdprEnforced || c.IdentityEntity != "contact" {
		t.Fatalf("config after refused PUT: %+v", c)
	}
}

func TestConfigPatchChangesOnlyTheNamedMembers(t *testing.T) {
	e := newEnv(t)
	r := e.do("PATCH", "/v1/config", ScopeEditItems, `{"suspend_wipes":true}`, "Content-Type: application/merge-patch+json")
	if r.status != 200 || r.header.Get("ETag") != `"2"` {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	c := e.config()
	if !c.SuspendWipes || !c.GdprEnforced || c.IdentityEntity != "contact" || c.DefaultSensitivity != 2 {
		t.Fatalf("config after patch: %+v", c)
	}
	a := e.lastAudit()
	if a.Action != "config.patch" || a.Detail["config_changed"] != "suspend_wipes" || a.Actor != "tok-edit_items" {
		t.Fatalf("audit: %+v", a)
	}
	// application/json is taken as a merge patch too; a JSON Patch (RFC
	// 6902) is not, and a patch cannot remove a member that must exist.
	if r = e.do("PATCH", "/v1/config", ScopeEditItems, `{"suspend_wipe_issue":true}`); r.status != 200 {
		t.Fatalf("patch as application/json: %d %s", r.status, r.body)
	}
	before := e.snapshot()
	if r = e.do("PATCH", "/v1/config", ScopeEditItems, `[{"op":"replace","path":"/gdpr_enforced","value":false}]`, "Content-Type: application/json-patch+json"); r.status != 415 {
		t.Fatalf("JSON Patch: %d %s", r.status, r.body)
	}
	if r = e.do("PATCH", "/v1/config", ScopeEditItems, `{"identity_entity":null}`); r.status != 422 || !slices.Contains(fieldsOf(t, r), "identity_entity") {
		t.Fatalf("removing identity_entity: %d %s", r.status, r.body)
	}
	if r = e.do("PATCH", "/v1/config", ScopeEditItems, `{"gdpr_enforced":null}`); r.status != 422 || !slices.Contains(fieldsOf(t, r), "gdpr_enforced") {
		t.Fatalf("removing gdpr_enforced: %d %s", r.status, r.body)
	}
	if r = e.do("PATCH", "/v1/config", ScopeEditItems, `[]`); r.status != 400 {
		t.Fatalf("array patch: %d %s", r.status, r.body)
	}
	if e.snapshot() != before {
		t.Fatal("a refused patch changed state")
	}
}

// TestAmbiguousBodiesAreRefused: what encoding/json reads one way and a
// proxy, a log or another JSON parser may read another.
func TestAmbiguousBodiesAreRefused(t *testing.T) {
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"duplicate member", "PUT", "/v1/config", strings.TrimSuffix(wholeConfig(""), "}") + `,"gdpr_enforced":false}`, 400, "duplicate_field"},
		{"duplicate after unescaping", "PUT", "/v1/config", strings.TrimSuffix(wholeConfig(""), "}") + `,"gdpr_enforce\u0064":false}`, 400, "duplicate_field"},
		{"member differing only in case", "PUT", "/v1/config", strings.TrimSuffix(wholeConfig(""), "}") + `,"GDPR_ENFORCED":false}`, 400, "unknown_field"},
		{"case variant in a patch", "PATCH", "/v1/config", `{"Gdpr_Enforced":false}`, 400, "unknown_field"},
		{"duplicate in a patch", "PATCH", "/v1/config", `{"suspend_wipes":true,"suspend_wipes":false}`, 400, "duplicate_field"},
		{"duplicate in a create", "POST", "/v1/categories", `{"id":"c","name":"C","article":"6.1.a","article":"9.2.a"}`, 400, "duplicate_field"},
		{"duplicate in a nested item", "PATCH", "/v1/registers", `{"roles":[{"name":"x","sensitivity_mask":1,"sensitivity_mask":15}]}`, 400, "duplicate_field"},
		{"null body", "PUT", "/v1/config", `null`, 400, "malformed_json"},
		{"null for a boolean", "PUT", "/v1/config", wholeConfig(`"gdpr_enforced":null`), 422, "validation_failed"},
		{"null for an object", "POST", "/v1/evidence", `{"subject":null,"legalisation_id":"contract-care","origin":"2026-05-01T00:00:00Z"}`, 422, "validation_failed"},
		{"null config in the registers", "PATCH", "/v1/registers", `{"config":{"suspend_wipes":true,"default_sensitivity":null}}`, 422, "validation_failed"},
		{"confirm that is not a boolean", "PUT", "/v1/config", strings.TrimSuffix(wholeConfig(""), "}") + `,"confirm":"yes"}`, 422, "validation_failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			before := e.snapshot()
			r := e.do(tc.method, tc.path, ScopeAdmin, tc.body)
			if r.status != tc.status || r.json(t)["error"] != tc.code {
				t.Fatalf("%d %s, want %d %s", r.status, r.body, tc.status, tc.code)
			}
			if e.snapshot() != before {
				t.Fatal("refused request changed state")
			}
		})
	}
}

// TestTurningEnforcementOffNeedsAdminAndConfirm covers every write that can
// switch gdpr_enforced off.
func TestTurningEnforcementOffNeedsAdminAndConfirm(t *testing.T) {
	e0 := newEnv(t)
	regs := e0.do("GET", "/v1/registers", ScopeAdmin, "")
	var whole map[string]any
	if err := json.Unmarshal(regs.body, &whole); err != nil {
		t.Fatal(err)
	}
	whole["config"].(map[string]any)["gdpr_enforced"] = false
	wholeRegs := func(confirm bool) string {
		m := map[string]any{}
		for k, v := range whole {
			m[k] = v
		}
		if confirm {
			m["confirm"] = true
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	writes := []struct {
		name, method, path, scope string
		body, confirmed           string
	}{
		{"PUT config", "PUT", "/v1/config", ScopeEditItems, wholeConfig(`"gdpr_enforced":false`), wholeConfig(`"gdpr_enforced":false,"confirm":true`)},
		{"PATCH config", "PATCH", "/v1/config", ScopeEditItems, `{"gdpr_enforced":false}`, `{"gdpr_enforced":false,"confirm":true}`},
		{"PUT registers", "PUT", "/v1/registers", ScopeAdmin, wholeRegs(false), wholeRegs(true)},
		{"PATCH registers", "PATCH", "/v1/registers", ScopeAdmin, `{"config":{"gdpr_enforced":false}}`, `{"config":{"gdpr_enforced":false},"confirm":true}`},
	}
	for _, wr := range writes {
		t.Run(wr.name, func(t *testing.T) {
			e := newEnv(t)
			before := e.snapshot()
			if wr.scope == ScopeEditItems {
				r := e.do(wr.method, wr.path, ScopeEditItems, wr.confirmed)
				if r.status != 403 || !strings.Contains(r.json(t)["message"].(string), "admin") {
					t.Fatalf("edit_items turning enforcement off: %d %s", r.status, r.body)
				}
			}
			r := e.do(wr.method, wr.path, ScopeAdmin, wr.body)
			if r.status != 422 || !slices.Contains(fieldsOf(t, r), "confirm") {
				t.Fatalf("admin without confirm: %d %s", r.status, r.body)
			}
			if e.snapshot() != before {
				t.Fatal("a refused switch changed state")
			}
			if r := e.do("GET", "/readyz", "", ""); r.status != 200 {
				t.Fatalf("readyz before the switch: %d %s", r.status, r.body)
			}
			r = e.do(wr.method, wr.path, ScopeAdmin, wr.confirmed)
			if r.status != 200 {
				t.Fatalf("admin with confirm: %d %s", r.status, r.body)
			}
			if e.config().GdprEnforced {
				t.Fatal("gdpr_enforced still on")
			}
			a := e.lastAudit()
			if a.Detail["gdpr_enforced"] != "off" || a.Actor != "tok-admin" || !strings.Contains(a.Detail["config_changed"], "gdpr_enforced") {
				t.Fatalf("audit entry: %+v", a)
			}
			r = e.do("GET", "/readyz", "", "")
			if r.status != 503 || !strings.Contains(string(r.body), "gdpr_enforced") {
				t.Fatalf("readyz with enforcement off: %d %s", r.status, r.body)
			}
			// Turning it back on needs no more than the route's scope.
			if r = e.do("PATCH", "/v1/config", ScopeEditItems, `{"gdpr_enforced":true}`); r.status != 200 || e.lastAudit().Detail["gdpr_enforced"] != "on" {
				t.Fatalf("back on: %d %s", r.status, r.body)
			}
		})
	}
}

func TestItemPutNeedsTheWholeItemAndPatchMergesIt(t *testing.T) {
	e := newEnv(t)
	before := e.snapshot()
	// Leaving out "special" used to store false: Art. 9 health data then
	// became coverable by any legal ground.
	r := e.do("PUT", "/v1/sensitivities/health", ScopeEditItems, `{"bit":3,"name":"health"}`)
	if r.status != 422 {
		t.Fatalf("partial item PUT: %d %s", r.status, r.body)
	}
	fields := fieldsOf(t, r)
	for _, f := range []string{"special", "grace_period", "archivation_period", "expiration_period", "obliviation_period"} {
		if !slices.Contains(fields, f) {
			t.Errorf("422 does not name %q (names %v)", f, fields)
		}
	}
	if slices.Contains(fields, "id") || slices.Contains(fields, "description") {
		t.Errorf("the key (in the path) and omitempty members are optional, got %v", fields)
	}
	if e.snapshot() != before {
		t.Fatal("refused PUT changed state")
	}
	whole := `{"bit":3,"name":"health","special":true,"grace_period":0,"archivation_period":null,"expiration_period":null,"obliviation_period":null}`
	if r = e.do("PUT", "/v1/sensitivities/health", ScopeEditItems, whole); r.status != 200 {
		t.Fatalf("whole item PUT: %d %s", r.status, r.body)
	}
	// PATCH: null sets a nullable member to null; a rename is refused.
	if r = e.do("PATCH", "/v1/sensitivities/contact", ScopeEditItems, `{"archivation_period":null,"description":"name, phone"}`); r.status != 200 {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	ix, _ := e.store.Registers(context.Background())
	s := ix.Sensitivities["contact"]
	if s == nil || s.ArchivationPeriod != nil || s.Description != "name, phone" || s.GracePeriod == nil || *s.GracePeriod != 30 {
		t.Fatalf("after patch: %+v", s)
	}
	if r = e.do("PATCH", "/v1/sensitivities/contact", ScopeEditItems, `{"id":"other"}`); r.status != 422 {
		t.Fatalf("rename by patch: %d %s", r.status, r.body)
	}
	if r = e.do("PATCH", "/v1/sensitivities/contact", ScopeEditItems, `{"special":null}`); r.status != 422 || !slices.Contains(fieldsOf(t, r), "special") {
		t.Fatalf("removing special: %d %s", r.status, r.body)
	}
	if r = e.do("PATCH", "/v1/sensitivities/nope", ScopeEditItems, `{"name":"x"}`); r.status != 404 {
		t.Fatalf("patch of a missing item: %d %s", r.status, r.body)
	}
	// The legalisation's derived status may come back in a patch, ignored.
	if r = e.do("PATCH", "/v1/legalisations/contract-care", ScopeEditItems, `{"name":"CC 2","status":"retired"}`); r.status != 200 || r.json(t)["status"] != "active" {
		t.Fatalf("legalisation patch: %d %s", r.status, r.body)
	}
}

func TestWholeRegistersPutNamesMissingMembersAtEveryLevel(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/v1/registers", ScopeAdmin, "")
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "roles")
	delete(m["sensitivities"].([]any)[1].(map[string]any), "special")
	delete(m["config"].(map[string]any), "gdpr_enforced")
	b, _ := json.Marshal(m)
	before := e.snapshot()
	r = e.do("PUT", "/v1/registers", ScopeAdmin, string(b))
	if r.status != 422 {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	fields := fieldsOf(t, r)
	for _, f := range []string{"roles", "sensitivities[1].special", "config.gdpr_enforced"} {
		if !slices.Contains(fields, f) {
			t.Errorf("422 does not name %q (names %v)", f, fields)
		}
	}
	if e.snapshot() != before {
		t.Fatal("refused PUT changed state")
	}
	// A merge patch replaces arrays whole; its items must be whole too.
	r = e.do("PATCH", "/v1/registers", ScopeAdmin, `{"roles":[{"name":"agent","sensitivity_mask":7}]}`)
	if r.status != 422 || !slices.Contains(fieldsOf(t, r), "roles[0].view_archived") {
		t.Fatalf("patch with a partial item: %d %s", r.status, r.body)
	}
	if e.snapshot() != before {
		t.Fatal("refused PATCH changed state")
	}
}

// TestBearerSchemeIsCaseInsensitive: RFC 9110 11.1, auth schemes are
// case-insensitive.
func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	e := newEnv(t)
	for _, h := range []string{"bearer " + ScopeEditItems, "BEARER " + ScopeEditItems, "BeArEr   " + ScopeEditItems} {
		r := e.do("GET", "/v1/config", "", "", "Authorization: "+h)
		if r.status != 200 {
			t.Errorf("%q: %d %s", h, r.status, r.body)
		}
	}
	for _, h := range []string{"Basic " + ScopeEditItems, "Bearer", "Bearer ", "Bearer" + ScopeEditItems} {
		if r := e.do("GET", "/v1/config", "", "", "Authorization: "+h); r.status != 401 {
			t.Errorf("%q: %d, want 401", h, r.status)
		}
	}
}

// failingUnrestrict is the store with Unrestrict failing while fail is set.
type failingUnrestrict struct {
	cache.Store
	fail bool
}

func (f *failingUnrestrict) Unrestrict(ctx context.Context, ref model.SubjectRef, wipeID string, entry audit.Entry) error {
	if f.fail {
		return fmt.Errorf("unrestrict: %w", cache.ErrUnavailable)
	}
	return f.Store.Unrestrict(ctx, ref, wipeID, entry)
}

// TestWipeCancelIsNeverUnaudited: a cancel used to save the cancelled wipe
// and then write its audit entry with the lift (or on its own); when that
// second write failed, the change stood with no audit entry (issue 10 §7).
// Now the cancellation is saved with its entry, and a failed lift leaves
// the subject restricted until the DELETE is repeated.
func TestWipeCancelIsNeverUnaudited(t *testing.T) {
	var fs *failingUnrestrict
	e := newEnv(t, func(o *Options) {
		fs = &failingUnrestrict{Store: o.Store}
		o.Store = fs
	})
	ctx := context.Background()
	c7 := model.SubjectRef{Entity: "contact", ID: "c-7"}
	r := e.do("POST", "/v1/wipes", ScopeWipe, `{"entity":"contact","id":"c-7"}`)
	if r.status != 202 {
		t.Fatalf("wipe: %d %s", r.status, r.body)
	}
	id := r.json(t)["id"].(string)

	fs.fail = true
	r = e.do("DELETE", "/v1/wipes/"+id, ScopeWipe, "")
	if r.status != 503 {
		t.Fatalf("cancel with a failing lift: %d %s", r.status, r.body)
	}
	if rec, _ := e.store.Wipe(ctx, id); rec.Status != cache.WipeCancelled {
		t.Fatalf("wipe %s after the cancel", rec.Status)
	}
	if a := e.lastAudit(); a.Action != "wipe.cancel" || a.Object != "wipes/"+id {
		t.Fatalf("the saved cancellation has no audit entry; last is %+v", a)
	}
	if f, _ := e.store.Facts(ctx, c7, e.now); !f.Restricted {
		t.Fatal("the subject was unrestricted although the lift failed")
	}

	fs.fail = false
	if r = e.do("DELETE", "/v1/wipes/"+id, ScopeWipe, ""); r.status != 200 {
		t.Fatalf("repeated cancel: %d %s", r.status, r.body)
	}
	if f, _ := e.store.Facts(ctx, c7, e.now); f.Restricted {
		t.Fatal("the repeated cancel did not lift the restriction")
	}
	if a := e.lastAudit(); a.Action != "subject.unrestrict" || a.Object != "wipes/"+id {
		t.Fatalf("lift not audited: %+v", a)
	}
	if r = e.do("DELETE", "/v1/wipes/"+id, ScopeWipe, ""); r.status != 409 {
		t.Fatalf("third cancel: %d %s", r.status, r.body)
	}
}

// TestReadyzNotReadyWithoutRegisters: a store nobody loaded has no
// registers; /readyz says so instead of a misleading reason.
func TestReadyzNotReadyWithoutRegisters(t *testing.T) {
	s, err := New(Options{Store: memstore.New(cache.Options{}), Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	defer hs.Close()
	res, err := http.Get(hs.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 503 || !strings.Contains(string(b), "registers: none loaded yet") {
		t.Fatalf("readyz %d %s", res.StatusCode, b)
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
