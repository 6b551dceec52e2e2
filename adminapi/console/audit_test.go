package console_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gdprgate/gdprgate/internal/testid"
)

// An auditor's token (scope audit_read) sees only the audit trail. They
// filter it by action prefix and subject (matched through the subject's
// keyed hash: ids are never in the trail) with the keyboard, and export the
// same selection as NDJSON.
func TestAuditTrailIsFilteredBySubjectAndExported(t *testing.T) {
	a := startApp(t)
	for _, id := range []string{"c-7", "c-9"} {
		apiJSON[map[string]any](t, a, "POST", "/v1/wipes", fmt.Sprintf(`{"entity":"contact","id":%q}`, id))
	}
	apiJSON[map[string]any](t, a, "PATCH", "/v1/purposes/marketing", `{"name":"Marketing (audited)"}`)
	type entry struct {
		Action  string `json:"action"`
		Subject string `json:"subject"`
	}
	want := apiJSON[struct {
		Entries []entry `json:"entries"`
	}](t, a, "GET", "/v1/audit?action=wipe.&entity=contact&id=c-7", "").Entries
	if len(want) == 0 {
		t.Fatal("no wipe entry for c-7 in the trail")
	}

	tb := openTab(t, a)
	tb.signIn(auditToken)
	tb.waitFor("the audit page", `location.hash === '#/audit' && document.querySelectorAll('#audit tbody tr').length > 0`)
	if nav := tb.text("#nav"); nav != "Audit trail" {
		t.Errorf("an audit_read token is offered the pages %q", nav)
	}
	if !strings.Contains(tb.text("#audit"), "register.patch") {
		t.Errorf("the unfiltered trail lacks the register change: %s", tb.text("#audit"))
	}

	tb.focus(`input[name="action"]`)
	tb.key("wipe.")
	tb.focus(`input[name="entity"]`)
	tb.key("contact")
	tb.focus(`input[name="id"]`)
	tb.key("c-7")
	tb.key("\r")
	tb.waitFor("the filtered trail", fmt.Sprintf(`location.hash.includes('id=c-7') && document.querySelectorAll('#audit tbody tr').length === %d`, len(want)))
	actions := eval[[]string](tb, `[...document.querySelectorAll('#audit tbody tr td:nth-child(3)')].map(td => td.textContent)`)
	for _, act := range actions {
		if !strings.HasPrefix(act, "wipe.") {
			t.Errorf("filtered row with action %q", act)
		}
	}
	subjects := eval[[]string](tb, `[...document.querySelectorAll('#audit tbody tr td:nth-child(5) code')].map(c => c.title)`)
	for _, s := range subjects {
		if s != want[0].Subject {
			t.Errorf("row of subject %s, want only c-7's hash %s", s, want[0].Subject)
		}
	}
	if testid.MentionsID(tb.text("#audit"), "c-7") {
		t.Error("the trail shows a subject id in clear")
	}

	tb.press("#export")
	tb.waitFor("the export", `document.activeElement && document.activeElement.id === 'export-link'`)
	if n := eval[string](tb, `document.getElementById('export-link').dataset.lines`); n != fmt.Sprint(len(want)) {
		t.Errorf("exported %s lines, want %d", n, len(want))
	}
	if !tb.requested("format=ndjson") || !strings.HasSuffix(eval[string](tb, `document.getElementById('export-link').download`), ".ndjson") {
		t.Error("the export is not the NDJSON selection saved as a file")
	}
	tb.zoom200()
	tb.noHorizontalOverflow("the audit trail at 200 % zoom")
}
