package policy

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// ErrNoPolicy: no bundle has been activated yet; decisions fail closed.
var ErrNoPolicy = errors.New("policy decision: no policy bundle activated yet")

// ActivatorID is the bundle activator gdprgate registers with OPA. OPA's
// bundle plugin activates every bundle through it: it activates the
// bundle as OPA's default activator does (same transaction, roots, data,
// manifests), then refuses it — aborting the transaction, so the serving
// bundle stays — unless it compiles with a GDPR decision, has the
// configured entry point and its tests pass, exactly as a --policy
// directory must. The engine's next generation is prepared in the same
// transaction and swapped in once it commits.
const ActivatorID = "gdprgate"

var (
	registerActivator sync.Once
	// bundleEngines maps the storage.Store a bundle plugin activates into
	// to the engine deciding with it (stores are pointers: one per engine).
	bundleEngines sync.Map
)

type activator struct{}

func (activator) Activate(opts *bundle.ActivateOpts) error {
	if e, ok := bundleEngines.Load(opts.Store); ok {
		return e.(*Engine).activate(opts)
	}
	return (&bundle.DefaultActivator{}).Activate(opts)
}

// pending is a generation prepared inside an activation transaction.
type pending struct {
	txn uint64
	c   *compiled
}

// bundleState is an engine's bundle side.
type bundleState struct {
	store   storage.Store
	pending atomic.Pointer[pending]
	// activations counts vetting results by bundle (success, failure).
	onResult func(bundle string, err error)
}

// NewForBundles returns an engine whose policy comes from OPA bundles
// activated into store; until the first activation every decision fails
// with ErrNoPolicy. Call BundleActivated from the plugin manager's
// compiler trigger. onResult, when set, hears every vetting result.
func NewForBundles(opts Options, store storage.Store, onResult func(bundle string, err error)) (*Engine, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MemoSize <= 0 {
		opts.MemoSize = DefaultMemoSize
	}
	if _, err := PathRef(opts.Path); err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	e := &Engine{opts: opts, log: opts.Logger.With("component", "policy"), metrics: m,
		bundles: &bundleState{store: store, onResult: onResult}}
	e.cur.Store(&generation{policy: &compiled{unavailable: true}})
	registerActivator.Do(func() {
		bundle.RegisterActivator(ActivatorID, activator{})
		bundle.RegisterDefaultBundleActivator(ActivatorID)
		// With a default activator registered, rego.New without a store
		// asks OPA's bundle extension for one: give it a plain one.
		bundle.RegisterStoreFunc(func() storage.Store { return inmem.New() })
	})
	bundleEngines.Store(store, e)
	return e, nil
}

// Ready reports whether a policy serves (a bundle was activated).
func (e *Engine) Ready() error {
	if e.cur.Load().policy.unavailable {
		return ErrNoPolicy
	}
	return nil
}

// Bundles returns the revisions of the active bundles (nil without).
func (e *Engine) Bundles() map[string]string { return e.cur.Load().policy.bundles }

// Close forgets the engine's bundle store.
func (e *Engine) Close() {
	if e.bundles != nil {
		bundleEngines.Delete(e.bundles.store)
	}
}

func (e *Engine) activate(opts *bundle.ActivateOpts) (err error) {
	if len(opts.Bundles) == 0 {
		// The manager's own initialisation: nothing to vet.
		return (&bundle.DefaultActivator{}).Activate(opts)
	}
	names := make([]string, 0, len(opts.Bundles))
	for name := range opts.Bundles {
		names = append(names, name)
	}
	name := strings.Join(names, ",")
	defer func() {
		if e.bundles.onResult != nil {
			e.bundles.onResult(name, err)
		}
		if err != nil {
			e.log.Error("bundle refused; the active policy keeps serving", "bundle", name, "err", err)
		}
	}()
	entryRef, err := PathRef(e.opts.Path)
	if err != nil {
		return err
	}
	if !entryRef.Equal(decisionRef) && !bundlesDefineDecision(opts) {
		extra, err := defaultDecisionModules()
		if err != nil {
			return err
		}
		if opts.ExtraModules == nil {
			opts.ExtraModules = map[string]*ast.Module{}
		}
		for k, m := range extra {
			opts.ExtraModules[k] = m
		}
	}
	if err := (&bundle.DefaultActivator{}).Activate(opts); err != nil {
		return err
	}
	if err := checkEntry(opts.Compiler, entryRef, e.opts.Path); err != nil {
		return err
	}
	modules, err := storeModules(opts)
	if err != nil {
		return err
	}
	passed, failed, err := runTestsIn(opts.Ctx, modules, opts.Store, opts.Txn, io.Discard, false)
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("policy tests failed:\n%s", strings.Join(failed, "\n"))
	}
	if passed == 0 && !e.opts.AllowUntested {
		return errors.New("bundle has no test_ rule that passes; refused unless --policy-allow-untested")
	}
	cp, err := prepare(opts.Ctx, opts.Compiler, opts.Store, entryRef, opts.Txn)
	if err != nil {
		return err
	}
	cp.bundles = map[string]string{}
	for n, r := range e.cur.Load().policy.bundles {
		cp.bundles[n] = r
	}
	for n, b := range opts.Bundles {
		cp.bundles[n] = b.Manifest.Revision
	}
	e.bundles.pending.Store(&pending{txn: opts.Txn.ID(), c: cp})
	return nil
}

// BundleActivated installs the generation prepared in txn, once it
// committed (the plugin manager's compiler trigger).
func (e *Engine) BundleActivated(txn storage.Transaction) {
	p := e.bundles.pending.Load()
	if p == nil || p.txn != txn.ID() || !e.bundles.pending.CompareAndSwap(p, nil) {
		return
	}
	e.install(p.c)
	e.metrics.reloads.WithLabelValues("success").Inc()
}

func bundlesDefineDecision(opts *bundle.ActivateOpts) bool {
	for name, b := range opts.Bundles {
		if definesDecision(b.ParsedModules(name)) {
			return true
		}
	}
	return false
}

func defaultDecisionModules() (map[string]*ast.Module, error) {
	all, serving := map[string]*ast.Module{}, map[string]*ast.Module{}
	if err := addDefaultDecision(all, serving); err != nil {
		return nil, err
	}
	return serving, nil
}

// storeModules are every policy module the activation leaves (the store's,
// tests included, and the extra ones), parsed afresh for the test run.
func storeModules(opts *bundle.ActivateOpts) (map[string]*ast.Module, error) {
	ids, err := opts.Store.ListPolicies(opts.Ctx, opts.Txn)
	if err != nil {
		return nil, fmt.Errorf("list bundle policies: %w", err)
	}
	out := make(map[string]*ast.Module, len(ids)+len(opts.ExtraModules))
	for _, id := range ids {
		src, err := opts.Store.GetPolicy(opts.Ctx, opts.Txn, id)
		if err != nil {
			return nil, fmt.Errorf("read bundle policy %s: %w", id, err)
		}
		m, err := ast.ParseModuleWithOpts(id, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, fmt.Errorf("parse bundle policy: %w", err)
		}
		out[id] = m
	}
	for k, m := range opts.ExtraModules {
		out[k] = m
	}
	return out, nil
}
