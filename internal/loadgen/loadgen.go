// Package loadgen is a bounded load generator for loopback targets: ext_authz Checks,
// whole ext_proc exchanges as Envoy makes them (any body size and body mode), and HTTP
// GETs through a proxy, with the static backend and the plain reverse proxy that proxy
// runs compare against. It measures client-side latency and, given the server's PID, the
// server's CPU time per request read from /proc — the figure behind gdprgate's "µs of
// server CPU per Check" target — and its peak resident set. Interleave alternates a
// candidate and a baseline in one run, the only comparison that holds on a shared machine.
//
// Every run is bounded twice (a request count and a wall-clock duration) and refuses
// non-loopback targets, because it is meant for a shared development machine, not for
// load-testing someone else's service.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Limits that keep a run polite on a shared machine.
const (
	MaxRequests    = 2_000_000
	MaxDuration    = 60 * time.Second
	MaxConcurrency = 1024
)

// Config describes one run.
type Config struct {
	// Target is host:port (or unix:/path) of the Authorization service; it must resolve to
	// loopback addresses only.
	Target string
	// Conn, when set, is used instead of dialling Target (in-process tests).
	Conn grpc.ClientConnInterface
	// Concurrency is the number of goroutines issuing Checks (default 32).
	Concurrency int
	// Requests is the total number of measured Checks (default 20000, max MaxRequests).
	Requests int
	// Duration bounds the wall time (default 10s, max MaxDuration); the run stops at
	// whichever of Requests and Duration comes first.
	Duration time.Duration
	// Warmup Checks are sent before measuring (connection set-up, caches); default 0.
	Warmup int
	// Timeout bounds each Check (default 1s).
	Timeout time.Duration
	// Scenario is the set of CheckRequests sent round-robin (default BuiltinScenario).
	Scenario []*authv3.CheckRequest
	// Uniform, when its Subjects is set, replaces Scenario: every Check asks for a
	// subject drawn uniformly from Uniform.Subjects ids.
	Uniform Uniform
	// ServerPID, when > 0, is the process whose CPU time is sampled around the run.
	ServerPID int
}

// Report is the outcome of a run.
type Report struct {
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	Allowed  int64 `json:"allowed"`
	Denied   int64 `json:"denied"`
	// ErrorSamples are the first few distinct error messages.
	ErrorSamples []string      `json:"error_samples,omitempty"`
	Elapsed      time.Duration `json:"elapsed_ns"`
	// Throughput is completed Checks (including errors) per second.
	Throughput float64       `json:"throughput_rps"`
	P50        time.Duration `json:"p50_ns"`
	P90        time.Duration `json:"p90_ns"`
	P99        time.Duration `json:"p99_ns"`
	Max        time.Duration `json:"max_ns"`
	// ServerCPU is the server's user+system CPU time during the run (0 without ServerPID).
	ServerCPU time.Duration `json:"server_cpu_ns"`
	// ServerCPUPerRequest is ServerCPU / Requests in microseconds.
	ServerCPUPerRequest float64 `json:"server_cpu_us_per_request"`
	// ClientCPUPerRequest is this process's CPU per request in microseconds; on a shared
	// machine it tells how much of the cores the generator itself took.
	ClientCPUPerRequest float64 `json:"client_cpu_us_per_request"`
	// CPUTick is the /proc accounting resolution, which bounds the CPU figures' accuracy.
	CPUTick time.Duration `json:"cpu_tick_ns"`

	// Bytes are the answer bytes received (ext_proc and proxy runs).
	Bytes int64 `json:"bytes,omitempty"`
	// MBps is Bytes per second of wall time, in MB (10^6 bytes).
	MBps float64 `json:"mb_per_second,omitempty"`
	// MBPerServerCPUSecond is Bytes per second of the server's CPU time, in MB.
	MBPerServerCPUSecond float64 `json:"mb_per_server_cpu_second,omitempty"`
	// ServerPeakRSS is the server's peak resident set (VmHWM) after the run, in bytes.
	ServerPeakRSS int64 `json:"server_peak_rss_bytes,omitempty"`

	// lats are the latency samples, kept so that rounds can be merged.
	lats []time.Duration
}

// normalise applies the shared workload bounds and defaults (workload's
// normalise) to the run's fields, and the default scenario.
func (c *Config) normalise() error {
	wl := c.workload()
	if err := wl.normalise(); err != nil {
		return err
	}
	c.Concurrency, c.Requests, c.Duration, c.Warmup, c.Timeout = wl.Concurrency, wl.Requests, wl.Duration, wl.Warmup, wl.Timeout
	if len(c.Scenario) == 0 {
		c.Scenario = BuiltinScenario()
	}
	return nil
}

func (c *Config) workload() workload {
	return workload{
		Concurrency: c.Concurrency, Requests: c.Requests, Duration: c.Duration,
		Warmup: c.Warmup, Timeout: c.Timeout, ServerPID: c.ServerPID,
	}
}

// Run executes one bounded run.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.normalise(); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	conn := cfg.Conn
	if conn == nil {
		if err := CheckLoopback(ctx, cfg.Target); err != nil {
			return nil, fmt.Errorf("loadgen: %w", err)
		}
		cc, err := grpc.NewClient(dialTarget(cfg.Target), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, fmt.Errorf("loadgen: dial %s: %w", cfg.Target, err)
		}
		defer cc.Close()
		conn = cc
	}
	client := authv3.NewAuthorizationClient(conn)
	// next[w] gives worker w its i-th request: the fixed scenario round-robin,
	// or a uniformly drawn subject.
	next := make([]func(i int64) *authv3.CheckRequest, cfg.Concurrency)
	for w := range next {
		if cfg.Uniform.Subjects == 0 {
			next[w] = func(i int64) *authv3.CheckRequest { return cfg.Scenario[int(i)%len(cfg.Scenario)] }
			continue
		}
		gen, err := cfg.Uniform.generator(w)
		if err != nil {
			return nil, fmt.Errorf("loadgen: %w", err)
		}
		next[w] = func(int64) *authv3.CheckRequest { return gen() }
	}
	return cfg.workload().run(ctx, func(ctx context.Context, w int, i int64) (bool, int64, error) {
		resp, err := client.Check(ctx, next[w](i))
		if err != nil {
			return false, 0, err
		}
		return resp.GetStatus().GetCode() == 0, 0, nil
	})
}

// quantile returns the nearest-rank quantile of sorted durations.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	idx := int(q*float64(len(sorted))+0.999999) - 1
	idx = max(0, min(idx, len(sorted)-1))
	return sorted[idx]
}

// dialTarget turns host:port into a grpc-go target; unix: targets pass unchanged.
func dialTarget(t string) string {
	if strings.HasPrefix(t, "unix:") || strings.Contains(t, "://") {
		return t
	}
	return "passthrough:///" + t
}

// ErrNotLoopback is returned for targets that are not on this machine's loopback.
var ErrNotLoopback = errors.New("target is not a loopback address")

// CheckLoopback accepts unix sockets and host:port targets whose host resolves only to
// loopback addresses; anything else is refused.
func CheckLoopback(ctx context.Context, target string) error {
	if target == "" {
		return errors.New("no target given")
	}
	if strings.HasPrefix(target, "unix:") {
		return nil
	}
	t := target
	for _, p := range []string{"dns:///", "passthrough:///", "dns:", "ipv4:", "ipv6:"} {
		t = strings.TrimPrefix(t, p)
	}
	host, _, err := net.SplitHostPort(t)
	if err != nil {
		return fmt.Errorf("target %q: want host:port: %w", target, err)
	}
	if ip := net.ParseIP(host); ip != nil {
		if !ip.IsLoopback() {
			return fmt.Errorf("%w: %s", ErrNotLoopback, target)
		}
		return nil
	}
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return fmt.Errorf("resolve %q: %w", host, err)
	}
	if len(addrs) == 0 {
		return fmt.Errorf("resolve %q: no addresses", host)
	}
	for _, a := range addrs {
		if !a.IP.IsLoopback() {
			return fmt.Errorf("%w: %s resolves to %s", ErrNotLoopback, host, a.IP)
		}
	}
	return nil
}
