// Package app assembles gdprgate from its configuration: the store, the
// policy engine, identity, the gate, the Envoy gRPC servers, the admin API,
// the HTTP authz mode, the reverse proxy and the wipe workers. The CLI, the
// demo and the end-to-end tests all build gdprgate through it, so they run
// the same wiring.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/keepalive"

	"github.com/gdprgate/gdprgate/adminapi"
	"github.com/gdprgate/gdprgate/authz"
	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/memstore"
	"github.com/gdprgate/gdprgate/cache/redisstore"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/auditretention"
	"github.com/gdprgate/gdprgate/internal/bufpool"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/forget"
	"github.com/gdprgate/gdprgate/internal/gate"
	"github.com/gdprgate/gdprgate/internal/identity"
	"github.com/gdprgate/gdprgate/internal/observe"
	"github.com/gdprgate/gdprgate/internal/opa"
	"github.com/gdprgate/gdprgate/policy"
	"github.com/gdprgate/gdprgate/policy/model"
)

// Options are what the configuration file does not say.
type Options struct {
	Logger *slog.Logger
	// Now is the clock for decisions (nil: time.Now). Tests inject one.
	Now func() time.Time
	// SeedData, when set, is loaded like --seed (the demo's embedded file).
	SeedData []byte
	// SeedTime is the "now" relative seed times resolve against (zero: the
	// clock). The demo passes the example CRM's now so origins line up.
	SeedTime time.Time
	// HashKey overrides the key read from the hash_key_env variable.
	HashKey []byte
	// DisableWipeWorker leaves queued wipes to other sidecars (tests).
	DisableWipeWorker bool
	// DisableSweeper runs no lifecycle sweeper here (tests drive
	// App.Sweeper.Pass themselves).
	DisableSweeper bool
	// DecisionLogOutput receives console decision logs (nil: stdout).
	DecisionLogOutput io.Writer
}

// App is a running gdprgate.
type App struct {
	Config   *config.Config
	Store    cache.Store
	Engine   *policy.Engine
	Gate     *gate.Gate
	Authz    *authz.Server
	Admin    *adminapi.Server
	Registry *prometheus.Registry
	Log      *slog.Logger
	Identity *identity.Verifier
	// Forget creates, admits and decides deletion work; Sweeper applies
	// due lifecycle transitions (one active across sidecars).
	Forget  *forget.Executor
	Sweeper *forget.Sweeper
	// OPA runs OPA's plugins (bundles, decision logs); nil without `opa:`.
	OPA *opa.Runtime

	// closers release what New started besides the store, last first.
	closers  []func()
	hasher   audit.Hasher
	now      func() time.Time
	seedTime time.Time
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// ErrNoRoutes is returned by New for a configuration without a route map:
// gdprgate would then let every request through untouched.
var ErrNoRoutes = errors.New("no route map: the configuration has no routes, so every request would pass untouched; " +
	"give --config a file with a routes: list (examples/crm/gdprgate.yaml is a complete example)")

// New builds gdprgate from cfg and starts its background work (policy
// watch, wipe workers). Close stops it.
func New(ctx context.Context, cfg *config.Config, opts Options) (*App, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if len(cfg.Routes) == 0 {
		return nil, ErrNoRoutes
	}
	if cfg.Limits.MemoryLimit > 0 {
		// Process-wide, as GOMEMLIMIT is (which it replaces).
		debug.SetMemoryLimit(cfg.Limits.MemoryLimit)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// planKey seals the plans ext_authz hands to ext_proc; without a
	// configured key each process draws its own (see gate.Options.PlanKey).
	var planKey []byte
	if len(opts.HashKey) > 0 {
		cfg.HashKey = opts.HashKey
		planKey = cfg.HashKey
	} else if k := os.Getenv(cfg.HashKeyEnv); k != "" {
		cfg.HashKey = []byte(k)
		planKey = cfg.HashKey
	} else {
		log.Warn("no hash key configured: subject hashes in logs and audit are guessable; set " + cfg.HashKeyEnv)
		cfg.HashKey = []byte("gdprgate-default-hash-key")
	}
	hasher := audit.NewHasher(cfg.HashKey)

	sopts := cache.Options{
		MaxSubjects:  cfg.Store.MaxSubjects,
		MaxBytes:     cfg.Store.MaxCacheBytes,
		WaitReplicas: cfg.Store.WaitReplicas,
		WaitTimeout:  cfg.Store.WaitTimeout,
		Buckets:      cfg.Store.Buckets,
		MaxStaleness: cfg.Store.MaxStaleness,
		Timeout:      cfg.Store.Timeout,
		WriteTimeout: cfg.Store.WriteTimeout,
		Registerer:   reg,
		Logger:       log,
	}
	var store cache.Store
	if cfg.RedisURL == "" {
		log.Info("store: embedded in-memory (not shared, not durable); set --redis-url for production")
		store = memstore.New(sopts)
	} else {
		rs, err := redisstore.New(ctx, cfg.RedisURL, sopts)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		store = rs
	}
	a := &App{Config: cfg, Store: store, Registry: reg, Log: log, hasher: hasher, now: now, seedTime: opts.SeedTime}
	fail := func(err error) (*App, error) {
		a.runClosers()
		store.Close()
		return nil, err
	}

	if observe.TracingWanted(cfg.Tracing.Enabled) {
		tr, err := observe.StartTracing(ctx)
		if err != nil {
			return fail(fmt.Errorf("tracing: %w", err))
		}
		a.closers = append(a.closers, func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = tr.Shutdown(sctx)
		})
		log.Info("tracing on: spans exported over OTLP as the OTEL_* environment says")
	}

	if err := a.seed(ctx, opts.SeedData); err != nil {
		return fail(err)
	}

	var rt *opa.Runtime
	var err error
	if len(cfg.OPA) > 0 {
		host, _ := os.Hostname()
		rt, err = opa.New(opa.Options{Config: cfg.OPA, ID: fmt.Sprintf("gdprgate-%s-%d", host, os.Getpid()),
			Logger: log, Console: opts.DecisionLogOutput, Registerer: reg})
		if err != nil {
			return fail(err)
		}
		a.OPA = rt
	}
	popts := policy.Options{Dir: cfg.PolicyDir, Path: cfg.Policy.Path, Logger: log, Registerer: reg,
		AllowUntested: cfg.PolicyAllowUntested}
	var eng *policy.Engine
	if rt.HasBundles() {
		// The policy comes from the bundle server: OPA's bundle plugin
		// downloads and verifies it, the engine vets it in the activation.
		if eng, err = policy.NewForBundles(popts, rt.Store, nil); err != nil {
			return fail(fmt.Errorf("policy: %w", err))
		}
		a.closers = append(a.closers, eng.Close)
		rt.Manager.RegisterCompilerTrigger(eng.BundleActivated)
	}
	if rt != nil {
		if err := rt.Start(ctx); err != nil {
			return fail(err)
		}
		a.closers = append(a.closers, func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			rt.Stop(sctx)
		})
		if !rt.HasBundles() {
			popts.Publish = rt.Publish
		}
	}
	if eng == nil {
		if eng, err = policy.New(ctx, popts); err != nil {
			return fail(fmt.Errorf("policy: %w", err))
		}
	}
	a.Engine = eng
	var dlog *observe.DecisionLog
	if p := rt.DecisionLogs(); p != nil {
		dlog = observe.NewDecisionLog(p, cmpOr(cfg.Policy.Path, policy.DefaultPath), cfg.Decisions.ClearHeaders, eng.Bundles)
	}

	idOpts := identity.Options{RolesHeader: cfg.Identity.RolesHeader, CallerHeader: cfg.Identity.CallerHeader, TrustRolesHeader: true}
	if j := cfg.Identity.JWT; j != nil {
		idOpts.TrustRolesHeader = cfg.Identity.TrustRolesHeader != nil && *cfg.Identity.TrustRolesHeader
		jo := &identity.JWTOptions{Header: j.Header, PublicKeyFiles: j.PublicKeyFiles, JWKSFile: j.JWKSFile,
			Audience: j.Audience, Issuer: j.Issuer, RolesClaim: j.RolesClaim, SubjectClaim: j.SubjectClaim, ProjectClaim: j.ProjectClaim, Leeway: j.Leeway,
			JWKSURLs: j.JWKSURLs, JWKSMinRefresh: j.JWKSMinRefresh, JWKSMaxRefresh: j.JWKSMaxRefresh,
			JWKSUnknownKidRefresh: j.JWKSUnknownKidRefresh}
		if j.HS256SecretEnv != "" {
			sec := os.Getenv(j.HS256SecretEnv)
			if sec == "" {
				return fail(fmt.Errorf("identity: %s (identity.jwt.hs256_secret_env) is empty", j.HS256SecretEnv))
			}
			jo.HS256Secret = []byte(sec)
		}
		idOpts.JWT = jo
	}
	if e := cfg.Identity.EnvoyJWT; e != nil {
		idOpts.TrustRolesHeader = cfg.Identity.TrustRolesHeader != nil && *cfg.Identity.TrustRolesHeader
		idOpts.EnvoyJWT = &identity.EnvoyJWTOptions{Namespace: e.Namespace, PayloadKey: e.PayloadKey,
			RolesClaim: e.RolesClaim, SubjectClaim: e.SubjectClaim}
	}
	ident, err := identity.New(idOpts)
	if err != nil {
		return fail(fmt.Errorf("identity: %w", err))
	}
	a.Identity = ident
	a.closers = append(a.closers, ident.Close)

	plans, err := forget.PlansFromConfig(cfg)
	if err != nil {
		return fail(fmt.Errorf("deletion plans: %w", err))
	}
	plan := plans.Wipe
	exec, err := forget.NewExecutor(forget.ExecutorOptions{Store: store, Plans: plans, Hasher: hasher, Logger: log,
		Auto: cfg.Lifecycle.Deletions == "auto", PerMinute: cfg.Wipes.PerMinute, Clock: now, Registerer: reg})
	if err != nil {
		return fail(err)
	}
	a.Forget = exec
	g, err := gate.New(gate.Options{DecisionLog: dlog, Config: cfg, Store: store, Engine: eng, Identity: ident, Hasher: hasher, Logger: log, Registerer: reg, Now: now, PlanKey: planKey,
		// Redis reads are round trips: a list's subjects are read together.
		BatchLookups: cfg.RedisURL != ""})
	if err != nil {
		return fail(err)
	}
	a.Gate = g
	a.closers = append(a.closers, func() {
		// Rectification entries waiting for the store get one last try.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Close(ctx)
	})
	if err := g.Warm(ctx); err != nil {
		// Not fatal: registers may be loaded through the admin API later.
		log.Error("route map not usable with the current registers", "err", err)
	}
	a.Authz = authz.New(g, log)

	tokens := make([]adminapi.Token, len(cfg.Admin.Tokens))
	for i, t := range cfg.Admin.Tokens {
		tokens[i] = adminapi.Token{Name: t.Name, SHA256: strings.ToLower(t.SHA256), Scopes: t.Scopes}
	}
	admin, err := adminapi.New(adminapi.Options{
		Store: store, Tokens: tokens, WipePlan: plan, Hasher: hasher, Logger: log,
		Ready: a.ready, Gatherer: reg, MaxBodyBytes: cfg.Admin.MaxBodyBytes,
		WipesPerMinute: cfg.Wipes.PerMinute, Clock: now,
		Forget: exec, MaxDeletionsPerChange: cfg.Lifecycle.MaxDeletionsPerChange,
		Console: cfg.Admin.Console,
	})
	if err != nil {
		return fail(fmt.Errorf("admin api: %w", err))
	}
	a.Admin = admin
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "gdprgate", Name: "gdpr_enforced",
		Help: "1 while the registers' config.gdpr_enforced is on, 0 while it is off (every bit then counts as active), NaN when the registers cannot be read.",
	}, a.enforcedGauge))

	bg, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	if cfg.PolicyDir != "" && cfg.PolicyWatch > 0 {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); eng.Watch(bg, cfg.PolicyWatch) }()
	}
	sw, err := forget.NewSweeper(forget.SweeperOptions{Executor: exec, Interval: cfg.Lifecycle.SweepInterval,
		LeaseTTL: cfg.Lifecycle.LeaseTTL, Batch: cfg.Lifecycle.Batch, Logger: log})
	if err != nil {
		cancel()
		return fail(err)
	}
	a.Sweeper = sw
	if *cfg.Lifecycle.Sweeper && !opts.DisableSweeper {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := sw.Run(bg); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("lifecycle sweeper stopped", "err", err)
			}
		}()
	}
	if cfg.Audit.Enabled() {
		token := ""
		if cfg.Audit.Export.TokenEnv != "" {
			token = os.Getenv(cfg.Audit.Export.TokenEnv)
		}
		ret, err := auditretention.New(auditretention.Options{Store: store, MaxAge: cfg.Audit.Retention.MaxAge,
			MaxEntries: cfg.Audit.Retention.MaxEntries, Interval: cfg.Audit.Retention.Interval,
			File: cfg.Audit.Export.File, URL: cfg.Audit.Export.URL, Token: token, Clock: now, Logger: log, Registerer: reg})
		if err != nil {
			cancel()
			return fail(err)
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := ret.Run(bg); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("audit retention stopped", "err", err)
			}
		}()
	}
	if !opts.DisableWipeWorker && (len(plan) > 0 || len(plans.Erase) > 0 || len(plans.Comm) > 0) {
		backend := cfg.Wipes.Backend
		if backend == "" {
			backend = cfg.Upstream
		}
		if backend == "" {
			log.Warn("wipes: no wipes.backend or upstream configured; wipes are queued but not executed here")
		} else {
			host, _ := os.Hostname()
			for i := 0; i < cfg.Wipes.Workers; i++ {
				w, err := forget.NewWorker(forget.Options{Store: store, Plan: plan, Backend: backend, Logger: log, Hasher: hasher,
					Consumer: fmt.Sprintf("%s-%d-%d", host, os.Getpid(), i), Clock: now})
				if err != nil {
					cancel()
					return fail(fmt.Errorf("wipes: %w", err))
				}
				a.wg.Add(1)
				go func() {
					defer a.wg.Done()
					if err := w.Run(bg); err != nil && !errors.Is(err, context.Canceled) {
						log.Error("wipe worker stopped", "err", err)
					}
				}()
			}
		}
	}
	return a, nil
}

// seed loads --seed (or the embedded seed) into an empty store.
func (a *App) seed(ctx context.Context, data []byte) error {
	if data == nil && a.Config.Seed != "" {
		var err error
		if data, err = os.ReadFile(a.Config.Seed); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	if data == nil {
		return nil
	}
	ix, err := a.Store.Registers(ctx)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if ix.Version != 0 {
		a.Log.Info("seed: store already has registers; seed not loaded", "version", ix.Version)
		return nil
	}
	at := a.seedTime
	if at.IsZero() {
		at = a.now()
	}
	s, err := model.ParseSeed(data, at)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if err := cache.LoadSeed(ctx, a.Store, s); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	a.Log.Info("seed loaded", "subjects", len(s.Subjects), "evidence", len(s.Evidence))
	return nil
}

// ready adds to the admin API's checks (store, registers, gdpr_enforced)
// what only the assembled gdprgate knows: the route map compiles against
// the registers, and the policy on disk is the one serving.
func (a *App) ready(ctx context.Context) []adminapi.ReadyCheck {
	rm := adminapi.ReadyCheck{Name: "route_map", OK: true}
	if err := a.Gate.Warm(ctx); err != nil {
		rm = adminapi.ReadyCheck{Name: "route_map", Reason: err.Error()}
	}
	pc := adminapi.ReadyCheck{Name: "policy", OK: true}
	if err := a.Engine.Refused(); err != nil {
		pc = adminapi.ReadyCheck{Name: "policy", Reason: "the policy files in " + a.Config.PolicyDir +
			" were refused; the previous policy keeps serving: " + err.Error()}
	}
	checks := []adminapi.ReadyCheck{rm, pc}
	if a.OPA.HasBundles() {
		bc := adminapi.ReadyCheck{Name: "bundles", OK: true}
		if problems := a.OPA.BundleProblems(); len(problems) > 0 {
			bc = adminapi.ReadyCheck{Name: "bundles", Reason: strings.Join(problems, "; ")}
			// A bundle that failed an update while an older revision
			// serves is reported, but the sidecar stays ready.
			bc.OK = a.Engine.Ready() == nil && !strings.Contains(bc.Reason, "not activated yet")
		}
		checks = append(checks, bc)
	}
	if err := a.Identity.Ready(ctx); err != nil {
		checks = append(checks, adminapi.ReadyCheck{Name: "jwks", Reason: err.Error()})
	}
	return checks
}

func (a *App) enforcedGauge() float64 {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ix, err := a.Store.Registers(ctx)
	if err != nil {
		return math.NaN()
	}
	if ix.Registers.Config.GdprEnforced {
		return 1
	}
	return 0
}

// grpcStreamWorkers is the number of goroutines the gRPC server keeps for
// its streams.
const grpcStreamWorkers = 64

// grpcBufferBytes sizes the gRPC server's read and write buffers (one of
// each per connection; grpc-go's default is 32 KiB). A 1 MB ext_proc body
// then crosses the socket in 4 writes and reads instead of 32: with
// 256 KiB, 0.82-0.93x the server CPU of a 1 MB list exchange in six of
// seven interleaved runs against the same build with the defaults (one
// 0.99x), 0.96x for a 10 KB list, at 0.5 MiB per connection.
const grpcBufferBytes = 256 << 10

// GRPCTransportOptions are the gRPC server's transport settings: how it
// reads, writes and schedules, apart from what it serves. gdprgate-load's
// allow-all baseline runs with them too, so that a comparison with it
// measures gdprgate's own work, not two transports.
func GRPCTransportOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		// Frames and messages from a pool that does not zero what it
		// hands out (see bufpool): a 1 MB body was cleared twice.
		experimental.BufferPool(bufpool.Pool),
		// Streams run on goroutines that keep their stacks: a fresh
		// goroutine per Check grew its stack through a Check's depth
		// every time (runtime.copystack was 6-13% of the server's CPU
		// under Check load, 1.5% with 64 workers). A stream arriving while
		// all are busy (ext_proc streams hold theirs for a whole
		// exchange) gets its own goroutine, as without workers.
		grpc.NumStreamWorkers(grpcStreamWorkers),
		grpc.ReadBufferSize(grpcBufferBytes),
		grpc.WriteBufferSize(grpcBufferBytes),
	}
}

// GRPCServer returns a gRPC server with Check, Process and health registered.
func (a *App) GRPCServer() *grpc.Server {
	opts := append(GRPCTransportOptions(),
		// grpc-go's default of 4 MiB would fail every ext_proc body
		// between that and body.max_bytes.
		grpc.MaxRecvMsgSize(a.Config.GRPCMaxRecvBytes()),
		// Answers marshalled by generated code into pooled buffers, bodies
		// neither copied out of requests nor into answers.
		grpc.ForceServerCodecV2(authz.Codec{}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	gs := grpc.NewServer(opts...)
	a.Authz.Register(gs)
	return gs
}

// Close stops background work and releases the store.
func (a *App) Close() error {
	a.cancel()
	a.wg.Wait()
	a.runClosers()
	return a.Store.Close()
}

func (a *App) runClosers() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
