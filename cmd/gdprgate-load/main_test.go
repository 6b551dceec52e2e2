package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/gdprgate/gdprgate/internal/loadgen"
	"github.com/gdprgate/gdprgate/internal/loadgen/allowall"
)

func startAllowAll(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	allowall.Register(s)
	allowall.RegisterProcessor(s)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func TestRunReportsJSON(t *testing.T) {
	addr := startAllowAll(t)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"--target", addr, "--requests", "300", "--concurrency", "4", "--warmup", "10",
		"--server-pid", strconv.Itoa(os.Getpid()), "--json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rep struct {
		Requests, Allowed int64
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Requests != 300 || rep.Allowed != 300 {
		t.Fatalf("report %s: %v", out.String(), err)
	}
}

func TestRunRefusesRemoteTargets(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"--target", "203.0.113.5:9191"}, &out, &errb); code != 2 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(errb.String(), "refusing --target") {
		t.Errorf("stderr %q", errb.String())
	}
}

func TestDumpedScenarioCanBeReplayed(t *testing.T) {
	var dump, errb bytes.Buffer
	if code := run(context.Background(), []string{"--dump-scenario"}, &dump, &errb); code != 0 {
		t.Fatalf("dump exit %d: %s", code, errb.String())
	}
	path := filepath.Join(t.TempDir(), "s.json")
	if err := os.WriteFile(path, dump.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := startAllowAll(t)
	var out bytes.Buffer
	if code := run(context.Background(), []string{"--target", addr, "--scenario", path, "--requests", "50", "--warmup", "0"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "requests    50 (allowed 50") {
		t.Errorf("report %s", out.String())
	}
}

func TestServeAllowAllStopsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"--serve-allowall", "127.0.0.1:0"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "allowall: serving") || !strings.Contains(out.String(), "gdprgate serve's transport settings") {
		t.Errorf("stdout %q", out.String())
	}
	if code := run(ctx, []string{"--serve-allowall", "198.51.100.1:9393"}, &out, &errb); code != 1 {
		t.Errorf("non-loopback serve address: exit %d", code)
	}
}

// TestServeAllowAllTransportChoice: the baseline runs with gdprgate
// serve's transport settings unless asked for grpc-go's defaults; any
// other value is a usage error.
func TestServeAllowAllTransportChoice(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"--serve-allowall", "127.0.0.1:0", "--allowall-transport", "defaults"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "grpc-go's default transport") {
		t.Errorf("stdout %q", out.String())
	}
	if code := run(ctx, []string{"--serve-allowall", "127.0.0.1:0", "--allowall-transport", "tuned"}, &out, &errb); code != 2 {
		t.Errorf("unknown transport: exit %d, want 2", code)
	}
}

func TestProxyModeComparesWithTheBaselineInRounds(t *testing.T) {
	backend := httptest.NewServer(loadgen.NewBackend())
	defer backend.Close()
	plain, err := loadgen.NewPlainProxy(backend.URL, false)
	if err != nil {
		t.Fatal(err)
	}
	a, b := httptest.NewServer(plain), httptest.NewServer(plain)
	defer a.Close()
	defer b.Close()
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"--mode", "proxy", "--target", a.URL, "--baseline", b.URL, "--rounds", "2",
		"--requests", "40", "--concurrency", "2", "--warmup", "2", "--body-bytes", "3000", "--json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rep struct {
		Candidate, Baseline struct{ Requests, Bytes int64 }
		Ratios              map[string]float64
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Candidate.Requests != 40 || rep.Baseline.Requests != 40 ||
		rep.Candidate.Bytes == 0 || rep.Ratios["throughput"] == 0 {
		t.Fatalf("report %s: %v", out.String(), err)
	}
}

func TestExtProcModeAgainstTheAllowAllProcessor(t *testing.T) {
	addr := startAllowAll(t)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"--mode", "extproc", "--target", addr, "--authz-metadata=false",
		"--requests", "20", "--concurrency", "2", "--body-mode", "streamed", "--blocks", "5", "--period", "10", "--chunk-bytes", "999"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "requests    20 (allowed 20") || !strings.Contains(out.String(), "answers ") {
		t.Errorf("report %s", out.String())
	}
}

// TestLearningWaitsForTheAnswersToSettle: a fresh server learning
// first-seen origins redacts its first answers differently from the later
// ones; the expectation is learnt from the settled answers, and answers
// that never settle are an error, not a wrong expectation.
func TestLearningWaitsForTheAnswersToSettle(t *testing.T) {
	block := func(b string, blocks int64) []byte {
		return []byte(loadgen.ListHead + strings.TrimSuffix(strings.Repeat(b+",", int(blocks)), ",") + loadgen.ListTail)
	}
	for _, tc := range []struct {
		name    string
		drifted int // answers redacted before the origins are recorded
		ok      bool
	}{
		{"settled from the start", 0, true},
		{"settles after three answers", 3, true},
		{"never settles", 1000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			fetch := func(blocks int64) ([]byte, error) {
				calls++
				if calls <= tc.drifted {
					return block(`{"id":"c-`+strconv.Itoa(calls)+`"}`, blocks), nil
				}
				return block(`{"id":"c-0"}`, blocks), nil
			}
			e, err := learnSettled(context.Background(), fetch)
			if !tc.ok {
				if err == nil {
					t.Fatalf("learnt %q from answers that never settled", e.Block)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(e.Block) != `{"id":"c-0"}` {
				t.Fatalf("learnt block %q, want the settled one", e.Block)
			}
		})
	}
}
