package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"

	"github.com/gdprgate/gdprgate/internal/loadgen"
)

// modeFlags are the flags of the extproc and proxy modes and of the
// servers they are measured against.
type modeFlags struct {
	bodyBytes     int
	requestPath   string
	bodyMode      string
	chunkBytes    int
	bufferLimit   int
	authzMetadata bool
	// baselineGate: the baseline is a gdprgate too (a before/after run).
	baselineGate bool
	baseline     string
	baselinePID  int
	rounds       int
	period       int
	blocks       int64
	verifyWith   string
	peakRSS      bool
	gzip         bool
	emulator     bool
	// log receives per-exchange notes (the emulator's sha256 comparison).
	log io.Writer

	serveBackend   string
	servePlain     string
	upstream       string
	plainTransport string
}

func (m *modeFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&m.bodyBytes, "body-bytes", 10_000, "extproc and proxy: size of the generated contact list answered (bytes)")
	fs.StringVar(&m.requestPath, "request-path", "", "extproc: the request's :path (default /api/contacts); proxy: the request target (default /api/contacts?bytes=<body-bytes>)")
	fs.StringVar(&m.bodyMode, "body-mode", "buffered", "extproc: Envoy's configured response_body_mode: buffered, streamed or full-duplex (gdprgate may override buffered per answer)")
	fs.IntVar(&m.chunkBytes, "chunk-bytes", 64<<10, "extproc: size of the body chunks Envoy streams")
	fs.IntVar(&m.bufferLimit, "buffer-limit", 8<<20, "extproc: Envoy's per_connection_buffer_limit_bytes")
	fs.BoolVar(&m.baselineGate, "baseline-gdprgate", false, "extproc: the baseline is another gdprgate (a before/after comparison): its exchanges forward its own ext_authz metadata like the candidate's")
	fs.BoolVar(&m.authzMetadata, "authz-metadata", true, "extproc: forward ext_authz's dynamic metadata (from a Check made for each request before the run), as the example Envoy config does")
	fs.StringVar(&m.baseline, "baseline", "", "baseline server measured in alternating rounds with --target: the allow-all server (check, extproc) or the plain proxy's http://host:port (proxy)")
	fs.IntVar(&m.baselinePID, "baseline-pid", 0, "PID of the baseline server, for its CPU time")
	fs.IntVar(&m.rounds, "rounds", 4, "with --baseline: alternating rounds of each (requests are split between them)")
	fs.IntVar(&m.period, "period", 1000, "with --blocks: contacts per block of the periodic list")
	fs.Int64Var(&m.blocks, "blocks", 0, "extproc and proxy: instead of --body-bytes, stream the periodic list of this many blocks (generated, never held) and check every answer against the buffered rewrite")
	fs.StringVar(&m.verifyWith, "verify-with", "", "proxy with --blocks: learn the buffered rewrite from this gdprgate ext_proc server (host:port, same configuration) instead of the proxy's own answers for one and two blocks")
	fs.BoolVar(&m.peakRSS, "peak-rss", false, "reset the server's peak RSS before the run and report it after (needs the right to write /proc/PID/clear_refs)")
	fs.BoolVar(&m.gzip, "gzip", false, "proxy: ask the backend for gzip-encoded answers")
	fs.BoolVar(&m.emulator, "emulator", false, "extproc: send each request through the Envoy emulator (authz/envoytest: Check, then ext_proc as Envoy's filter runs the body mode, from a loopback backend); with --blocks the answer's sha256 is compared with the buffered rewrite's")
	fs.StringVar(&m.serveBackend, "serve-backend", "", "run the static backend of proxy runs on this loopback address instead of generating load")
	fs.StringVar(&m.servePlain, "serve-plainproxy", "", "run the plain httputil.ReverseProxy baseline to --upstream on this loopback address")
	fs.StringVar(&m.upstream, "upstream", "http://127.0.0.1:8181", "--serve-plainproxy: the backend")
	fs.StringVar(&m.plainTransport, "plain-transport", "tuned", "--serve-plainproxy: tuned (idle connections per host like gdprgate's proxy) or default (Go's: 2)")
}

// serve runs a server asked for by flag; served reports whether one was.
func (m *modeFlags) serve(ctx context.Context, stdout io.Writer) (served bool, err error) {
	var addr, what string
	var h http.Handler
	switch {
	case m.serveBackend != "":
		addr, what, h = m.serveBackend, "static backend", loadgen.NewBackend()
	case m.servePlain != "":
		if m.plainTransport != "tuned" && m.plainTransport != "default" {
			return true, fmt.Errorf("--plain-transport must be tuned or default (got %q)", m.plainTransport)
		}
		if h, err = loadgen.NewPlainProxy(m.upstream, m.plainTransport == "tuned"); err != nil {
			return true, err
		}
		addr, what = m.servePlain, "plain reverse proxy to "+m.upstream
	default:
		return false, nil
	}
	if err := loadgen.CheckLoopback(ctx, addr); err != nil {
		return true, fmt.Errorf("refusing to serve on %s: %w", addr, err)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return true, fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "%s: serving on http://%s (pid %d)\n", what, lis.Addr(), os.Getpid())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return true, nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return true, nil
		}
		return true, fmt.Errorf("serve: %w", err)
	}
}

// runFlags are the common flags a mode run takes.
type runFlags struct {
	target                string
	concurrency, requests int
	duration, timeout     time.Duration
	warmup, serverPID     int
	roles                 string
	asJSON                bool
}

// comparison is the JSON report of a run with a baseline.
type comparison struct {
	Candidate *loadgen.Report `json:"candidate"`
	Baseline  *loadgen.Report `json:"baseline"`
	Ratios    map[string]float64
}

func (m *modeFlags) run(ctx context.Context, mode string, rf runFlags, stdout, stderr io.Writer) int {
	if rf.duration > loadgen.MaxDuration {
		fmt.Fprintf(stderr, "gdprgate-load: --duration %s capped at %s\n", rf.duration, loadgen.MaxDuration)
	}
	m.log = stderr
	one, err := m.runner(ctx, mode, rf)
	if err != nil {
		fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
		return 2
	}
	if m.baseline == "" {
		if m.peakRSS && rf.serverPID > 0 {
			if err := loadgen.ResetPeakRSS(rf.serverPID); err != nil {
				fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
				return 1
			}
		}
		rep, err := one(ctx, rf.target, rf.serverPID, rf.requests)
		if err != nil {
			fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
			return 1
		}
		if m.peakRSS && rf.serverPID > 0 {
			if rep.ServerPeakRSS, err = loadgen.PeakRSS(rf.serverPID); err != nil {
				fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
				return 1
			}
		}
		return output(stdout, stderr, rf.asJSON, rep, rep.Errors > 0)
	}
	per := max(rf.requests/max(m.rounds, 1), 1)
	cand, base, err := loadgen.Interleave(ctx, m.rounds,
		func(ctx context.Context, _ int) (*loadgen.Report, error) {
			return one(ctx, rf.target, rf.serverPID, per)
		},
		func(ctx context.Context, _ int) (*loadgen.Report, error) {
			return m.baselineRun(ctx, mode, rf, per)
		})
	if err != nil {
		fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
		return 1
	}
	return m.report(stdout, stderr, rf.asJSON, rf.target, cand, base)
}

func (m *modeFlags) report(stdout, stderr io.Writer, asJSON bool, target string, cand, base *loadgen.Report) int {
	c := comparison{Candidate: cand, Baseline: base, Ratios: ratios(cand, base)}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(c); err != nil {
			fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
			return 1
		}
	} else {
		fmt.Fprintf(stdout, "candidate (%s), %d rounds interleaved with the baseline:\n", target, m.rounds)
		_ = cand.Format(stdout)
		fmt.Fprintf(stdout, "\nbaseline (%s):\n", m.baseline)
		_ = base.Format(stdout)
		fmt.Fprintf(stdout, "\ncandidate / baseline: throughput %.2f×, server CPU per request %.2f×, p50 %.2f×, p99 %.2f×\n",
			c.Ratios["throughput"], c.Ratios["server_cpu_per_request"], c.Ratios["p50"], c.Ratios["p99"])
	}
	if cand.Errors > 0 {
		return 1
	}
	return 0
}

func (m *modeFlags) baselineRun(ctx context.Context, mode string, rf runFlags, requests int) (*loadgen.Report, error) {
	if mode == "extproc" {
		// The allow-all processor has no ext_authz metadata to give.
		mm := *m
		mm.authzMetadata = m.authzMetadata && m.baselineGate
		one, err := mm.runner(ctx, mode, rf)
		if err != nil {
			return nil, err
		}
		return one(ctx, m.baseline, m.baselinePID, requests)
	}
	one, err := m.runner(ctx, mode, rf)
	if err != nil {
		return nil, err
	}
	return one(ctx, m.baseline, m.baselinePID, requests)
}

func ratios(c, b *loadgen.Report) map[string]float64 {
	div := func(x, y float64) float64 {
		if y == 0 {
			return 0
		}
		return x / y
	}
	return map[string]float64{
		"throughput":             div(c.Throughput, b.Throughput),
		"server_cpu_per_request": div(c.ServerCPUPerRequest, b.ServerCPUPerRequest),
		"p50":                    div(float64(c.P50), float64(b.P50)),
		"p99":                    div(float64(c.P99), float64(b.P99)),
	}
}

func output(stdout, stderr io.Writer, asJSON bool, rep *loadgen.Report, failed bool) int {
	var err error
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.Format(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
		return 1
	}
	if failed {
		return 1
	}
	return 0
}

type runOnce func(ctx context.Context, target string, pid, requests int) (*loadgen.Report, error)

// runner validates the flags of a mode and returns its run.
func (m *modeFlags) runner(ctx context.Context, mode string, rf runFlags) (runOnce, error) {
	switch mode {
	case "extproc":
		bm, ok := map[string]filterv3.ProcessingMode_BodySendMode{
			"buffered": filterv3.ProcessingMode_BUFFERED, "streamed": filterv3.ProcessingMode_STREAMED,
			"full-duplex": filterv3.ProcessingMode_FULL_DUPLEX_STREAMED,
		}[m.bodyMode]
		if !ok {
			return nil, fmt.Errorf("--body-mode must be buffered, streamed or full-duplex (got %q)", m.bodyMode)
		}
		base := loadgen.ExtProcConfig{
			Concurrency: rf.concurrency, Duration: rf.duration, Warmup: rf.warmup, Timeout: rf.timeout,
			Path: m.requestPath, Roles: rf.roles, BodyMode: bm, ChunkBytes: m.chunkBytes,
			BufferLimit: m.bufferLimit, AuthzMetadata: m.authzMetadata, Emulator: m.emulator,
		}
		if m.blocks > 0 {
			exp, err := m.learnExtProc(ctx, rf.target, base)
			if err != nil {
				return nil, err
			}
			q := loadgen.PeriodicBlock(m.period)
			k := m.blocks
			base.Generate = func(w io.Writer) error { return loadgen.WritePeriodic(w, q, k, m.chunkBytes) }
			base.Sink = func() io.Writer { return exp.NewVerifier(k) }
			if m.emulator {
				want := exp.SHA256(k)
				base.Sink = func() io.Writer { return exp.NewHashVerifier(k, want, m.log) }
			}
		} else {
			base.Body = loadgen.ListBody(m.bodyBytes)
		}
		return func(ctx context.Context, target string, pid, requests int) (*loadgen.Report, error) {
			cfg := base
			cfg.Target, cfg.ServerPID, cfg.Requests = target, pid, requests
			return loadgen.RunExtProc(ctx, cfg)
		}, nil
	case "proxy":
		path := m.requestPath
		if path == "" {
			path = "/api/contacts?bytes=" + strconv.Itoa(m.bodyBytes)
		}
		base := loadgen.HTTPConfig{
			Path: path, Header: http.Header{"X-Gdpr-Roles": {rf.roles}},
			Concurrency: rf.concurrency, Duration: rf.duration, Warmup: rf.warmup, Timeout: rf.timeout,
		}
		if m.blocks > 0 {
			exp, err := m.learnProxy(ctx, rf)
			if err != nil {
				return nil, err
			}
			k := m.blocks
			base.Path = fmt.Sprintf("/api/contacts?period=%d&blocks=%d", m.period, k)
			base.Sink = func() io.Writer { return exp.NewVerifier(k) }
		}
		if m.gzip {
			sep := "?"
			if strings.Contains(base.Path, "?") {
				sep = "&"
			}
			base.Path += sep + "gzip=1"
			// The client asks for gzip so that the proxies pass it on;
			// the answer's bytes are counted as they come.
			base.Header.Set("Accept-Encoding", "gzip")
		}
		return func(ctx context.Context, target string, pid, requests int) (*loadgen.Report, error) {
			cfg := base
			cfg.Target, cfg.ServerPID, cfg.Requests = target, pid, requests
			return loadgen.RunHTTP(ctx, cfg)
		}, nil
	}
	return nil, fmt.Errorf("unknown mode %q", mode)
}

// learnExtProc learns the buffered rewrite of the periodic list from
// BUFFERED exchanges of one and two blocks.
func (m *modeFlags) learnExtProc(ctx context.Context, target string, base loadgen.ExtProcConfig) (loadgen.PeriodicExpectation, error) {
	q := loadgen.PeriodicBlock(m.period)
	return learnSettled(ctx, func(blocks int64) ([]byte, error) {
		var buf strings.Builder
		cfg := base
		cfg.Target, cfg.Requests, cfg.Warmup, cfg.Concurrency = target, 1, 0, 1
		cfg.BodyMode = filterv3.ProcessingMode_BUFFERED
		var b strings.Builder
		if err := loadgen.WritePeriodic(&b, q, blocks, 64<<10); err != nil {
			return nil, err
		}
		cfg.Body = []byte(b.String())
		cfg.Sink = func() io.Writer { return &buf }
		rep, err := loadgen.RunExtProc(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("learn the buffered rewrite: %w", err)
		}
		if rep.Allowed != 1 {
			return nil, fmt.Errorf("learn the buffered rewrite of %d block(s): %v", blocks, rep.ErrorSamples)
		}
		return []byte(buf.String()), nil
	})
}

// learnProxy learns the buffered rewrite from --verify-with's ext_proc
// server, or from the proxy's answers for one and two blocks sent with a
// content-length.
func (m *modeFlags) learnProxy(ctx context.Context, rf runFlags) (loadgen.PeriodicExpectation, error) {
	if m.verifyWith != "" {
		return m.learnExtProc(ctx, m.verifyWith, loadgen.ExtProcConfig{
			Path: "/api/contacts", Roles: rf.roles, AuthzMetadata: m.authzMetadata, Timeout: 30 * time.Second,
		})
	}
	return learnSettled(ctx, func(blocks int64) ([]byte, error) {
		var buf strings.Builder
		rep, err := loadgen.RunHTTP(ctx, loadgen.HTTPConfig{
			Target: rf.target, Path: fmt.Sprintf("/api/contacts?period=%d&blocks=%d&length=1", m.period, blocks),
			Header: http.Header{"X-Gdpr-Roles": {rf.roles}}, Concurrency: 1, Requests: 1, Timeout: 30 * time.Second,
			Sink: func() io.Writer { return &buf },
		})
		if err != nil {
			return nil, fmt.Errorf("learn the buffered rewrite: %w", err)
		}
		if rep.Allowed != 1 {
			return nil, fmt.Errorf("learn the buffered rewrite of %d block(s): %v", blocks, rep.ErrorSamples)
		}
		return []byte(buf.String()), nil
	})
}

// settleTries bounds learnSettled; settlePause is the wait between tries.
const (
	settleTries = 10
	settlePause = 200 * time.Millisecond
)

// learnSettled learns the expectation from the redacted answers for one
// and two blocks (fetch), once the redactor's answers have settled. A
// route that learns first-seen origins from the answers (the example's
// list route has origin_from) records them in the background after the
// first answers, and until then a fresh server redacts the same list
// differently from one answer to the next: the one-block answer is asked
// for until it repeats, then the two-block one must be it twice.
func learnSettled(ctx context.Context, fetch func(blocks int64) ([]byte, error)) (loadgen.PeriodicExpectation, error) {
	prev, err := fetch(1)
	if err != nil {
		return loadgen.PeriodicExpectation{}, err
	}
	var last error
	for range settleTries {
		select {
		case <-ctx.Done():
			return loadgen.PeriodicExpectation{}, ctx.Err()
		case <-time.After(settlePause):
		}
		one, err := fetch(1)
		if err != nil {
			return loadgen.PeriodicExpectation{}, err
		}
		if string(one) != string(prev) {
			prev, last = one, errors.New("the one-block answer changed between two requests")
			continue
		}
		two, err := fetch(2)
		if err != nil {
			return loadgen.PeriodicExpectation{}, err
		}
		e, err := loadgen.LearnPeriodic(one, two)
		if err == nil {
			return e, nil
		}
		last = err
	}
	return loadgen.PeriodicExpectation{}, fmt.Errorf("the redactor's answers did not settle in %d tries (origins still being learnt?): %w", settleTries, last)
}

// compareChecks runs Checks against the target and the baseline in
// alternating rounds.
func (m *modeFlags) compareChecks(ctx context.Context, cfg loadgen.Config, asJSON bool, stdout, stderr io.Writer) int {
	if err := loadgen.CheckLoopback(ctx, m.baseline); err != nil {
		fmt.Fprintf(stderr, "gdprgate-load: refusing --baseline %s: %v\n", m.baseline, err)
		return 2
	}
	per := max(cfg.Requests/max(m.rounds, 1), 1)
	side := func(target string, pid int) func(context.Context, int) (*loadgen.Report, error) {
		return func(ctx context.Context, _ int) (*loadgen.Report, error) {
			c := cfg
			c.Target, c.ServerPID, c.Requests = target, pid, per
			return loadgen.Run(ctx, c)
		}
	}
	cand, base, err := loadgen.Interleave(ctx, m.rounds, side(cfg.Target, cfg.ServerPID), side(m.baseline, m.baselinePID))
	if err != nil {
		fmt.Fprintf(stderr, "gdprgate-load: %v\n", err)
		return 1
	}
	return m.report(stdout, stderr, asJSON, cfg.Target, cand, base)
}
