// Command gdprgate-load drives a bounded ext_authz Check load against a loopback gRPC
// server and reports latency, throughput and — with --server-pid — the server's CPU time
// per Check. With --serve-allowall it runs the allow-all baseline server instead, so the
// baseline can be measured as its own process:
//
//	gdprgate-load --serve-allowall 127.0.0.1:9393 &
//	gdprgate-load --target 127.0.0.1:9393 --server-pid $! --requests 20000
//	gdprgate-load --target 127.0.0.1:9191 --server-pid $(pidof gdprgate) --requests 20000
//
// --uniform-subjects N spreads the Checks uniformly over N subject ids (a cache that
// mostly misses); --import N bulk-imports N evidence records through the admin API and
// reports records/s; --redis-url reports Redis memory and keys before and after either:
//
//	gdprgate-load --import 1000000 --admin-url http://127.0.0.1:9192 --redis-url redis://127.0.0.1:6379
//	gdprgate-load --uniform-subjects 1000000 --requests 200000 --redis-url redis://127.0.0.1:6379
//
// --mode extproc makes whole ext_proc exchanges as Envoy does (request headers, response
// headers, the answer's body in the body mode Envoy ends up with) with a generated contact
// list of --body-bytes, forwarding ext_authz's metadata (taken from a Check made for each
// request beforehand). --mode proxy GETs through an HTTP proxy; --serve-backend runs the
// static backend it proxies to and --serve-plainproxy the plain httputil.ReverseProxy it is
// compared with. --baseline names the baseline server (allow-all, plain proxy): the two are
// measured in alternating rounds of one run and compared as ratios. --period/--blocks
// stream a generated list of any size and check every answer byte for byte against the
// buffered rewrite; --peak-rss reports the server's peak resident set during the run.
//
//	gdprgate-load --serve-backend 127.0.0.1:8181 &
//	gdprgate-load --serve-plainproxy 127.0.0.1:8182 --upstream http://127.0.0.1:8181 &
//	gdprgate-load --mode proxy --target http://127.0.0.1:8180 --server-pid $GP \
//	    --baseline http://127.0.0.1:8182 --baseline-pid $PP --body-bytes 1000000 --concurrency 16
//	gdprgate-load --mode extproc --target 127.0.0.1:9191 --server-pid $G --body-bytes 10000 \
//	    --baseline 127.0.0.1:9393 --baseline-pid $A
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gdprgate/gdprgate/internal/app"
	"github.com/gdprgate/gdprgate/internal/loadgen"
	"github.com/gdprgate/gdprgate/internal/loadgen/allowall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code (0 ok, 1 run failed, 2 usage).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gdprgate-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		target      = fs.String("target", "127.0.0.1:9191", "gRPC server (host:port or unix:/path), or for --mode proxy the proxy's http://host:port; loopback only")
		concurrency = fs.Int("concurrency", 32, "concurrent Check streams (goroutines)")
		requests    = fs.Int("requests", 20000, fmt.Sprintf("total Checks to send (max %d)", loadgen.MaxRequests))
		duration    = fs.Duration("duration", 10*time.Second, fmt.Sprintf("maximum wall time (capped at %s)", loadgen.MaxDuration))
		warmup      = fs.Int("warmup", 200, "Checks sent before measuring")
		timeout     = fs.Duration("timeout", time.Second, "per-Check timeout")
		scenario    = fs.String("scenario", "crm", `"crm" (built-in CheckRequests for the reference CRM) or a JSON file holding an array of CheckRequests`)
		serverPID   = fs.Int("server-pid", 0, "PID of the server process, to report its CPU µs per Check")
		asJSON      = fs.Bool("json", false, "print the report as JSON")
		dump        = fs.Bool("dump-scenario", false, "print the built-in scenario as a JSON array and exit (a starting point for --scenario FILE)")
		serveAddr   = fs.String("serve-allowall", "", "run the allow-all baseline Authorization server on this loopback address instead of generating load")
		aaTransport = fs.String("allowall-transport", "product", `--serve-allowall: "product" (gdprgate serve's gRPC transport settings: buffer sizes, buffer pool, stream workers) or "defaults" (grpc-go's, as before)`)
		uniform     = fs.Int("uniform-subjects", 0, "instead of the scenario, GET <path-prefix><id-prefix><n> for n drawn uniformly from [0, N): with N above the server's cache size most Checks miss it")
		pathPrefix  = fs.String("path-prefix", "/api/contacts/", "uniform load: the route the subject id is appended to")
		idPrefix    = fs.String("id-prefix", "u-", "uniform load and import: subject ids are <id-prefix><n>")
		seed        = fs.Uint64("seed", 0, "uniform load: seed of the subject sequence (the same seed repeats the same ids: vary it between runs that must miss the cache)")
		roles       = fs.String("roles", "agent", "uniform, extproc and proxy load: the caller's roles header")
		importN     = fs.Int("import", 0, fmt.Sprintf("instead of Checks, import N evidence records (one per subject <id-prefix><n>) through the admin API (max %d)", loadgen.MaxImportRecords))
		adminURL    = fs.String("admin-url", "http://127.0.0.1:9192", "import: the admin API (loopback only)")
		adminToken  = fs.String("admin-token", os.Getenv("GDPRGATE_ADMIN_TOKEN"), "import: bearer token with the edit_evidence scope (default $GDPRGATE_ADMIN_TOKEN)")
		batch       = fs.Int("batch", 10000, "import: records per request")
		importConc  = fs.Int("import-concurrency", 4, "import: requests in flight")
		first       = fs.Int("first", 0, "import: number of the first subject")
		legalKey    = fs.String("legal-key", "LK-CARE", "import: the records' legal_key")
		evKeys      = fs.Bool("evidence-keys", false, "import: give every record an evidence_key (imp-<n>)")
		redisURL    = fs.String("redis-url", "", "redis:// or redis-cluster:// URL: report Redis memory and keys before and after the run")
		mode        = fs.String("mode", "check", "check (ext_authz Checks), extproc (ext_proc exchanges) or proxy (HTTP GETs through a proxy)")
		m           = modeFlags{}
	)
	m.register(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gdprgate-load: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *dump {
		if err := dumpScenario(stdout, loadgen.BuiltinScenario()); err != nil {
			fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
			return 1
		}
		return 0
	}
	if *serveAddr != "" {
		if *aaTransport != "product" && *aaTransport != "defaults" {
			fmt.Fprintf(stderr, "gdprgate-load: --allowall-transport %q: want product or defaults\n", *aaTransport)
			return 2
		}
		if err := serveAllowAll(ctx, *serveAddr, *aaTransport == "product", stdout); err != nil {
			fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
			return 1
		}
		return 0
	}
	if served, err := m.serve(ctx, stdout); served || err != nil {
		if err != nil {
			fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
			return 1
		}
		return 0
	}
	switch *mode {
	case "check":
	case "extproc", "proxy":
		common := runFlags{target: *target, concurrency: *concurrency, requests: *requests, duration: *duration,
			warmup: *warmup, timeout: *timeout, serverPID: *serverPID, roles: *roles, asJSON: *asJSON}
		return m.run(ctx, *mode, common, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "gdprgate-load: --mode must be check, extproc or proxy (got %q)\n", *mode)
		return 2
	}
	var memBefore *loadgen.RedisMemory
	if *redisURL != "" {
		m, err := loadgen.ReadRedisMemory(ctx, *redisURL)
		if err != nil {
			fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
			return 1
		}
		memBefore = &m
	}
	// A Check report stays at the top level of the JSON (as before the
	// other modes existed).
	out := struct {
		*loadgen.Report
		Import      *loadgen.ImportReport `json:"import,omitempty"`
		RedisBefore *loadgen.RedisMemory  `json:"redis_before,omitempty"`
		RedisAfter  *loadgen.RedisMemory  `json:"redis_after,omitempty"`
	}{RedisBefore: memBefore}
	code := 0
	if *importN > 0 {
		rep, err := loadgen.Import(ctx, loadgen.ImportConfig{
			AdminURL: strings.TrimRight(*adminURL, "/"), Token: *adminToken, Records: *importN, First: *first,
			Batch: *batch, Concurrency: *importConc, IDPrefix: *idPrefix, LegalKey: *legalKey,
			EvidenceKeys: *evKeys, ServerPID: *serverPID,
		})
		if rep == nil {
			fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
			return 1
		}
		if err != nil || rep.Failed > 0 {
			if err != nil {
				fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
			}
			code = 1
		}
		out.Import = rep
	} else {
		if *duration > loadgen.MaxDuration {
			fmt.Fprintf(stderr, "gdprgate-load: --duration %s capped at %s\n", *duration, loadgen.MaxDuration)
		}
		if err := loadgen.CheckLoopback(ctx, *target); err != nil {
			fmt.Fprintf(stderr, "gdprgate-load: refusing --target %s: %v (this tool only loads servers on this machine)\n", *target, err)
			return 2
		}
		cfg := loadgen.Config{
			Target: *target, Concurrency: *concurrency, Requests: *requests, Duration: *duration,
			Warmup: *warmup, Timeout: *timeout, ServerPID: *serverPID,
			Uniform: loadgen.Uniform{Subjects: *uniform, PathPrefix: *pathPrefix, IDPrefix: *idPrefix, Roles: *roles, Seed: *seed},
		}
		if *scenario != "crm" {
			reqs, err := loadgen.LoadScenario(*scenario)
			if err != nil {
				fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
				return 2
			}
			cfg.Scenario = reqs
		}
		if m.baseline != "" {
			return m.compareChecks(ctx, cfg, *asJSON, stdout, stderr)
		}
		rep, err := loadgen.Run(ctx, cfg)
		if err != nil {
			fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
			return 1
		}
		if rep.Errors > 0 {
			code = 1
		}
		out.Report = rep
	}
	if *redisURL != "" {
		m, err := loadgen.ReadRedisMemory(ctx, *redisURL)
		if err != nil {
			fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
			return 1
		}
		out.RedisAfter = &m
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
			return 1
		}
		return code
	}
	var err error
	if out.Import != nil {
		err = out.Import.Format(stdout)
	} else {
		err = out.Report.Format(stdout)
	}
	if err == nil && out.RedisAfter != nil {
		b, a := out.RedisBefore, out.RedisAfter
		_, err = fmt.Fprintf(stdout, "redis       used_memory %d → %d bytes (%+d), keys %d → %d (%+d)\n",
			b.UsedBytes, a.UsedBytes, a.UsedBytes-b.UsedBytes, b.Keys, a.Keys, a.Keys-b.Keys)
	}
	if err != nil {
		fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
		return 1
	}
	return code
}

// serveAllowAll runs the baseline server until ctx ends; product gives it
// gdprgate serve's transport settings (app.GRPCTransportOptions), so that
// a comparison with it leaves out what only the transport's tuning changes.
func serveAllowAll(ctx context.Context, addr string, product bool, stdout io.Writer) error {
	if err := loadgen.CheckLoopback(ctx, addr); err != nil {
		return fmt.Errorf("refusing to serve on %s: %w", addr, err)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(math.MaxInt32)}
	transport := "grpc-go's default transport"
	if product {
		opts = append(opts, app.GRPCTransportOptions()...)
		transport = "gdprgate serve's transport settings"
	}
	s := grpc.NewServer(opts...)
	allowall.Register(s)
	allowall.RegisterProcessor(s)
	fmt.Fprintf(stdout, "allowall: serving envoy.service.auth.v3.Authorization and envoy.service.ext_proc.v3.ExternalProcessor on %s (pid %d, %s)\n", lis.Addr(), os.Getpid(), transport)
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(lis) }()
	select {
	case <-ctx.Done():
		s.GracefulStop()
		return nil
	case err := <-errc:
		if errors.Is(err, grpc.ErrServerStopped) {
			return nil
		}
		return fmt.Errorf("serve: %w", err)
	}
}

func dumpScenario(w io.Writer, reqs []*authv3.CheckRequest) error {
	out := make([]json.RawMessage, 0, len(reqs))
	for _, r := range reqs {
		b, err := protojson.Marshal(r)
		if err != nil {
			return fmt.Errorf("marshal scenario: %w", err)
		}
		out = append(out, b)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("write scenario: %w", err)
	}
	return nil
}
