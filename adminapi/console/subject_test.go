package console_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// A DPO signs in with the keyboard only, looks up Bob (c-2) and reads his
// archived state and timeline: bits 0-2 archived under contract-care (the
// customer-care purpose archives at 365 days, expires at 730, forgets at
// 1095; Bob's data is 500 days old), the health bit obliviated, coverage
// blue, the next transition (expiry, in 230 days) highlighted.
func TestSignInWithTheKeyboardLookUpBobAndReadHisArchivedStateAndTimeline(t *testing.T) {
	a := startApp(t)
	tb := openTab(t, a)

	// Sign-in: the token field has the focus; type, Enter.
	tb.signIn(adminToken)
	if got := eval[string](tb, `sessionStorage.getItem('gdprgate.token')`); got != adminToken {
		t.Fatalf("token kept as %q", got)
	}
	if n := eval[int](tb, `localStorage.length`); n != 0 {
		t.Fatalf("localStorage holds %d items", n)
	}
	// The subject page opens with the focus in the id field: type, Enter.
	tb.waitFor("the id field", `document.activeElement && document.activeElement.name === 'id'`)
	if !tb.focusVisible() {
		t.Error("the focused id field shows no focus ring")
	}
	tb.key("c-2")
	tb.key("\r")
	tb.waitFor("Bob's bits", `document.querySelectorAll('#bits tbody tr').length === 4`)
	if h1 := tb.text("h1"); h1 != "Subject contact/c-2" {
		t.Fatalf("heading %q", h1)
	}
	if f := tb.focused(); !strings.HasPrefix(f, "h1|") {
		t.Errorf("after the lookup the focus is on %q, want the page heading", f)
	}

	// Per-bit state, coverage in colour and words.
	rows := eval[[][]string](tb, `[...document.querySelectorAll('#bits tbody tr')].map(tr => [...tr.cells].map(td => td.textContent.trim()))`)
	for i, row := range rows {
		sens, state, cov := row[1], row[2], row[4]
		wantState := "archived"
		if i == 3 {
			wantState = "obliviated"
		}
		if !strings.HasSuffix(state, wantState) {
			t.Errorf("bit %d (%s) state %q, want %s", i, sens, state, wantState)
		}
		if i < 3 && (!strings.Contains(cov, "blue") || !strings.Contains(cov, "explicit evidence")) {
			t.Errorf("bit %d coverage %q, want blue with its meaning in words", i, cov)
		}
		if i < 3 && !strings.Contains(row[6], "contract-care") {
			t.Errorf("bit %d evidence %q, want the contract-care record", i, row[6])
		}
	}
	if cls := eval[string](tb, `document.querySelector('#bits tbody tr td:nth-child(5) .badge').className`); !strings.Contains(cls, "cov-blue") {
		t.Errorf("coverage badge class %q", cls)
	}

	// The timeline: four rows; bits 0-2 run active → archived → expired →
	// obliviated; "now" is drawn inside the archived part; the soonest
	// next transition is Bob's expiry.
	tb.waitFor("the timeline", `document.querySelectorAll('#timeline svg .tl-row').length === 4`)
	states := eval[[][]string](tb, `[...document.querySelectorAll('#timeline svg .tl-row')].map(g => [...g.querySelectorAll('rect.tl-seg')].map(r => r.dataset.state))`)
	for i := range 3 {
		if strings.Join(states[i], ",") != "active,archived,expired,obliviated" {
			t.Errorf("timeline row %d: %v", i, states[i])
		}
	}
	if strings.Join(states[3], ",") != "obliviated" {
		t.Errorf("health row: %v", states[3])
	}
	nowX := eval[float64](tb, `+document.querySelector('#timeline .tl-now').getAttribute('x1')`)
	arch := eval[[]float64](tb, `(() => { const r = document.querySelector('#timeline .tl-row rect[data-state="archived"]'); return [+r.getAttribute('x'), +r.getAttribute('x') + +r.getAttribute('width')] })()`)
	if nowX <= arch[0] || nowX >= arch[1] {
		t.Errorf("now at x=%v is not inside the archived segment %v", nowX, arch)
	}
	if tb.text("#timeline .tl-now-text") != "now" {
		t.Error("the now marker has no label")
	}
	expire := a.sc.Now.AddDate(0, 0, -500).Add(730 * 24 * time.Hour).UTC().Format(time.RFC3339)
	if got := eval[string](tb, `document.querySelector('#timeline .tl-soonest').dataset.at`); got != expire {
		t.Errorf("highlighted next transition %s, want %s (expiry)", got, expire)
	}
	label := tb.text("#timeline .tl-row .tl-label")
	if !strings.Contains(label, "archived") || !strings.Contains(label, "next expired on "+expire[:10]) {
		t.Errorf("row label %q", label)
	}
	if !strings.Contains(tb.text("#transitions"), "next") {
		t.Error("the transitions table marks no next transition")
	}

	if *update {
		tb.do(chromedp.EmulateViewport(1280, 1720), chromedp.Evaluate[chromedp.Void](`document.activeElement.blur(); window.scrollTo(0, 0)`))
		time.Sleep(300 * time.Millisecond) // the timeline redraws to the new width
		tb.screenshot("../../docs/console.png")
		tb.do(chromedp.EmulateViewport(1280, 900))
	}

	// Keyboard order from the top: skip link, the pages, sign out, then the
	// lookup form; every stop shows a focus ring. Enter on a page link opens
	// it with the focus on its heading.
	// (The sequential focus starting point goes to the top of the page the
	// way a fresh load puts it there: a focused, then removed, first node.)
	tb.do(chromedp.Evaluate[chromedp.Void](`(() => { const s = document.createElement('span'); s.tabIndex = -1; document.body.prepend(s); s.focus(); s.remove() })()`))
	var order []string
	for range 10 {
		tb.key(kb.Tab)
		f := tb.focused()
		if !tb.focusVisible() {
			t.Errorf("focus on %q is not visible", f)
		}
		order = append(order, f)
	}
	want := []string{"a||Skip to the page", "a||Subject", "a||Registers", "a||Deletions and wipes", "a||Due report", "a||Audit trail", "button||Sign out", "input|", "input|", "button||Look up"}
	for i, w := range want {
		if !strings.HasPrefix(order[i], w) {
			t.Fatalf("tab stop %d is %q, want %q (order %q)", i+1, order[i], w, order)
		}
	}
	for range 6 { // back from "Look up" to the fourth stop
		tb.key(kb.Tab, chromedp.KeyModifiers(chromedp.ModifierShift))
	}
	if f := tb.focused(); !strings.HasPrefix(f, "a||Deletions and wipes") {
		t.Fatalf("shift-tab back to %q", f)
	}
	tb.key("\r")
	tb.waitFor("the deletions page", `location.hash === '#/deletions' && document.activeElement && document.activeElement.tagName === 'H1'`)
}

// Subject ids, register names and audit details are attacker-chosen
// strings: the console shows them as text, and the page's policy makes
// every HTML sink throw.
func TestHostileStringsAreShownAsTextAndHTMLSinksAreRefused(t *testing.T) {
	a := startApp(t)
	tb := openTab(t, a)
	tb.signIn(adminToken)
	hostile := `<img src=x onerror="window.pwned=1">`
	tb.goTo("#/subject?entity=contact&id=" + strings.NewReplacer("<", "%3C", ">", "%3E", " ", "%20", `"`, "%22", "=", "%3D").Replace(hostile))
	tb.waitFor("the hostile subject", `document.querySelectorAll('#bits tbody tr').length === 4`)
	if h1 := tb.text("h1"); h1 != "Subject contact/"+hostile {
		t.Fatalf("heading %q", h1)
	}
	if n := eval[int](tb, `document.querySelectorAll('main img').length`); n != 0 {
		t.Fatalf("%d img elements were created from the id", n)
	}
	if eval[bool](tb, `window.pwned === 1`) || tb.requested("/ui/x") {
		t.Fatal("the id ran as markup")
	}
	got := eval[string](tb, `(() => { try { document.body.innerHTML = '<b>x</b>'; return 'assigned' } catch (e) { return e.name } })()`)
	if got != "TypeError" {
		t.Fatalf("innerHTML assignment: %s, want a TypeError from Trusted Types", got)
	}
	tb.allowProblem("TrustedHTML") // the refused assignment above is reported as a violation
}
