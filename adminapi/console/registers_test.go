package console_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// editDoc changes members of the JSON document in the tab's register
// editor, as a user typing into it would.
func (tb *tab) editDoc(js string) {
	tb.t.Helper()
	tb.do(chromedp.Evaluate[chromedp.Void](`(() => { const t = document.querySelector('#editor-slot textarea[name="doc"]'); const v = JSON.parse(t.value); ` + js + `; t.value = JSON.stringify(v, null, 2); t.dispatchEvent(new Event('input')) })()`))
}

// Two admins (two tabs) edit the customer-care purpose. The first previews
// shortening its archivation period — the subjects that would move to
// archived — while the second renames it and saves. The first one's save
// is then a conflict: nothing is overwritten, their text is kept, and the
// current version (with the rename) can be loaded.
func TestTwoTabsEditingARegisterSeeAConflictAndTheImpactPreview(t *testing.T) {
	a := startApp(t)
	one, two := openTab(t, a), openTab(t, a)
	row := `#register tr[data-key="customer-care"]`
	for _, tb := range []*tab{one, two} {
		tb.signIn(adminToken)
		tb.goTo("#/registers/purposes")
		tb.waitFor("the purposes", `document.querySelector('#register tr[data-key="customer-care"]')`)
		tb.press(row + ` button[data-action="edit"]`)
		tb.waitFor("the editor", `document.activeElement && document.activeElement.id === 'editor-title'`)
	}
	if txt := one.text(row); !strings.Contains(txt, "Customer care") || !strings.Contains(txt, "365") {
		t.Fatalf("customer-care row %q", txt)
	}

	one.editDoc(`v.archivation_period = 30`)
	one.press("#editor-preview")
	one.waitFor("the impact", `document.querySelector('#editor-impact')`)
	impact := one.text("#editor-impact")
	if !strings.Contains(impact, "would change state") || !strings.Contains(impact, "active → archived") || !strings.Contains(impact, "nothing was changed") {
		t.Errorf("impact %q", impact)
	}
	if strings.Contains(impact, " 0 would change state") {
		t.Errorf("shortening the archivation period changes no subject: %q", impact)
	}

	two.editDoc(`v.name = 'Customer care (renamed in tab two)'`)
	two.press("#editor-save")
	two.waitFor("the save", `document.getElementById('status').textContent.startsWith('Saved purposes/customer-care')`)
	two.waitFor("tab two's list with the new name", `(document.querySelector('#register tr[data-key="customer-care"]') || {textContent: ''}).textContent.includes('renamed in tab two')`)

	one.press("#editor-save")
	one.waitFor("the conflict", `document.querySelector('#editor-conflict') && document.activeElement && document.activeElement.id === 'editor-load'`)
	if txt := one.text("#editor-conflict"); !strings.Contains(txt, "Nothing was overwritten") {
		t.Errorf("conflict %q", txt)
	}
	cur := apiJSON[struct {
		Name              string `json:"name"`
		ArchivationPeriod int    `json:"archivation_period"`
	}](t, a, "GET", "/v1/purposes/customer-care", "")
	if cur.Name != "Customer care (renamed in tab two)" || cur.ArchivationPeriod != 365 {
		t.Fatalf("the stale save changed the purpose: %+v", cur)
	}
	one.key("\r")
	one.waitFor("the current version", `document.querySelector('#editor-mine')`)
	if doc := eval[string](one, `document.querySelector('#editor-slot textarea').value`); !strings.Contains(doc, "renamed in tab two") || !strings.Contains(doc, `"archivation_period": 365`) {
		t.Errorf("loaded document %s", doc)
	}
	if mine := one.text("#editor-mine"); !strings.Contains(mine, `"archivation_period": 30`) {
		t.Errorf("the user's edit is not kept: %s", mine)
	}
	one.zoom200()
	one.noHorizontalOverflow("the register editor at 200 % zoom")
}

// Legalisations show their status (prepared, active, retired) in words.
func TestLegalisationsShowTheirStatus(t *testing.T) {
	a := startApp(t)
	tb := openTab(t, a)
	tb.signIn(adminToken)
	tb.goTo("#/registers/legalisations")
	tb.waitFor("the legalisations", `document.querySelectorAll('#register tbody tr').length > 0`)
	statuses := eval[[]string](tb, `[...document.querySelectorAll('#register tbody .badge')].map(b => b.className + ' ' + b.textContent)`)
	if len(statuses) == 0 || !strings.Contains(strings.Join(statuses, ","), "lg-active active") {
		t.Fatalf("statuses %q", statuses)
	}
}

// A purpose still named by legalisations is not deleted: the console shows
// which ones. A new purpose is created from the editor and deleted again.
func TestRegisterRecordsAreCreatedDeletedAndInUseIsExplained(t *testing.T) {
	a := startApp(t)
	tb := openTab(t, a)
	tb.signIn(adminToken)
	tb.goTo("#/registers/purposes")
	tb.waitFor("the purposes", `document.querySelector('#register tr[data-key="customer-care"]')`)

	tb.press(`#register tr[data-key="customer-care"] button[data-action="delete"]`)
	tb.waitFor("the confirmation", `document.activeElement && document.activeElement.id === 'confirm-title'`)
	tb.press("#confirm-action")
	tb.waitFor("the refusal", `document.querySelector('#editor-slot .alert.error')`)
	if txt := tb.text("#editor-slot .alert.error"); !strings.Contains(txt, "in_use") || !strings.Contains(txt, "legalisations/contract-care") {
		t.Errorf("refusal %q", txt)
	}
	apiJSON[map[string]any](t, a, "GET", "/v1/purposes/customer-care", "")
	tb.press("#confirm-back")

	tb.press("#register-new")
	tb.waitFor("the editor", `document.activeElement && document.activeElement.id === 'editor-title'`)
	tb.editDoc(`v.id = 'research'; v.name = 'Research'`)
	tb.press("#editor-save")
	tb.waitFor("the new purpose", `document.querySelector('#register tr[data-key="research"]')`)
	if s := tb.text("#status"); !strings.HasPrefix(s, "Saved purposes/research") {
		t.Errorf("status %q", s)
	}
	if p := apiJSON[struct {
		Name string `json:"name"`
	}](t, a, "GET", "/v1/purposes/research", ""); p.Name != "Research" {
		t.Fatalf("created %+v", p)
	}
	tb.press(`#register tr[data-key="research"] button[data-action="delete"]`)
	tb.waitFor("the confirmation", `document.activeElement && document.activeElement.id === 'confirm-title'`)
	tb.press("#confirm-action")
	tb.waitFor("the purpose gone", `document.querySelector('#register tr[data-key="customer-care"]') && !document.querySelector('#register tr[data-key="research"]')`)
	if res := apiGet(t, a, "/v1/purposes/research"); res.StatusCode != 404 {
		t.Errorf("after delete: %d", res.StatusCode)
	}
}

// Turning GDPR enforcement off from the configuration editor needs an
// explicit confirmation (the server's "confirm": true), and the page then
// says what it means.
func TestConfigurationEditTurningEnforcementOffNeedsAConfirmation(t *testing.T) {
	a := startApp(t)
	tb := openTab(t, a)
	tb.signIn(adminToken)
	tb.goTo("#/registers/config")
	tb.press("#config-edit")
	tb.waitFor("the editor", `document.activeElement && document.activeElement.id === 'editor-title'`)
	tb.editDoc(`v.gdpr_enforced = false`)
	tb.press("#editor-save")
	tb.waitFor("the confirmation", `document.activeElement && document.activeElement.id === 'editor-confirm'`)
	type cfg struct {
		GdprEnforced bool `json:"gdpr_enforced"`
	}
	if !apiJSON[cfg](t, a, "GET", "/v1/config", "").GdprEnforced {
		t.Fatal("enforcement was turned off without the confirmation")
	}
	tb.key("\r")
	tb.waitFor("the saved configuration", `document.getElementById('status').textContent.startsWith('Saved config') && document.querySelector('#config .flag-on')`)
	if apiJSON[cfg](t, a, "GET", "/v1/config", "").GdprEnforced {
		t.Fatal("enforcement is still on after the confirmed save")
	}
}
