package gate

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	decisions   *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	storeErrors prometheus.Counter
	bodies      *prometheus.CounterVec
	// originRecorded counts origins written (observed, stated);
	// originIgnored origin_from values not used (missing, unparsable,
	// future).
	originRecorded, originIgnored *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gdprgate_decisions_total", Help: "Decisions by stage (request, response), result and reason.",
		}, []string{"stage", "result", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gdprgate_decision_seconds", Help: "Time to decide, by stage.",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05},
		}, []string{"stage"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gdprgate_store_errors_total", Help: "Decisions that could not read fresh facts from the store.",
		}),
		bodies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gdprgate_response_bodies_total", Help: "Response bodies by outcome (rewritten, passed, refused).",
		}, []string{"outcome"}),
		originRecorded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gdprgate_origin_recorded_total", Help: "Subject origins recorded from 2xx answers, by source (observed: first seen; stated: the route's origin_from).",
		}, []string{"source"}),
		originIgnored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gdprgate_origin_ignored_total", Help: "origin_from values not used, by reason (missing, unparsable, future).",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.decisions, m.latency, m.storeErrors, m.bodies, m.originRecorded, m.originIgnored)
	}
	return m
}
