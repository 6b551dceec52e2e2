package loadgen

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/gdprgate/gdprgate/adminapi"
	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/memstore"
	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/loadgen/allowall"
	"github.com/gdprgate/gdprgate/internal/testid"
	"github.com/gdprgate/gdprgate/policy/model"
)

// Tests that count requests must not stop at the default 10 s bound nor
// fail a Check at the default 1 s timeout: under make test's -race run on
// a loaded 2-core machine 2000 Checks took longer than 10 s.
const (
	patient      = MaxDuration
	patientCheck = 30 * time.Second
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
	if testid.MentionsID(r.GetAttributes().GetRequest().GetHttp().GetPath(), "c-5") {
		return &authv3.CheckResponse{Status: &status.Status{Code: 7}}, nil
	}
	return &authv3.CheckResponse{Status: &status.Status{}}, nil
}

func TestRunAgainstAllowAllCountsAddUp(t *testing.T) {
	addr := startServer(t, allowall.Register)
	rep, err := Run(context.Background(), Config{Target: addr, Concurrency: 8, Requests: 2000, Warmup: 20, ServerPID: os.Getpid(), Duration: patient, Timeout: patientCheck})
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
	rep, err := Run(context.Background(), Config{Target: addr, Concurrency: 4, Requests: n, Duration: patient, Timeout: patientCheck})
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
	// The subject is that the duration, not the request count, ends the
	// run. How many requests fit in it depends on the machine's load, so
	// only the bound is asserted (a loaded CI box may fit none at all).
	if rep.Requests >= MaxRequests {
		t.Fatalf("requests %d: the run did not stop at its duration", rep.Requests)
	}
	if rep.Allowed+rep.Errors != rep.Requests {
		t.Errorf("report %+v", rep)
	}
}

func TestRunCountsErrors(t *testing.T) {
	// A server without the Authorization service answers Unimplemented.
	addr := startServer(t, func(*grpc.Server) {})
	rep, err := Run(context.Background(), Config{Target: addr, Concurrency: 2, Requests: 50, Duration: patient, Timeout: patientCheck})
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

// pathRecorder allows every Check and remembers the paths asked.
type pathRecorder struct {
	authv3.UnimplementedAuthorizationServer
	mu    sync.Mutex
	paths map[string]int
}

func (p *pathRecorder) Check(_ context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	h := r.GetAttributes().GetRequest().GetHttp()
	p.mu.Lock()
	if h.GetPath() != h.GetHeaders()[":path"] {
		p.paths["mismatch"]++
	}
	p.paths[h.GetPath()]++
	p.mu.Unlock()
	return &authv3.CheckResponse{Status: &status.Status{}}, nil
}

func TestUniformLoadSpreadsOverTheSubjects(t *testing.T) {
	rec := &pathRecorder{paths: map[string]int{}}
	addr := startServer(t, func(s *grpc.Server) { authv3.RegisterAuthorizationServer(s, rec) })
	rep, err := Run(context.Background(), Config{Target: addr, Concurrency: 4, Requests: 2000, Uniform: Uniform{Subjects: 50}, Duration: patient, Timeout: patientCheck})
	if err != nil || rep.Requests != 2000 || rep.Errors != 0 {
		t.Fatalf("report %+v, %v", rep, err)
	}
	if rec.paths["mismatch"] > 0 {
		t.Fatal(":path header and http.path differ")
	}
	if len(rec.paths) < 40 {
		t.Fatalf("2000 Checks over 50 subjects asked only %d distinct paths", len(rec.paths))
	}
	for p := range rec.paths {
		n, ok := strings.CutPrefix(p, "/api/contacts/u-")
		if i, err := strconv.Atoi(n); !ok || err != nil || i < 0 || i >= 50 {
			t.Fatalf("path %q outside the 50 subjects", p)
		}
	}
	if _, err := Run(context.Background(), Config{Target: addr, Uniform: Uniform{Subjects: -1}}); err == nil {
		t.Fatal("a negative subject count was accepted")
	}
}

func TestImportStoresEveryRecordThroughTheAdminAPI(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	st := memstore.New(cache.Options{})
	defer st.Close()
	seed, err := model.ParseSeed(crm.RegistersYAML, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := cache.LoadSeed(context.Background(), st, seed); err != nil {
		t.Fatal(err)
	}
	api, err := adminapi.New(adminapi.Options{Store: st, Tokens: []adminapi.Token{{Name: "load", SHA256: adminapi.HashToken("tok"), Scopes: []string{"edit_evidence"}}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	rep, err := Import(context.Background(), ImportConfig{AdminURL: srv.URL, Token: "tok", Records: 2500, Batch: 1000, Concurrency: 2, EvidenceKeys: true, First: 7})
	if err != nil || rep.Stored != 2500 || rep.Failed != 0 || rep.Requests != 3 {
		t.Fatalf("import report %+v, %v", rep, err)
	}
	for _, id := range []string{"u-7", "u-2506"} {
		rec, err := st.Subject(context.Background(), model.SubjectRef{Entity: "contact", ID: id})
		if err != nil || len(rec.Evidence) != 1 || rec.Evidence[0].LegalisationID != "contract-care" {
			t.Fatalf("subject %s after import: %+v, %v", id, rec, err)
		}
	}
	bad, err := Import(context.Background(), ImportConfig{AdminURL: srv.URL, Token: "wrong", Records: 10})
	if err != nil || bad.Stored != 0 || bad.Failed != 10 || len(bad.ErrorSamples) == 0 {
		t.Fatalf("import with a wrong token: %+v, %v; want every record failed with the reason", bad, err)
	}
	if _, err := Import(context.Background(), ImportConfig{AdminURL: "http://203.0.113.5:9192", Records: 10}); !errors.Is(err, ErrNotLoopback) {
		t.Fatalf("remote admin url err = %v, want ErrNotLoopback", err)
	}
}
