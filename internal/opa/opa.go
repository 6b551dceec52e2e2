// Package opa runs OPA's own plugin machinery inside gdprgate, configured
// by OPA's configuration format (the `opa:` section: services, keys,
// labels, bundles, decision_logs, status): the bundle plugin downloads,
// polls and verifies signed bundles (gdprgate's activator then vets them),
// the decision-log plugin batches, retries and size-limits decision
// events to a service or prints them, and the status plugin reports.
// Nothing here downloads, caches or checks signatures itself.
package opa

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/logging"
	"github.com/open-policy-agent/opa/v1/plugins"
	bundleplugin "github.com/open-policy-agent/opa/v1/plugins/bundle"
	"github.com/open-policy-agent/opa/v1/plugins/logs"
	"github.com/open-policy-agent/opa/v1/plugins/status"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
)

// Options wire a Runtime.
type Options struct {
	// Config is the `opa:` section as decoded YAML.
	Config map[string]any
	// ID names this instance in status reports and decision logs.
	ID     string
	Logger *slog.Logger
	// Console receives console decision logs (decision_logs.console: true);
	// nil is standard output.
	Console    io.Writer
	Registerer prometheus.Registerer
}

// Runtime is a started OPA plugin manager.
type Runtime struct {
	Manager *plugins.Manager
	Store   storage.Store
	bundles *bundleplugin.Plugin
	logs    *logs.Plugin

	mu     sync.Mutex
	status map[string]bundleplugin.Status

	activations *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
	revision    *prometheus.GaugeVec
}

// Validate checks the `opa:` section with OPA's own parsers, without
// starting anything.
func Validate(raw map[string]any) error {
	if len(raw) == 0 {
		return nil
	}
	m, err := newManager(raw, "validate", inmem.New(), nil, nil)
	if err != nil {
		return err
	}
	_, _, _, err = parsePlugins(m)
	return err
}

func newManager(raw map[string]any, id string, store storage.Store, log *slog.Logger, console io.Writer) (*plugins.Manager, error) {
	bs, err := json.Marshal(raw)
	if err != nil {
		return nil, fmt.Errorf("opa: %w", err)
	}
	cl := logging.New()
	cl.SetFormatter(&logrus.JSONFormatter{})
	if console == nil {
		console = os.Stdout
	}
	cl.SetOutput(console)
	opts := []func(*plugins.Manager){plugins.ConsoleLogger(cl), plugins.EnablePrintStatements(false)}
	if log != nil {
		opts = append(opts, plugins.Logger(slogLogger{log: log.With("component", "opa")}))
	}
	m, err := plugins.New(bs, id, store, opts...)
	if err != nil {
		return nil, fmt.Errorf("opa: %w", err)
	}
	return m, nil
}

func parsePlugins(m *plugins.Manager) (*bundleplugin.Config, *logs.Config, *status.Config, error) {
	services := m.Services()
	bc, err := bundleplugin.NewConfigBuilder().WithBytes(m.Config.Bundles).WithServices(services).
		WithKeyConfigs(m.PublicKeys()).Parse()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("opa.bundles: %w", err)
	}
	lc, err := logs.NewConfigBuilder().WithBytes(m.Config.DecisionLogs).WithServices(services).Parse()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("opa.decision_logs: %w", err)
	}
	sc, err := status.NewConfigBuilder().WithBytes(m.Config.Status).WithServices(services).Parse()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("opa.status: %w", err)
	}
	return bc, lc, sc, nil
}

// New builds the plugin manager and the plugins the configuration asks
// for; Start starts them.
func New(opts Options) (*Runtime, error) {
	store := inmem.NewWithOpts(inmem.OptRoundTripOnWrite(false))
	m, err := newManager(opts.Config, opts.ID, store, opts.Logger, opts.Console)
	if err != nil {
		return nil, err
	}
	bc, lc, sc, err := parsePlugins(m)
	if err != nil {
		return nil, err
	}
	r := &Runtime{Manager: m, Store: store, status: map[string]bundleplugin.Status{}}
	if bc != nil && len(bc.Bundles) > 0 {
		r.bundles = bundleplugin.New(bc, m)
		m.Register(bundleplugin.Name, r.bundles)
		r.bundles.Register("gdprgate", r.onBundleStatus)
	}
	if lc != nil && (lc.ConsoleLogs || lc.Service != "" || lc.Plugin != nil) {
		r.logs = logs.New(lc, m)
		m.Register(logs.Name, r.logs)
	}
	if sc != nil && (sc.Service != "" || sc.ConsoleLogs) {
		m.Register(status.Name, status.New(sc, m))
	}
	r.activations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gdprgate_bundle_activations_total", Help: "Bundle downloads that were activated or refused (bad signature, failed tests, ...), by bundle.",
	}, []string{"bundle", "result"})
	r.lastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gdprgate_bundle_last_activation_timestamp_seconds", Help: "When each bundle was last activated.",
	}, []string{"bundle"})
	r.revision = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gdprgate_bundle_active_revision", Help: "1 for the active revision of each bundle.",
	}, []string{"bundle", "revision"})
	if opts.Registerer != nil && r.bundles != nil {
		for _, c := range []prometheus.Collector{r.activations, r.lastSuccess, r.revision} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("opa metrics: %w", err)
			}
		}
	}
	return r, nil
}

// HasBundles reports whether the policy comes from bundles.
func (r *Runtime) HasBundles() bool { return r != nil && r.bundles != nil }

// DecisionLogs is OPA's decision-log plugin (nil when not configured).
func (r *Runtime) DecisionLogs() *logs.Plugin {
	if r == nil {
		return nil
	}
	return r.logs
}

// Start initialises the manager's store and starts the plugins.
func (r *Runtime) Start(ctx context.Context) error {
	if err := r.Manager.Init(ctx); err != nil {
		return fmt.Errorf("opa: %w", err)
	}
	if err := r.Manager.Start(ctx); err != nil {
		return fmt.Errorf("opa: %w", err)
	}
	return nil
}

// Stop stops the plugins, flushing buffered decision logs.
func (r *Runtime) Stop(ctx context.Context) { r.Manager.Stop(ctx) }

func (r *Runtime) onBundleStatus(s bundleplugin.Status) {
	r.mu.Lock()
	prev := r.status[s.Name]
	r.status[s.Name] = s
	r.mu.Unlock()
	switch {
	case s.Code != "" && s.LastRequest != prev.LastRequest:
		r.activations.WithLabelValues(s.Name, "failure").Inc()
	case !s.LastSuccessfulActivation.IsZero() && s.LastSuccessfulActivation != prev.LastSuccessfulActivation:
		r.activations.WithLabelValues(s.Name, "success").Inc()
		r.lastSuccess.WithLabelValues(s.Name).Set(float64(s.LastSuccessfulActivation.Unix()))
		if prev.ActiveRevision != "" {
			r.revision.DeleteLabelValues(s.Name, prev.ActiveRevision)
		}
		r.revision.WithLabelValues(s.Name, s.ActiveRevision).Set(1)
	}
}

// BundleProblems lists, per configured bundle, why it is not (or no
// longer) current: never activated, or the last download or activation
// failed (the previous revision keeps serving). Empty when all is well.
func (r *Runtime) BundleProblems() []string {
	if !r.HasBundles() {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	names := make([]string, 0, len(r.bundles.Config().Bundles))
	for name := range r.bundles.Config().Bundles {
		names = append(names, name)
	}
	for _, name := range names {
		s, ok := r.status[name]
		switch {
		case !ok || s.LastSuccessfulActivation.IsZero():
			msg := "bundle " + name + ": not activated yet"
			if ok && s.Message != "" {
				msg += ": " + s.Message
			}
			out = append(out, msg)
		case s.Code != "":
			out = append(out, fmt.Sprintf("bundle %s: revision %q serving, the last update failed: %s", name, s.ActiveRevision, s.Message))
		}
	}
	sort.Strings(out)
	return out
}

// Publish makes c the manager's compiler (the policy from a directory or
// the embedded default), writing sources to its store so that OPA's
// plugins — decision-log mask and drop rules — evaluate the same policy.
func (r *Runtime) Publish(ctx context.Context, c *ast.Compiler, sources map[string]string) error {
	params := storage.WriteParams
	params.Context = storage.NewContext()
	return storage.Txn(ctx, r.Store, params, func(txn storage.Transaction) error {
		ids, err := r.Store.ListPolicies(ctx, txn)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := r.Store.DeletePolicy(ctx, txn, id); err != nil {
				return err
			}
		}
		for id, src := range sources {
			if err := r.Store.UpsertPolicy(ctx, txn, id, []byte(src)); err != nil {
				return err
			}
		}
		plugins.SetCompilerOnContext(params.Context, c)
		return nil
	})
}

// slogLogger gives OPA's plugins gdprgate's logger.
type slogLogger struct {
	log   *slog.Logger
	level logging.Level
}

func (l slogLogger) Debug(f string, a ...any) { l.log.Debug(fmt.Sprintf(f, a...)) }
func (l slogLogger) Info(f string, a ...any)  { l.log.Info(fmt.Sprintf(f, a...)) }
func (l slogLogger) Error(f string, a ...any) { l.log.Error(fmt.Sprintf(f, a...)) }
func (l slogLogger) Warn(f string, a ...any)  { l.log.Warn(fmt.Sprintf(f, a...)) }
func (l slogLogger) WithFields(fields map[string]any) logging.Logger {
	args := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		args = append(args, k, v)
	}
	return slogLogger{log: l.log.With(args...), level: l.level}
}
func (l slogLogger) GetLevel() logging.Level   { return logging.Info }
func (l slogLogger) SetLevel(lv logging.Level) {}
