package policy

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	evaluations prometheus.Counter
	memoHits    prometheus.Counter
	evalErrors  prometheus.Counter
	reloads     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		evaluations: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "gdprgate", Subsystem: "policy", Name: "evaluations_total",
			Help: "Rego evaluations of the decision (memo misses and unmemoised policies).",
		}),
		memoHits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "gdprgate", Subsystem: "policy", Name: "memo_hits_total",
			Help: "Decisions served from the memo without evaluation.",
		}),
		evalErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "gdprgate", Subsystem: "policy", Name: "errors_total",
			Help: "Decisions that failed (evaluation error, undefined or malformed decision); callers deny.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gdprgate", Subsystem: "policy", Name: "reloads_total",
			Help: "Policy reloads by result (success, failure).",
		}, []string{"result"}),
	}
	if reg == nil {
		return m, nil
	}
	// Several engines may share a registry (tests, reload of the process
	// config): reuse the collector already registered.
	var err error
	if m.evaluations, err = register(reg, m.evaluations); err != nil {
		return nil, err
	}
	if m.memoHits, err = register(reg, m.memoHits); err != nil {
		return nil, err
	}
	if m.evalErrors, err = register(reg, m.evalErrors); err != nil {
		return nil, err
	}
	if m.reloads, err = register(reg, m.reloads); err != nil {
		return nil, err
	}
	return m, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("register policy metrics: %w", err)
	}
	return c, nil
}
