package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/gdprgate/gdprgate/adminapi"
	"github.com/gdprgate/gdprgate/internal/app"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/config"
	defaultpolicy "github.com/gdprgate/gdprgate/rego"
)

// TestNoRouteMapRefusesToStart: without routes every request passes
// untouched, so gdprgate does not start (issue 10 §5).
func TestNoRouteMapRefusesToStart(t *testing.T) {
	for name, yaml := range map[string]string{
		"no file (defaults)": "",
		"empty route list":   "routes: []\n",
		"only other keys":    "unmapped: deny\n",
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(yaml))
			if err != nil {
				t.Fatal(err)
			}
			a, err := app.New(context.Background(), cfg, app.Options{Logger: apptest.Quiet()})
			if !errors.Is(err, app.ErrNoRoutes) {
				if a != nil {
					a.Close()
				}
				t.Fatalf("New = %v, want ErrNoRoutes", err)
			}
		})
	}
}

type readyAnswer struct {
	Status  string                `json:"status"`
	Reasons []string              `json:"reasons"`
	Checks  []adminapi.ReadyCheck `json:"checks"`
}

func readyz(t *testing.T, a *app.App) (int, readyAnswer) {
	t.Helper()
	hs := httptest.NewServer(a.Admin)
	defer hs.Close()
	res, err := http.Get(hs.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var ans readyAnswer
	b, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(b, &ans); err != nil {
		t.Fatalf("readyz body is not JSON: %v: %s", err, b)
	}
	return res.StatusCode, ans
}

func failing(ans readyAnswer) []string {
	var names []string
	for _, c := range ans.Checks {
		if !c.OK {
			names = append(names, c.Name)
		}
	}
	return names
}

func TestReadyzIsReadyForTheScenario(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	code, ans := readyz(t, sc.App)
	if code != 200 || ans.Status != "ready" || len(failing(ans)) != 0 {
		t.Fatalf("readyz %d %+v", code, ans)
	}
	for _, want := range []string{"store", "registers", "gdpr_enforced", "route_map", "policy"} {
		found := false
		for _, c := range ans.Checks {
			found = found || c.Name == want
		}
		if !found {
			t.Errorf("readyz does not report the %q check: %+v", want, ans.Checks)
		}
	}
	if v := gauge(t, sc.App, "gdprgate_gdpr_enforced"); v != 1 {
		t.Errorf("gdprgate_gdpr_enforced = %v, want 1", v)
	}
}

// TestReadyzNotReadyWhileRouteMapDoesNotCompile: a route naming a
// sensitivity the registers do not have.
func TestReadyzNotReadyWhileRouteMapDoesNotCompile(t *testing.T) {
	sc := apptest.New(t, apptest.Options{Configure: func(c *config.Config) {
		c.Routes[0].Fields["ghost_field"] = "ghost"
	}})
	code, ans := readyz(t, sc.App)
	if code != 503 || ans.Status != "not_ready" || strings.Join(failing(ans), ",") != "route_map" {
		t.Fatalf("readyz %d %+v", code, ans)
	}
	if len(ans.Reasons) != 1 || !strings.Contains(ans.Reasons[0], "ghost") {
		t.Fatalf("reasons %q do not say why", ans.Reasons)
	}
}

func TestReadyzNotReadyWhileEnforcementIsOff(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	ctx := context.Background()
	ix, err := sc.App.Store.Registers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	regs := *ix.Registers
	regs.Config.GdprEnforced = false
	if _, err := sc.App.Store.SaveRegisters(ctx, &regs, ix.Version, testAudit()); err != nil {
		t.Fatal(err)
	}
	code, ans := readyz(t, sc.App)
	if code != 503 || strings.Join(failing(ans), ",") != "gdpr_enforced" {
		t.Fatalf("readyz %d %+v", code, ans)
	}
	if v := gauge(t, sc.App, "gdprgate_gdpr_enforced"); v != 0 {
		t.Errorf("gdprgate_gdpr_enforced = %v, want 0", v)
	}
}

// TestReadyzNotReadyWhilePolicyFilesAreRefused: the previous policy keeps
// serving, but the files on disk are not what runs, and /readyz says so
// until a good policy is back.
func TestReadyzNotReadyWhilePolicyFilesAreRefused(t *testing.T) {
	dir := t.TempDir()
	copyDefaultPolicy(t, dir)
	sc := apptest.New(t, apptest.Options{Configure: func(c *config.Config) {
		c.PolicyDir = dir
		c.PolicyWatch = -1 // reloads are driven by the test
	}})
	if code, ans := readyz(t, sc.App); code != 200 {
		t.Fatalf("readyz with the copied default policy: %d %+v", code, ans)
	}
	test, _ := os.ReadFile(filepath.Join(dir, "authz_test.rego"))
	if err := os.Remove(filepath.Join(dir, "authz_test.rego")); err != nil {
		t.Fatal(err)
	}
	if err := sc.App.Engine.Reload(context.Background()); err == nil {
		t.Fatal("reload of an untested policy accepted")
	}
	code, ans := readyz(t, sc.App)
	if code != 503 || strings.Join(failing(ans), ",") != "policy" || !strings.Contains(ans.Reasons[0], "no test_ rule") {
		t.Fatalf("readyz %d %+v", code, ans)
	}
	if err := os.WriteFile(filepath.Join(dir, "authz_test.rego"), test, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := sc.App.Engine.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, ans := readyz(t, sc.App); code != 200 {
		t.Fatalf("readyz after the tests came back: %d %+v", code, ans)
	}
}

func copyDefaultPolicy(t *testing.T, dir string) {
	t.Helper()
	err := fs.WalkDir(defaultpolicy.Default, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(defaultpolicy.Default, p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, p), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func gauge(t *testing.T, a *app.App, name string) float64 {
	t.Helper()
	mfs, err := a.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return metricValue(mf.GetMetric()[0])
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func metricValue(m *dto.Metric) float64 { return m.GetGauge().GetValue() }

func testAudit() audit.Entry {
	return audit.Entry{Actor: "test", Action: "config.replace", Object: "config"}
}

// TestAuditRetentionRunsInTheServer: with audit.retention configured, the
// server exports the entries beyond the bound to the file and trims them.
func TestAuditRetentionRunsInTheServer(t *testing.T) {
	file := filepath.Join(t.TempDir(), "audit.ndjson")
	sc := apptest.New(t, apptest.Options{Configure: func(cfg *config.Config) {
		cfg.Audit.Retention.MaxEntries = 1
		cfg.Audit.Retention.Interval = 20 * time.Millisecond
		cfg.Audit.Export.File = file
	}})
	ctx := context.Background()
	for i := range 3 {
		if _, err := sc.App.Store.AppendAudit(ctx, audit.Entry{Actor: "t", Action: "test", Object: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		n, err := sc.App.Store.AuditCount(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(file)
		if n == 1 && strings.Contains(string(b), `"object":"1"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit entries %d, export file %q: retention did not run", n, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
