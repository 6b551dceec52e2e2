package console_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/gdprgate/gdprgate/adminapi"
	"github.com/gdprgate/gdprgate/internal/app"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
)

// -update writes the console screenshot of the README (docs/console.png).
var update = flag.Bool("update", false, "write docs/console.png from the browser test")

// One Chromium for the package: started by the first test that needs it,
// stopped by TestMain. Each test opens its own tabs.
var browser struct {
	once    sync.Once
	ctx     context.Context
	stop    func()
	dir     string
	skipWhy string
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if browser.stop != nil {
		browser.stop()
	}
	if browser.dir != "" {
		// Chromium's children may still write for a moment after it exits.
		for range 50 {
			if os.RemoveAll(browser.dir) == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	os.Exit(code)
}

// findChromium looks for a Chromium (GDPRGATE_CHROMIUM overrides); when
// none is found and apt-get can install Debian's package, it installs it, as
// make test-deps does. The reason is returned when there is none.
func findChromium() (string, string) {
	if p := os.Getenv("GDPRGATE_CHROMIUM"); p != "" {
		return p, ""
	}
	look := func() string {
		for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless_shell"} {
			if p, err := exec.LookPath(name); err == nil {
				return p
			}
		}
		return ""
	}
	if p := look(); p != "" {
		return p, ""
	}
	apt, err := exec.LookPath("apt-get")
	if err != nil || os.Geteuid() != 0 {
		return "", "chromium was not found and cannot be installed here (no apt-get, or not root): install Debian's chromium (make test-deps) to run the console's browser tests"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	install := func() error {
		cmd := exec.CommandContext(ctx, apt, "install", "-y", "-qq", "--no-install-recommends", "chromium")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, lastLine(out))
		}
		return nil
	}
	if err := install(); err != nil {
		_ = exec.CommandContext(ctx, apt, "update", "-qq").Run()
		if err = install(); err != nil {
			return "", "chromium was not found and apt-get could not install it (" + err.Error() + "): the console's browser tests need Debian's chromium (make test-deps)"
		}
	}
	if p := look(); p != "" {
		return p, ""
	}
	return "", "chromium is still not found after apt-get installed it"
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// startBrowser starts the package's Chromium once. The flags keep it off
// the network: no background requests, updates, sync or QUIC (this closed
// network refuses them, and a test must see only the console's requests).
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	browser.once.Do(func() {
		path, why := findChromium()
		if path == "" {
			browser.skipWhy = why
			return
		}
		dir, err := os.MkdirTemp("", "gdprgate-chromium-")
		if err != nil {
			browser.skipWhy = "temp dir: " + err.Error()
			return
		}
		browser.dir = dir
		opts := []chromedp.ExecAllocatorOption{
			chromedp.ExecPath(path),
			chromedp.UserDataDir(dir),
			chromedp.Headless,
			chromedp.NoSandbox,
			chromedp.DisableGPU,
			chromedp.NoFirstRun,
			chromedp.NoDefaultBrowserCheck,
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("disable-extensions", true),
			chromedp.Flag("disable-default-apps", true),
			chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,CertificateTransparencyComponentUpdater"),
			chromedp.Flag("metrics-recording-only", true),
			chromedp.Flag("password-store", "basic"),
			chromedp.WindowSize(1280, 900),
		}
		actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
		bctx, bcancel := chromedp.NewContext(actx)
		// The browser lives as long as the context of its first action, so
		// that action gets bctx itself; a loaded machine may need long.
		started := make(chan error, 1)
		go func() { started <- chromedp.Do(bctx) }()
		err = nil
		select {
		case err = <-started:
		case <-time.After(2 * time.Minute):
			err = errors.New("no answer within 2 minutes")
		}
		if err != nil {
			bcancel()
			acancel()
			browser.skipWhy = "chromium (" + path + ") did not start: " + err.Error()
			return
		}
		browser.ctx = bctx
		browser.stop = func() { bcancel(); acancel() }
	})
	if browser.ctx == nil {
		if os.Getenv("GDPRGATE_REQUIRE_BROWSER") != "" {
			t.Fatal(browser.skipWhy)
		}
		t.Skip(browser.skipWhy)
	}
	return browser.ctx
}

// The console test token (scope admin) and a read-only one.
const (
	adminToken = "console-test-admin-token"
	auditToken = "console-test-audit-token"
)

// consoleApp is gdprgate for the reference scenario with its admin listener
// on a real loopback port.
type consoleApp struct {
	sc   *apptest.Scenario
	base string // http://127.0.0.1:port
}

func startApp(t *testing.T, configure ...func(*config.Config)) *consoleApp {
	t.Helper()
	sc := apptest.New(t, apptest.Options{Configure: func(c *config.Config) {
		c.Admin.Console = true
		c.Admin.Tokens = append(c.Admin.Tokens,
			config.AdminToken{Name: "dpo", SHA256: adminapi.HashToken(adminToken), Scopes: []string{"admin"}},
			config.AdminToken{Name: "auditor", SHA256: adminapi.HashToken(auditToken), Scopes: []string{"audit_read"}},
		)
		for _, f := range configure {
			f(c)
		}
	}})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = app.Serve(ctx, lis, sc.App.Admin, sc.App.Config.Listeners.For(config.ListenerAdmin))
	}()
	t.Cleanup(func() { cancel(); <-done })
	return &consoleApp{sc: sc, base: "http://" + lis.Addr().String()}
}

// tab is one browser tab with what it requested and what went wrong in it.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string

	mu       sync.Mutex
	requests []string
	problems []string
}

// openTab opens a tab on the console of a (not signed in).
func openTab(t *testing.T, a *consoleApp) *tab {
	t.Helper()
	bctx := startBrowser(t)
	ctx, cancel := chromedp.NewContext(bctx)
	ctx, tcancel := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { tcancel(); cancel() })
	tb := &tab{t: t, ctx: ctx, base: a.base}
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open tab: %v", err)
	}
	if err := chromedp.Listen(ctx, tb.record); err != nil {
		t.Fatal(err)
	}
	tb.do(
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
				return err
			}
			if _, err := cdp.Call(ctx, tg, cdplog.Enable, cdp.Empty{}); err != nil {
				return err
			}
			_, err := cdp.Call(ctx, tg, runtime.Enable, cdp.Empty{})
			return err
		}),
		chromedp.Navigate(a.base+"/ui/"),
	)
	t.Cleanup(tb.checkClean)
	return tb
}

// record runs on the tab's event loop: keep it short.
func (tb *tab) record(ev any) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		tb.requests = append(tb.requests, e.Request.URL)
	case *runtime.EventExceptionThrown:
		tb.problems = append(tb.problems, "uncaught exception: "+(&chromedp.ExceptionError{ExceptionDetails: e.ExceptionDetails}).Error())
	case *cdplog.EventEntryAdded:
		// CSP and Trusted Types violations are "security" entries.
		if e.Entry.Source == cdplog.EntrySourceSecurity || e.Entry.Source == cdplog.EntrySourceViolation && e.Entry.Level == cdplog.EntryLevelError {
			tb.problems = append(tb.problems, "browser "+string(e.Entry.Source)+": "+e.Entry.Text)
		}
	}
}

// checkClean fails the test when the tab requested anything from another
// origin, or met a script error or a policy violation.
func (tb *tab) checkClean() {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, u := range tb.requests {
		if !strings.HasPrefix(u, tb.base+"/") && !strings.HasPrefix(u, "data:") && !strings.HasPrefix(u, "blob:"+tb.base+"/") {
			tb.t.Errorf("request outside the admin listener's origin: %s", u)
		}
		if strings.Contains(u, adminToken) || strings.Contains(u, auditToken) {
			tb.t.Errorf("the token is in a URL: %s", u)
		}
	}
	for _, p := range tb.problems {
		tb.t.Error(p)
	}
}

func (tb *tab) allowProblem(substr string) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.problems = slices.DeleteFunc(tb.problems, func(p string) bool { return strings.Contains(p, substr) })
}

func (tb *tab) requested(substr string) bool {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return slices.ContainsFunc(tb.requests, func(u string) bool { return strings.Contains(u, substr) })
}

func (tb *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, steps...); err != nil {
		tb.t.Fatalf("browser: %v", err)
	}
}

// eval evaluates a JavaScript expression (through DevTools, not subject to
// the page's CSP) and decodes its value.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript expression until it is truthy (the page's CSP
// forbids chromedp's in-page poller, which compiles its predicate).
func (tb *tab) waitFor(what, expr string) {
	tb.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, err := chromedp.Run(tb.ctx, chromedp.Evaluate[bool]("!!("+expr+")"))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			main, _ := chromedp.Run(tb.ctx, chromedp.Evaluate[string]("document.body.innerText"))
			tb.t.Fatalf("waiting for %s: %v; the page shows:\n%s", what, err, main)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// text is the trimmed textContent of the first match of a CSS selector.
func (tb *tab) text(sel string) string {
	tb.t.Helper()
	return eval[string](tb, fmt.Sprintf(`(document.querySelector(%q)||{textContent:""}).textContent.trim()`, sel))
}

func (tb *tab) key(keys string, opts ...chromedp.KeyOption) {
	tb.t.Helper()
	tb.do(chromedp.KeyEvent(keys, opts...))
}

// focused describes the focused element: tag, id or name, and text.
func (tb *tab) focused() string {
	return eval[string](tb, `(() => { const e = document.activeElement; if (!e) return ''; return e.tagName.toLowerCase() + '|' + (e.id || e.name || '') + '|' + (e.textContent || e.value || '').trim().slice(0, 40) })()`)
}

// focusVisible reports whether the focused element shows a focus ring.
func (tb *tab) focusVisible() bool {
	return eval[bool](tb, `(() => { const e = document.activeElement; if (!e || e === document.body) return false; const s = getComputedStyle(e); return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2 })()`)
}

// signIn signs the tab in by typing the token and pressing Enter.
func (tb *tab) signIn(token string) {
	tb.t.Helper()
	tb.waitFor("the sign-in form", `document.activeElement && document.activeElement.type === 'password'`)
	tb.key(token)
	tb.key("\r")
	tb.waitFor("the navigation", `!document.getElementById('nav').hidden`)
}

// go navigates the tab to a console route ("#/subject?...").
func (tb *tab) goTo(hash string) {
	tb.t.Helper()
	tb.do(chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`location.hash = %q`, hash)))
}

// noHorizontalOverflow fails when the page is wider than the viewport.
func (tb *tab) noHorizontalOverflow(where string) {
	tb.t.Helper()
	over := eval[string](tb, `(() => {
		const vw = document.documentElement.clientWidth;
		const out = [];
		if (document.documentElement.scrollWidth > vw) out.push('document ' + document.documentElement.scrollWidth + ' > ' + vw);
		for (const el of document.querySelectorAll('body *')) {
			const r = el.getBoundingClientRect();
			if (r.width > 0 && r.right > vw + 1 && !el.closest('.table-wrap')) out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className && el.className.baseVal === undefined ? '.' + el.className : '') + ' right=' + Math.round(r.right));
		}
		return out.slice(0, 8).join('; ');
	})()`)
	if over != "" {
		tb.t.Errorf("%s: horizontal overflow at %dpx: %s", where, eval[int](tb, `document.documentElement.clientWidth`), over)
	}
}

// zoom200 emulates a 1280×900 window at 200 % zoom: a 640 CSS pixel wide
// viewport at device scale 2.
func (tb *tab) zoom200() {
	tb.t.Helper()
	tb.do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
			Width: 640, Height: 450, DeviceScaleFactor: 2, Mobile: false,
		})
		return err
	}))
}

func (tb *tab) screenshot(path string) {
	tb.t.Helper()
	buf, err := chromedp.Run(tb.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.t.Fatal(err)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Logf("wrote %s (%d bytes)", path, len(buf))
}

// apiGet calls the admin API directly (outside the browser).
func apiGet(t *testing.T, a *consoleApp, path string) *http.Response {
	t.Helper()
	return apiDo(t, a, "GET", path, "")
}

// apiDo calls the admin API directly with the admin token.
func apiDo(t *testing.T, a *consoleApp, method, path, body string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, a.base+path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}
