package forget

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gdprgate/gdprgate/internal/observe"
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
		deletions: observe.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gdprgate_deletions_created_total", Help: "Deletion work created, by kind (wipe, erasure, purge) and status (queued, held, not_executable).",
		}, []string{"kind", "status"})),
		decisions: observe.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gdprgate_deletions_decided_total", Help: "Held deletions approved (queued) or rejected.",
		}, []string{"status"})),
		guardRefusals: observe.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gdprgate_mass_deletion_guard_refusals_total", Help: "Deletions refused (or held) by the mass-deletion guard.",
		})),
		subjects: observe.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gdprgate_lifecycle_subjects_total", Help: "Subjects the sweeper processed, by outcome (committed; retried: a write came in between; failed).",
		}, []string{"outcome"})),
		purged: observe.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gdprgate_evidence_purged_total", Help: "Evidence records purged after their retention (data obliviation + evidence_period_offset).",
		})),
		leader: observe.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gdprgate_lifecycle_sweeper_leader", Help: "1 while this process holds the sweeper lease.",
		})),
		due: observe.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gdprgate_lifecycle_due_subjects", Help: "Subjects whose next transition is due (seen by the sweeper's last pass).",
		})),
		indexed: observe.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gdprgate_lifecycle_indexed_subjects", Help: "Subjects in the due index.",
		})),
		recompute: observe.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gdprgate_lifecycle_recompute", Help: "Re-indexing after a register change: version, scanned subjects, done (0/1).",
		}, []string{"field"})),
	}
}
