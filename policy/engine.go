package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMemoSize bounds the memo when Options.MemoSize is 0.
const DefaultMemoSize = 1 << 16

// Options configure an Engine.
type Options struct {
	// Dir is the policy directory (*.rego, tests in *_test.rego); "" is the
	// embedded default policy.
	Dir string
	// Path is the decision entry point, slash-separated under data as in
	// opa-envoy-plugin ("envoy/authz/allow"); "" is DefaultPath, the GDPR
	// decision itself.
	Path       string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// MemoSize bounds the number of memoised decisions (0: DefaultMemoSize).
	MemoSize int
	// OnReload, when set, is called after every reload attempt that found
	// changed files, with nil or the reason the new policy was refused.
	OnReload func(error)
	// AllowUntested loads a policy that has no passing test_ rule. By
	// default such a policy is refused, at start and on reload: deleting
	// the test file must not be the way a broken policy goes live.
	AllowUntested bool
	// Publish, when set, receives every policy installed from Dir (or the
	// embedded default) with its compiler and serving sources, so that
	// OPA's plugins (decision-log mask rules) see the same policy.
	Publish func(ctx context.Context, c *ast.Compiler, sources map[string]string) error
}

// Engine evaluates the request policy. It is safe for concurrent use.
type Engine struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	cur     atomic.Pointer[generation]
	// reloadMu serialises Reload so two reloads never race to swap.
	reloadMu sync.Mutex
	// refused is why Reload last refused the files on disk; nil while the
	// files are the ones serving.
	refused atomic.Pointer[error]
	// bundles is set when the policy comes from OPA bundles.
	bundles *bundleState
}

// generation is a policy with its memos; all are replaced atomically.
type generation struct {
	policy *compiled
	memo   *memo // nil when the GDPR decision is not memoisable
	// entryMemo memoises the entry point (layered policies reading facts
	// only); nil otherwise.
	entryMemo *memo
}

// New loads, compiles and tests the policy. A policy that fails to parse,
// compile or pass its own tests is refused with an error naming file:line.
func New(ctx context.Context, opts Options) (*Engine, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MemoSize <= 0 {
		opts.MemoSize = DefaultMemoSize
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	e := &Engine{opts: opts, log: opts.Logger.With("component", "policy"), metrics: m}
	files, err := readSources(opts.Dir)
	if err != nil {
		return nil, err
	}
	c, err := compilePolicy(ctx, files, opts.Path, opts.AllowUntested)
	if err != nil {
		return nil, err
	}
	e.install(c)
	return e, nil
}

func (e *Engine) newGeneration(c *compiled) *generation {
	g := &generation{policy: c}
	if c.memoisable {
		g.memo = newMemo(e.opts.MemoSize)
	}
	if c.layered && c.entryMemoisable {
		g.entryMemo = newMemo(e.opts.MemoSize)
	}
	return g
}

func (e *Engine) install(c *compiled) {
	if e.opts.Publish != nil && c.compiler != nil {
		if err := e.opts.Publish(context.Background(), c.compiler, c.sources); err != nil {
			e.log.Warn("policy not published to OPA's plugins; their mask rules may lag", "err", err)
		}
	}
	if !c.memoisable {
		e.log.Warn("GDPR decision reads request attributes: decisions are not memoised", "why", c.why)
	}
	if c.layered && !c.entryMemoisable {
		e.log.Info("entry point reads the request: evaluated per request", "path", c.entryPath, "why", c.entryWhy)
	}
	e.cur.Store(e.newGeneration(c))
	e.log.Info("policy loaded", "dir", e.dirName(), "entry", c.entryPath, "memoised", c.memoisable)
}

func (e *Engine) dirName() string {
	if e.opts.Dir == "" {
		return "(embedded default)"
	}
	return e.opts.Dir
}

// Memoised reports whether the current policy's GDPR decisions are
// memoised (they then need no Request).
func (e *Engine) Memoised() bool { return e.cur.Load().memo != nil }

// Layered reports whether the entry point (policy.path) is not the GDPR
// decision, so that DecideEntry must be asked too.
func (e *Engine) Layered() bool { return e.cur.Load().policy.layered }

// EntryMemoised reports whether the entry point reads facts only (it then
// needs no Request).
func (e *Engine) EntryMemoised() bool { return e.cur.Load().entryMemo != nil }

// EntryMaySetMask reports whether the entry point can give visible_mask.
func (e *Engine) EntryMaySetMask() bool { return e.cur.Load().policy.entryMask }

// Decide returns the policy's decision for f. req supplies the request
// attributes for policies that read them and may be nil otherwise. A
// returned Decision (and its Headers map, shared between callers) must not
// be modified. Any error means the request must be denied. A memo hit
// never blocks and so does not consult ctx; an evaluation honours its
// deadline and cancellation.
func (e *Engine) Decide(ctx context.Context, f Facts, req *Request) (Decision, error) {
	g := e.cur.Load()
	if g.policy.unavailable {
		return Decision{}, ErrNoPolicy
	}
	if g.memo != nil {
		if d, ok := g.memo.get(&f); ok {
			e.metrics.memoHits.Inc()
			return d, nil
		}
	}
	d, err := e.eval(ctx, g.policy.query, DecisionQuery, &f, req)
	if err != nil {
		e.metrics.evalErrors.Inc()
		return Decision{}, err
	}
	if g.memo != nil {
		g.memo.put(&f, d)
	}
	return d, nil
}

// DecideEntry evaluates the entry point of a layered policy (Layered). f
// is nil for requests outside the route map (no GDPR facts); req may be
// nil when EntryMemoised. Errors mean deny; an *InputError means the
// request itself cannot be read (400).
func (e *Engine) DecideEntry(ctx context.Context, f *Facts, req *Request) (Decision, error) {
	g := e.cur.Load()
	if !g.policy.layered {
		return Decision{}, errors.New("policy decision: the entry point is the GDPR decision")
	}
	if g.entryMemo != nil && f != nil {
		if d, ok := g.entryMemo.get(f); ok {
			e.metrics.memoHits.Inc()
			return d, nil
		}
	}
	d, err := e.eval(ctx, g.policy.entry, g.policy.entryPath, f, req)
	if err != nil {
		e.metrics.evalErrors.Inc()
		return Decision{}, err
	}
	if g.entryMemo != nil && f != nil {
		g.entryMemo.put(f, d)
	}
	return d, nil
}

func (e *Engine) eval(ctx context.Context, q rego.PreparedEvalQuery, name string, f *Facts, req *Request) (Decision, error) {
	if err := ctx.Err(); err != nil {
		return Decision{}, fmt.Errorf("policy decision: %w", err)
	}
	input, err := buildInput(f, req)
	if err != nil {
		return Decision{}, err
	}
	e.metrics.evaluations.Inc()
	rs, err := q.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		return Decision{}, fmt.Errorf("evaluate policy: %w", err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return Decision{}, fmt.Errorf("evaluate policy: %s is undefined", name)
	}
	d, err := parseResult(rs[0].Expressions[0].Value)
	if err != nil {
		return Decision{}, fmt.Errorf("evaluate policy: %s: %w", name, err)
	}
	d.Result = rs[0].Expressions[0].Value
	return d, nil
}

// Invalidate drops every memoised decision (call it when anything a policy
// may read besides Facts changed). In-flight evaluations store into the
// dropped memo, never into the new one.
func (e *Engine) Invalidate() {
	for {
		old := e.cur.Load()
		if old.memo == nil && old.entryMemo == nil {
			return
		}
		next := e.newGeneration(old.policy)
		if e.cur.CompareAndSwap(old, next) {
			return
		}
	}
}

// Reload re-reads Options.Dir; if its files changed, it compiles and tests
// them and swaps the new policy (with a fresh memo) in atomically. A policy
// that is refused leaves the serving one in place and is returned as error.
func (e *Engine) Reload(ctx context.Context) error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	files, err := readSources(e.opts.Dir)
	if err == nil && fingerprint(files) == e.cur.Load().policy.fingerprint {
		e.refused.Store(nil)
		return nil
	}
	var c *compiled
	if err == nil {
		c, err = compilePolicy(ctx, files, e.opts.Path, e.opts.AllowUntested)
	}
	if err != nil {
		e.metrics.reloads.WithLabelValues("failure").Inc()
		e.refused.Store(&err)
		e.log.Error("policy reload refused; the previous policy keeps serving", "dir", e.dirName(), "err", err)
		if e.opts.OnReload != nil {
			e.opts.OnReload(err)
		}
		return fmt.Errorf("reload policy: %w", err)
	}
	e.install(c)
	e.refused.Store(nil)
	e.metrics.reloads.WithLabelValues("success").Inc()
	if e.opts.OnReload != nil {
		e.opts.OnReload(nil)
	}
	return nil
}

// Refused is why the last Reload refused the policy files on disk (the
// previous policy keeps serving), or nil while the files on disk are the
// ones serving. Readiness reports it.
func (e *Engine) Refused() error {
	if p := e.refused.Load(); p != nil {
		return *p
	}
	return nil
}

// Watch polls Options.Dir every interval until ctx ends and reloads the
// policy when a file's name, size or modification time changed. It returns
// at once for the embedded default policy.
func (e *Engine) Watch(ctx context.Context, interval time.Duration) {
	if e.opts.Dir == "" {
		return
	}
	// A change is acted on once the files look the same on two consecutive
	// polls, so a file caught half-written is not compiled. The first
	// reload is a no-op when the contents are those loaded by New, and it
	// catches files changed between New and Watch.
	var seen, loaded string
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := statFingerprint(e.opts.Dir)
		if now != seen {
			seen = now
			continue
		}
		if now == loaded {
			continue
		}
		loaded = now
		// The error is logged and counted by Reload; a refused policy is
		// retried only when the files change again.
		_ = e.Reload(ctx)
	}
}

// statFingerprint is a cheap summary of the .rego files' names, sizes and
// modification times; Reload then compares contents.
func statFingerprint(dir string) string {
	var b strings.Builder
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			fmt.Fprintf(&b, "%s:err;", p)
			return nil
		}
		if d.IsDir() || !strings.HasSuffix(p, ".rego") {
			return nil
		}
		info, err := os.Stat(p)
		if err != nil {
			fmt.Fprintf(&b, "%s:err;", p)
			return nil
		}
		fmt.Fprintf(&b, "%s:%d:%d;", p, info.Size(), info.ModTime().UnixNano())
		return nil
	})
	return b.String()
}
