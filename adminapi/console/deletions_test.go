package console_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp/kb"

	"github.com/gdprgate/gdprgate/internal/config"
)

// deletion is the part of an admin API deletion record the tests read.
type deletion struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Kind    string `json:"kind"`
	Subject struct {
		Entity string `json:"entity"`
		ID     string `json:"id"`
	} `json:"subject"`
	DecidedBy string `json:"decided_by"`
}

func apiJSON[T any](t *testing.T, a *consoleApp, method, path, body string) T {
	t.Helper()
	res := apiDo(t, a, method, path, body)
	defer res.Body.Close()
	var v T
	if err := json.NewDecoder(res.Body).Decode(&v); err != nil || res.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %v", method, path, res.StatusCode, err)
	}
	return v
}

func held(t *testing.T, a *consoleApp) []deletion {
	t.Helper()
	return apiJSON[struct {
		Deletions []deletion `json:"deletions"`
	}](t, a, "GET", "/v1/deletions?state=held", "").Deletions
}

// press focuses an element and presses Enter on it, as a keyboard user
// does (the element must be focusable).
func (tb *tab) press(sel string) {
	tb.t.Helper()
	tb.focus(sel)
	tb.key("\r")
}

// focus moves the focus to an element (which must take it).
func (tb *tab) focus(sel string) {
	tb.t.Helper()
	tb.waitFor(sel, fmt.Sprintf(`document.querySelector(%q)`, sel))
	if !eval[bool](tb, fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.focus(); return document.activeElement === e })()`, sel)) {
		tb.t.Fatalf("%s cannot take the focus", sel)
	}
}

// The sweeper holds lifecycle deletions for approval (lifecycle.deletions:
// hold): Eve (c-5) is obliviated, so her whole record is to be wiped, and
// several contacts' health notes are to be erased. A DPO previews Eve's
// wipe (the backend calls), backs out of the confirmation with Escape,
// approves it, rejects two erasures together, and approves three more past
// the mass-deletion guard (wipes.per_minute: 2) — all with the keyboard.
func TestApproveAndRejectHeldDeletionsAfterPreviewingThem(t *testing.T) {
	a := startApp(t, func(c *config.Config) { c.Wipes.PerMinute = 2 })
	if _, err := a.sc.App.Sweeper.Pass(t.Context()); err != nil {
		t.Fatal(err)
	}
	hs := held(t, a)
	byID := map[string]deletion{}
	var eve deletion
	var erasures []deletion
	for _, d := range hs {
		byID[d.ID] = d
		switch {
		case d.Subject.ID == "c-5" && d.Kind == "wipe":
			eve = d
		case d.Kind == "erasure":
			erasures = append(erasures, d)
		}
	}
	if eve.ID == "" || len(erasures) < 5 {
		t.Fatalf("the scenario holds %+v", hs)
	}

	tb := openTab(t, a)
	tb.signIn(adminToken)
	tb.goTo("#/deletions")
	tb.waitFor("the held deletions", fmt.Sprintf(`document.querySelectorAll('#held tbody tr').length === %d`, len(hs)))
	row := fmt.Sprintf(`#held tr[data-id=%q]`, eve.ID)
	if txt := tb.text(row); !strings.Contains(txt, "contact/c-5") || !strings.Contains(txt, "the whole subject (WipeCtcAll)") {
		t.Fatalf("Eve's row: %q", txt)
	}
	// The preview lists the backend calls; Enter on its summary opens it.
	tb.press(row + " details.preview summary")
	tb.waitFor("the preview", fmt.Sprintf(`document.querySelector(%q).open`, row+" details.preview"))
	if p := tb.text(row + " details.preview ol"); !strings.Contains(p, "DELETE /api/contacts/c-5") || !strings.Contains(p, "DELETE /api/issues?contact_id=c-5") {
		t.Fatalf("preview %q", p)
	}
	tb.noHorizontalOverflow("the held deletions")

	// Approve…: a confirmation names the calls; Escape backs out of it and
	// the focus returns to the button; nothing was decided.
	tb.press(row + ` button[data-action="approve"]`)
	tb.waitFor("the confirmation", `document.activeElement && document.activeElement.id === 'confirm-title'`)
	if h := tb.text("#confirm-title"); h != "Approve 1 held deletion?" {
		t.Fatalf("confirmation %q", h)
	}
	if !strings.Contains(tb.text("#confirm-slot"), "DELETE /api/contacts/c-5/calls") {
		t.Fatalf("the confirmation does not list the calls: %q", tb.text("#confirm-slot"))
	}
	// The server's preview of the decision: what the guard would count.
	if g := tb.text("#decide-guard"); !strings.Contains(g, "counts 1 deletion ") || !strings.Contains(g, "admits 2 per minute") {
		t.Errorf("guard preview %q", g)
	}
	tb.key(kb.Escape)
	tb.waitFor("the panel to close", `document.querySelector('#confirm-slot').childElementCount === 0`)
	if f := tb.focused(); !strings.HasPrefix(f, "button||Approve…") {
		t.Errorf("after Escape the focus is on %q", f)
	}
	if len(held(t, a)) != len(hs) {
		t.Fatal("backing out decided something")
	}

	tb.press(row + ` button[data-action="approve"]`)
	tb.waitFor("the confirmation", `document.activeElement && document.activeElement.id === 'confirm-title'`)
	tb.press("#confirm-action")
	tb.waitFor("Eve's row to leave the held list", fmt.Sprintf(`!document.querySelector(%q) && document.querySelectorAll('#held tbody tr').length === %d`, row, len(hs)-1))
	if s := tb.text("#status"); s != "Approved 1 deletion." {
		t.Errorf("status %q", s)
	}
	got := apiJSON[deletion](t, a, "GET", "/v1/deletions/"+eve.ID, "")
	if got.Status != "queued" || got.DecidedBy != "dpo" {
		t.Fatalf("Eve's wipe after the approval: %+v", got)
	}

	// Two erasures selected with the keyboard (space on their boxes),
	// rejected together.
	for _, d := range erasures[:2] {
		tb.focus(fmt.Sprintf(`#held tr[data-id=%q] input.select`, d.ID))
		tb.key(" ")
	}
	tb.press("#reject-selected")
	tb.waitFor("the confirmation", `document.activeElement && document.activeElement.id === 'confirm-title'`)
	if h := tb.text("#confirm-title"); h != "Reject 2 held deletions?" {
		t.Fatalf("confirmation %q", h)
	}
	tb.press("#confirm-action")
	tb.waitFor("two rows fewer", fmt.Sprintf(`document.querySelectorAll('#held tbody tr').length === %d`, len(hs)-3))
	for _, d := range erasures[:2] {
		if got := apiJSON[deletion](t, a, "GET", "/v1/deletions/"+d.ID, ""); got.Status != "rejected" || got.DecidedBy != "dpo" {
			t.Errorf("rejected erasure: %+v", got)
		}
	}

	// Three more approved together: with one deletion admitted this minute
	// and a guard of 2, the server refuses (429) and nothing is decided;
	// the console says why and offers the approval past the guard.
	for _, d := range erasures[2:5] {
		tb.focus(fmt.Sprintf(`#held tr[data-id=%q] input.select`, d.ID))
		tb.key(" ")
	}
	tb.press("#approve-selected")
	tb.waitFor("the confirmation", `document.activeElement && document.activeElement.id === 'confirm-title'`)
	if g := tb.text("#decide-guard"); !strings.Contains(g, "counts 3 deletions") {
		t.Errorf("guard preview %q", g)
	}
	tb.press("#confirm-action")
	tb.waitFor("the guard's refusal", `document.activeElement && document.activeElement.id === 'confirm-guard'`)
	if txt := tb.text("#confirm-slot .alert"); !strings.Contains(txt, "mass-deletion guard") || !strings.Contains(txt, "mass_deletion_guard") {
		t.Errorf("guard message %q", txt)
	}
	if n := len(held(t, a)); n != len(hs)-3 {
		t.Fatalf("the refused approval decided something: %d held", n)
	}
	tb.key("\r")
	tb.waitFor("three rows fewer", fmt.Sprintf(`document.querySelectorAll('#held tbody tr').length === %d`, len(hs)-6))
	if s := tb.text("#status"); s != "Approved 3 deletions." {
		t.Errorf("status %q", s)
	}
	for _, d := range erasures[2:5] {
		if got := apiJSON[deletion](t, a, "GET", "/v1/deletions/"+d.ID, ""); got.Status != "queued" {
			t.Errorf("approved past the guard: %+v", got)
		}
	}

	// The queue shows the approved ones with their progress.
	tb.goTo("#/deletions?state=queued")
	tb.waitFor("the queue", `document.querySelectorAll('#queue tbody tr').length === 4`)
	if txt := tb.text(fmt.Sprintf(`#queue tr[data-id=%q]`, eve.ID)); !strings.Contains(txt, "0 of 3 steps done") || !strings.Contains(txt, "approved by dpo") {
		t.Errorf("Eve's queued wipe: %q", txt)
	}
	tb.zoom200()
	tb.noHorizontalOverflow("the queue at 200 % zoom")
}

// Wiping a subject is previewed first (the dry run's backend calls and the
// subjects below it: Niaj's phone number), needs the id typed again, and a wipe that has not
// deleted anything can be cancelled, which lifts the restriction.
func TestWipeIsPreviewedConfirmedAndCancelled(t *testing.T) {
	a := startApp(t)
	tb := openTab(t, a)
	tb.signIn(adminToken)
	// The subject page links here with the subject filled in.
	tb.goTo("#/subject?entity=contact&id=c-14")
	tb.waitFor("Niaj", `document.querySelectorAll('#bits tbody tr').length === 4`)
	tb.press(`main a[href^="#/deletions?"]`)
	tb.waitFor("the wipe form with the focus on its button", `location.hash.startsWith('#/deletions') && document.activeElement && document.activeElement.textContent === 'Preview the wipe'`)
	tb.key("\r")
	tb.waitFor("the dry run", `document.activeElement && document.activeElement.textContent.startsWith('Dry run')`)
	p := tb.text("#wipe-preview")
	for _, want := range []string{"DELETE /api/contacts/c-14", "DELETE /api/issues?contact_id=c-14", "below it", "phone_number/+493012345014"} {
		if !strings.Contains(p, want) {
			t.Errorf("the dry run lacks %q: %s", want, p)
		}
	}
	if r := apiJSON[struct {
		Restricted bool `json:"restricted"`
	}](t, a, "GET", "/v1/subjects/contact/c-14", ""); r.Restricted {
		t.Fatal("the dry run restricted Niaj")
	}
	// The button stays disabled until the id is typed exactly.
	if !eval[bool](tb, `document.getElementById('wipe-confirm').disabled`) {
		t.Fatal("the wipe button is enabled before the id is typed")
	}
	tb.noHorizontalOverflow("the wipe's dry run")
	tb.focus(`#wipe-preview input[name="confirm_id"]`)
	tb.key("c-1")
	if !eval[bool](tb, `document.getElementById('wipe-confirm').disabled`) {
		t.Fatal("the wipe button is enabled by a partial id")
	}
	tb.key("4")
	tb.waitFor("the wipe button", `!document.getElementById('wipe-confirm').disabled`)
	tb.press("#wipe-confirm")
	tb.waitFor("the queue", `location.hash === '#/deletions?state=queued' && document.querySelectorAll('#queue tbody tr').length >= 1`)
	if s := tb.text("#status"); !strings.Contains(s, "queued; contact/c-14 is hidden now") {
		t.Errorf("status %q", s)
	}
	ws := apiJSON[struct {
		Wipes []deletion `json:"wipes"`
	}](t, a, "GET", "/v1/wipes", "").Wipes
	var grace deletion
	for _, w := range ws {
		if w.Subject.ID == "c-14" && w.Status == "queued" {
			grace = w
		}
	}
	if grace.ID == "" {
		t.Fatalf("no queued wipe of c-14: %+v", ws)
	}
	if r := apiJSON[struct {
		Restricted bool `json:"restricted"`
	}](t, a, "GET", "/v1/subjects/contact/c-14", ""); !r.Restricted {
		t.Fatal("Niaj is not restricted by her wipe")
	}

	row := fmt.Sprintf(`#queue tr[data-id=%q]`, grace.ID)
	tb.press(row + ` button[data-action="cancel"]`)
	tb.waitFor("the confirmation", `document.activeElement && document.activeElement.id === 'confirm-title'`)
	tb.press("#confirm-action")
	tb.waitFor("the cancellation", fmt.Sprintf(`!document.querySelector(%q)`, row))
	if got := apiJSON[deletion](t, a, "GET", "/v1/wipes/"+grace.ID, ""); got.Status != "cancelled" {
		t.Fatalf("after cancel: %+v", got)
	}
	if r := apiJSON[struct {
		Restricted bool `json:"restricted"`
	}](t, a, "GET", "/v1/subjects/contact/c-14", ""); r.Restricted {
		t.Fatal("the cancel did not lift the restriction")
	}

	// Suspend flags: set with the config's ETag; a change made elsewhere
	// meanwhile is a conflict the page reports and then shows.
	tb.goTo("#/deletions")
	tb.waitFor("the flags", `document.querySelector('button[data-flag="suspend_wipes"]')`)
	apiJSON[map[string]any](t, a, "PATCH", "/v1/config", `{"suspend_wipe_issue":true}`)
	tb.press(`button[data-flag="suspend_wipes"]`)
	tb.waitFor("the conflict", `document.getElementById('status').textContent.includes('changed meanwhile')`)
	tb.waitFor("the current flags", `document.querySelector('button[data-flag="suspend_wipe_issue"]') && document.querySelector('button[data-flag="suspend_wipe_issue"]').textContent === 'Resume issue deletions'`)
	tb.press(`button[data-flag="suspend_wipes"]`)
	tb.waitFor("wipes suspended", `document.querySelector('button[data-flag="suspend_wipes"]') && document.querySelector('button[data-flag="suspend_wipes"]').textContent === 'Resume wipes'`)
	cfg := apiJSON[struct {
		SuspendWipes     bool `json:"suspend_wipes"`
		SuspendWipeIssue bool `json:"suspend_wipe_issue"`
	}](t, a, "GET", "/v1/config", "")
	if !cfg.SuspendWipes || !cfg.SuspendWipeIssue {
		t.Fatalf("config after the console's change: %+v", cfg)
	}
}

// The due report lists the subjects with a transition in the window: Eve,
// obliviated with her wipe not created yet (the sweeper has not run), and a
// phone number whose health bit has no deletion step.
func TestDueReportShowsPendingDeletionsAndUnexecutableBits(t *testing.T) {
	a := startApp(t)
	tb := openTab(t, a)
	tb.signIn(adminToken)
	tb.goTo("#/due?within=366d")
	tb.waitFor("the report", `document.querySelectorAll('#due tbody tr').length > 0`)
	eve := tb.text(`#due tr[data-subject="contact/c-5"]`)
	if !strings.Contains(eve, "deletion not created yet") || !strings.Contains(eve, "ev-c5-care") {
		t.Errorf("Eve's row %q", eve)
	}
	if n := eval[int](tb, `[...document.querySelectorAll('#due tbody tr')].filter(tr => tr.dataset.subject.startsWith('phone_number/') && tr.textContent.includes('no deletion step configured')).length`); n == 0 {
		t.Error("no phone number is reported with a bit that has no deletion step")
	}
	if eval[string](tb, `document.querySelector('select[name="within"]').value`) != "366d" {
		t.Error("the window select does not show the window")
	}
	tb.zoom200()
	tb.noHorizontalOverflow("the due report at 200 % zoom")
	tb.press(`#due tr[data-subject="contact/c-5"] a`)
	tb.waitFor("Eve's subject page", `location.hash.startsWith('#/subject') && document.querySelectorAll('#bits tbody tr').length === 4`)
}
