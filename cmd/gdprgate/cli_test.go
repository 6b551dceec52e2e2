package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/gdprgate/gdprgate/internal/cmdline"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/testredis"
	"github.com/gdprgate/gdprgate/internal/version"
)

func runArgs(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpListsOnlyTheCommandsOwnFlagsAndExitsZero(t *testing.T) {
	for _, c := range []struct {
		args         []string
		want, absent []string
	}{
		{[]string{"serve", "-h"}, []string{"--grpc-addr", "--admin-addr", "--redis-url", "--config", "[$GDPRGATE_GRPC_ADDR]"}, []string{"--listen", "--upstream"}},
		{[]string{"proxy", "--help"}, []string{"--listen", "--upstream", "--admin-addr", "[$GDPRGATE_UPSTREAM]"}, []string{"--grpc-addr"}},
		{[]string{"demo", "-h"}, []string{"--listen", "--admin-addr"}, []string{"--config", "--grpc-addr", "--upstream"}},
		{[]string{"policy", "test", "-h"}, []string{"--verbose"}, []string{"--grpc-addr"}},
		{[]string{"admin", "wipe", "-h"}, []string{"--dry-run", "--admin-url", "--admin-token", "[$GDPRGATE_ADMIN_TOKEN]"}, []string{"--grpc-addr", "--atomic", "$GDPRGATE_CONFIRM"}},
		{[]string{"-h"}, []string{"serve", "proxy", "demo", "policy", "admin", "version", "GDPRGATE_<FLAG>"}, nil},
		{[]string{"help", "serve"}, []string{"--grpc-addr"}, []string{"--upstream"}},
	} {
		code, out, errb := runArgs(t, c.args...)
		if code != 0 {
			t.Errorf("%v: exit %d, want 0\n%s", c.args, code, errb)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: help lacks %q:\n%s", c.args, w, out)
			}
		}
		for _, a := range c.absent {
			if strings.Contains(out, a) {
				t.Errorf("%v: help lists %q, which is not this command's:\n%s", c.args, a, out)
			}
		}
	}
}

func TestVersionFlagAndCommandPrintTheStampedVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, out, _ := runArgs(t, args...)
		if code != 0 || out != "gdprgate "+version.Version+"\n" {
			t.Errorf("%v: exit %d, %q", args, code, out)
		}
	}
}

func TestUsageErrorsExitTwoAndNameWhatIsWrong(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"a command is required", "serve"}},
		{[]string{"servee"}, []string{`unknown command "servee"`, "did you mean serve?"}},
		{[]string{"serve", "--grpc-adr", "127.0.0.1:1"}, []string{"unknown flag: --grpc-adr", "did you mean --grpc-addr?", "gdprgate serve -h"}},
		{[]string{"serve", "-grpc-addr", "127.0.0.1:1"}, []string{"two dashes"}},
		{[]string{"serve", "--grpc-addr", "localhost"}, []string{`"--grpc-addr"`, "missing port"}},
		{[]string{"serve", "--admin-addr", "127.0.0.1:99999"}, []string{`"--admin-addr"`, "65535"}},
		{[]string{"serve", "--redis-url", "http://x"}, []string{`"--redis-url"`, "redis-sentinel"}},
		{[]string{"serve", "--log-level", "loud"}, []string{`"--log-level"`, "debug, info, warn, error"}},
		{[]string{"serve", "--config", filepath.Join(dir, "nope.yaml")}, []string{`"--config"`, "no such file"}},
		{[]string{"serve", "--policy", filepath.Join(dir, "nope")}, []string{`"--policy"`, "no such file"}},
		{[]string{"serve", "extra"}, []string{"takes no arguments", "extra"}},
		{[]string{"proxy"}, []string{"--upstream is required", "GDPRGATE_UPSTREAM"}},
		{[]string{"policy"}, []string{"gdprgate policy: a command is required: test"}},
		{[]string{"policy", "tset"}, []string{`unknown command "tset"`, "did you mean test?"}},
		{[]string{"admin", "wipe", "contact"}, []string{"gdprgate admin wipe ENTITY ID"}},
		{[]string{"admin", "wipe", "contact", "c-1", "--dry-rn"}, []string{"did you mean --dry-run?"}},
	} {
		code, _, errb := runArgs(t, c.args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", c.args, code, errb)
		}
		for _, w := range c.want {
			if !strings.Contains(errb, w) {
				t.Errorf("%v: error lacks %q:\n%s", c.args, w, errb)
			}
		}
	}
}

func TestABadEnvironmentVariableNamesItAndItsFlag(t *testing.T) {
	t.Setenv("GDPRGATE_GRPC_ADDR", "nowhere")
	code, _, errb := runArgs(t, "serve")
	if code != 2 || !strings.Contains(errb, `GDPRGATE_GRPC_ADDR="nowhere" (for --grpc-addr)`) {
		t.Fatalf("exit %d:\n%s", code, errb)
	}
}

// TestFlagBeatsEnvironmentBeatsConfigFile checks the documented precedence
// on a command built like serve's.
func TestFlagBeatsEnvironmentBeatsConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gdprgate.yaml")
	if err := os.WriteFile(path, []byte("admin_addr: 127.0.0.1:7001\ngrpc_addr: 127.0.0.1:7002\nlisten: 127.0.0.1:7003\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GDPRGATE_ADMIN_ADDR", "127.0.0.1:8001")
	t.Setenv("GDPRGATE_GRPC_ADDR", "127.0.0.1:8002")
	var got *config.Config
	cmd := &cobra.Command{Use: "x"}
	sf := newServerFlags(cmd, "config", "admin-addr", "grpc-addr", "listen")
	cmd.RunE = func(*cobra.Command, []string) error {
		var err error
		got, err = sf.load()
		return err
	}
	var out bytes.Buffer
	if err := cmdline.Run(context.Background(), cmd, []string{"--config", path, "--grpc-addr", "127.0.0.1:9002"}, &out, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if got.GRPCAddr != "127.0.0.1:9002" || got.AdminAddr != "127.0.0.1:8001" || got.Listen != "127.0.0.1:7003" {
		t.Fatalf("grpc %s (want the flag's), admin %s (want the variable's), listen %s (want the file's)", got.GRPCAddr, got.AdminAddr, got.Listen)
	}
}

func TestRoutesSuggestWritesADraftThatLoads(t *testing.T) {
	out := filepath.Join(t.TempDir(), "routes.yaml")
	code, _, errb := runArgs(t, "routes", "suggest", "--openapi", "../../internal/onboard/testdata/crm.yaml", "--entity", "contact", "--sensitivity", "special=art9", "-o", out)
	if code != 0 || !strings.Contains(errb, "7 routes") {
		t.Fatalf("exit %d\n%s", code, errb)
	}
	cfg, err := config.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range cfg.Routes {
		if r.Name == "getContact" && r.Fields["health_notes"] != "art9" {
			t.Errorf("fields %v", r.Fields)
		}
	}
	code, _, errb = runArgs(t, "routes", "suggest", "--openapi", "../../internal/onboard/testdata/crm.yaml", "--sensitivity", "secret=x")
	if code != 2 || !strings.Contains(errb, "--sensitivity") {
		t.Fatalf("bad class: exit %d %s", code, errb)
	}
	code, _, errb = runArgs(t, "routes", "suggest")
	if code != 2 || !strings.Contains(errb, "--openapi is required") {
		t.Fatalf("no document: exit %d %s", code, errb)
	}
}

func TestRoutesCheckShowsWhatEachPathSelects(t *testing.T) {
	dir := t.TempDir()
	sample := filepath.Join(dir, "contact.json")
	if err := os.WriteFile(sample, []byte(`{"id":"c-1","first_name":"Alice","EMAIL":"a@x","addres":{"street":"x"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errb := runArgs(t, "routes", "check", "--config", "../../examples/crm/gdprgate.yaml", "--sample", sample, "--route", "contact")
	if code != 1 || !strings.Contains(out, "ok       email") || !strings.Contains(out, "MISSING  address") || !strings.Contains(errb, "select nothing") {
		t.Errorf("exit %d\n%s\n%s", code, out, errb)
	}
	code, _, errb = runArgs(t, "routes", "check", "--config", "../../examples/crm/gdprgate.yaml", "--sample", sample, "--route", "contcat")
	if code != 2 || !strings.Contains(errb, "contact-list") {
		t.Errorf("unknown route: exit %d %s", code, errb)
	}
	code, _, _ = runArgs(t, "routes", "check", "--config", "../../examples/crm/gdprgate.yaml")
	if code != 2 {
		t.Errorf("no sample: exit %d", code)
	}
	full := filepath.Join(dir, "issue.json")
	if err := os.WriteFile(full, []byte(`{"id":"i-1","contact_id":"c-1","reporter_email":"r@x","notes":"n"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errb := runArgs(t, "routes", "check", "--config", "../../examples/crm/gdprgate.yaml", "--sample", full, "--route", "issue"); code != 0 {
		t.Errorf("exit %d\n%s\n%s", code, out, errb)
	}
}

func TestStoreMigrateChecksItsFlagsAndReports(t *testing.T) {
	if code, _, errb := runArgs(t, "store", "migrate"); code != 2 || !strings.Contains(errb, "--from-url") {
		t.Fatalf("without --from-url: exit %d, %s", code, errb)
	}
	if code, _, errb := runArgs(t, "store", "migrate", "--from-url", "redis://a:1", "--to-url", "redis://b:1", "--delete-old"); code != 2 || !strings.Contains(errb, "in-place") {
		t.Fatalf("--delete-old into another Redis: exit %d, %s", code, errb)
	}
	srv := testredis.Start(t)
	code, out, errb := runArgs(t, "store", "migrate", "--from-url", srv.URL(), "--quiet")
	if code != 0 || !strings.Contains(out, `"from_layout": "1"`) || !strings.Contains(out, `"in_place": true`) {
		t.Fatalf("in-place migration of an empty store: exit %d\n%s\n%s", code, out, errb)
	}
}
