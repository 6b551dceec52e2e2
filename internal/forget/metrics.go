package forget

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	deletions     *prometheus.CounterVec
	decisions     *prometheus.CounterVec
	guardRefusals prometheus.Counter
	subjects      *prometheus.CounterVec
	purged        prometheus.Counter
	leader        prometheus.Gauge
	due           prometheus.Gauge
	indexed       prometheus.Gauge
	recompute     *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		deletions: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gdprgate_deletions_created_total", Help: "Deletion work created, by kind (wipe, erasure, purge) and status (queued, held, not_executable).",
		}, []string{"kind", "status"})),
		decisions: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gdprgate_deletions_decided_total", Help: "Held deletions approved (queued) or rejected.",
		}, []string{"status"})),
		guardRefusals: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gdprgate_mass_deletion_guard_refusals_total", Help: "Deletions refused (or held) by the mass-deletion guard.",
		})),
		subjects: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gdprgate_lifecycle_subjects_total", Help: "Subjects the sweeper processed, by outcome (committed; retried: a write came in between; failed).",
		}, []string{"outcome"})),
		purged: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gdprgate_evidence_purged_total", Help: "Evidence records purged after their retention (data obliviation + evidence_period_offset).",
		})),
		leader: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gdprgate_lifecycle_sweeper_leader", Help: "1 while this process holds the sweeper lease.",
		})),
		due: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gdprgate_lifecycle_due_subjects", Help: "Subjects whose next transition is due (seen by the sweeper's last pass).",
		})),
		indexed: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gdprgate_lifecycle_indexed_subjects", Help: "Subjects in the due index.",
		})),
		recompute: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gdprgate_lifecycle_recompute", Help: "Re-indexing after a register change: version, scanned subjects, done (0/1).",
		}, []string{"field"})),
	}
}

// register registers c on reg, reusing a collector already registered
// under the same name (several executors may share a registry in tests).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
