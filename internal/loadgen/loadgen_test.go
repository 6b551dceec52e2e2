package loadgen

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/gdprgate/gdprgate/internal/loadgen/allowall"
)

// startServer serves register on a loopback port and returns its address.
func startServer(t *testing.T, register func(*grpc.Server)) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	register(s)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// denyC5 denies checks for c-5 (the obliviated contact) and allows the rest.
type denyC5 struct {
	authv3.UnimplementedAuthorizationServer
}

func (denyC5) Check(_ context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if strings.Contains(r.GetAttributes().GetRequest().GetHttp().GetPath(), "c-5") {
		return &authv3.CheckResponse{Status: &status.Status{Code: 7}}, nil
	}
	return &authv3.CheckResponse{Status: &status.Status{}}, nil
}

func TestRunAgainstAllowAllCountsAddUp(t *testing.T) {
	addr := startServer(t, allowall.Register)
	rep, err := Run(context.Background(), Config{Target: addr, Concurrency: 8, Requests: 2000, Warmup: 20, ServerPID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 2000 || rep.Allowed != 2000 || rep.Denied != 0 || rep.Errors != 0 {
		t.Fatalf("report %+v", rep)
	}
	if rep.P50 <= 0 || rep.P50 > rep.P90 || rep.P90 > rep.P99 || rep.P99 > rep.Max {
		t.Errorf("latencies not ordered: %v %v %v %v", rep.P50, rep.P90, rep.P99, rep.Max)
	}
	if rep.Throughput <= 0 {
		t.Errorf("throughput %v", rep.Throughput)
	}
	var sb strings.Builder
	if err := rep.Format(&sb); err != nil || !strings.Contains(sb.String(), "requests    2000") {
		t.Errorf("format: %v\n%s", err, sb.String())
	}
}

func TestRunCountsDenials(t *testing.T) {
	addr := startServer(t, func(s *grpc.Server) { authv3.RegisterAuthorizationServer(s, denyC5{}) })
	n := len(BuiltinScenario()) * 20
	rep, err := Run(context.Background(), Config{Target: addr, Concurrency: 4, Requests: n})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Allowed+rep.Denied+rep.Errors != int64(n) || rep.Denied != 20 || rep.Errors != 0 {
		t.Fatalf("report %+v", rep)
	}
}

func TestRunStopsAtTheDuration(t *testing.T) {
	addr := startServer(t, allowall.Register)
	rep, err := Run(context.Background(), Config{Target: addr, Concurrency: 2, Requests: MaxRequests, Duration: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests == 0 || rep.Requests >= MaxRequests || rep.Elapsed > 2*time.Second {
		t.Fatalf("requests %d elapsed %v", rep.Requests, rep.Elapsed)
	}
	if rep.Allowed+rep.Errors != rep.Requests {
		t.Errorf("report %+v", rep)
	}
}

func TestRunCountsErrors(t *testing.T) {
	// A server without the Authorization service answers Unimplemented.
	addr := startServer(t, func(*grpc.Server) {})
	rep, err := Run(context.Background(), Config{Target: addr, Concurrency: 2, Requests: 50})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors != 50 || len(rep.ErrorSamples) != 1 {
		t.Fatalf("errors %d samples %q", rep.Errors, rep.ErrorSamples)
	}
}

func TestConfigLimits(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"too many requests", Config{Target: "127.0.0.1:1", Requests: MaxRequests + 1}},
		{"too much concurrency", Config{Target: "127.0.0.1:1", Concurrency: MaxConcurrency + 1}},
		{"remote target", Config{Target: "192.0.2.10:9191"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Run(context.Background(), tc.cfg); err == nil {
				t.Fatal("want an error")
			}
		})
	}
	c := Config{Duration: time.Hour}
	if err := c.normalise(); err != nil || c.Duration != MaxDuration || c.Requests != 20000 || c.Concurrency != 32 {
		t.Errorf("defaults/caps: %+v %v", c, err)
	}
}

func TestCheckLoopback(t *testing.T) {
	tests := []struct {
		target string
		ok     bool
	}{
		{"127.0.0.1:9191", true},
		{"[::1]:9191", true},
		{"localhost:9191", true},
		{"dns:///127.0.0.1:9191", true},
		{"unix:/tmp/gdprgate.sock", true},
		{"10.0.0.1:9191", false},
		{"0.0.0.0:9191", false},
		{"[2001:db8::1]:9191", false},
		{"127.0.0.1", false},
		{"", false},
	}
	for _, tc := range tests {
		err := CheckLoopback(context.Background(), tc.target)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v, want ok=%v", tc.target, err, tc.ok)
		}
		if tc.target == "10.0.0.1:9191" && !errors.Is(err, ErrNotLoopback) {
			t.Errorf("remote target error %v should wrap ErrNotLoopback", err)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	line := "1234 (gdprgate (serve)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 0 0"
	got, err := parseStatCPU(line)
	if err != nil || got != 300*clockTick {
		t.Fatalf("got %v %v, want %v", got, err, 300*clockTick)
	}
	if _, err := parseStatCPU("garbage"); err == nil {
		t.Error("want an error for a malformed line")
	}
	if _, err := ProcessCPU(os.Getpid()); err != nil {
		t.Errorf("own pid: %v", err)
	}
}

func TestBuiltinScenarioIsEnvoyShaped(t *testing.T) {
	reqs := BuiltinScenario()
	if len(reqs) < 10 {
		t.Fatalf("%d requests", len(reqs))
	}
	first := reqs[0].GetAttributes().GetRequest().GetHttp()
	if first.GetHeaders()[":path"] != "/api/contacts/c-1" || first.GetHeaders()["x-gdpr-roles"] != "agent" || first.GetMethod() != "GET" {
		t.Errorf("first request %v", first)
	}
	var withBody int
	for _, r := range reqs {
		if r.GetAttributes().GetRequest().GetHttp().GetBody() != "" {
			withBody++
		}
	}
	if withBody != 3 {
		t.Errorf("%d requests carry a body, want the 3 POST/PUT routes", withBody)
	}
}

func TestLoadScenarioRoundTrip(t *testing.T) {
	reqs := BuiltinScenario()[:3]
	parts := make([]string, len(reqs))
	for i, r := range reqs {
		b, err := protojson.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		parts[i] = string(b)
	}
	path := filepath.Join(t.TempDir(), "scenario.json")
	if err := os.WriteFile(path, []byte("["+strings.Join(parts, ",")+"]"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadScenario(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range reqs {
		if !proto.Equal(got[i], reqs[i]) {
			t.Errorf("request %d differs after the round trip", i)
		}
	}
	for _, bad := range []string{`{}`, `[]`, `[{"attributes":{"nope":1}}]`} {
		p := filepath.Join(t.TempDir(), "bad.json")
		_ = os.WriteFile(p, []byte(bad), 0o600)
		if _, err := LoadScenario(p); err == nil {
			t.Errorf("%s: want an error", bad)
		}
	}
}
