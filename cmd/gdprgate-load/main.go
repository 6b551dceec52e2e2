// Command gdprgate-load drives a bounded ext_authz Check load against a loopback gRPC
// server and reports latency, throughput and — with --server-pid — the server's CPU time
// per Check. With --serve-allowall it runs the allow-all baseline server instead, so the
// baseline can be measured as its own process:
//
//	gdprgate-load --serve-allowall 127.0.0.1:9393 &
//	gdprgate-load --target 127.0.0.1:9393 --server-pid $! --requests 20000
//	gdprgate-load --target 127.0.0.1:9191 --server-pid $(pidof gdprgate) --requests 20000
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

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
		target      = fs.String("target", "127.0.0.1:9191", "Authorization gRPC server (host:port or unix:/path); loopback only")
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
	)
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
		if err := serveAllowAll(ctx, *serveAddr, stdout); err != nil {
			fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
			return 1
		}
		return 0
	}
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
	}
	if *scenario != "crm" {
		reqs, err := loadgen.LoadScenario(*scenario)
		if err != nil {
			fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
			return 2
		}
		cfg.Scenario = reqs
	}
	rep, err := loadgen.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
			return 1
		}
	} else if err := rep.Format(stdout); err != nil {
		fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
		return 1
	}
	if rep.Errors > 0 {
		return 1
	}
	return 0
}

// serveAllowAll runs the baseline server until ctx ends.
func serveAllowAll(ctx context.Context, addr string, stdout io.Writer) error {
	if err := loadgen.CheckLoopback(ctx, addr); err != nil {
		return fmt.Errorf("refusing to serve on %s: %w", addr, err)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	s := grpc.NewServer()
	allowall.Register(s)
	fmt.Fprintf(stdout, "allowall: serving envoy.service.auth.v3.Authorization on %s (pid %d)\n", lis.Addr(), os.Getpid())
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
