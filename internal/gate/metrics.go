package gate

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// decisionKey is one series of gdprgate_decisions_total.
type decisionKey struct{ stage, result, reason string }

// decision is the decisions counter's series for the labels, resolved once
// per label set: WithLabelValues hashes the labels and takes the vector's
// lock on every call, twice per Check.
func (m *metrics) decision(stage, result, reason string) prometheus.Counter {
	k := decisionKey{stage, result, reason}
	if c, ok := m.decisionSeries.Load(k); ok {
		return c.(prometheus.Counter)
	}
	c := m.decisions.WithLabelValues(stage, result, reason)
	m.decisionSeries.Store(k, c)
	return c
}

// one is the series of a one-label counter vector, resolved once per label
// through cache.
func one(cache *sync.Map, vec *prometheus.CounterVec, label string) prometheus.Counter {
	if c, ok := cache.Load(label); ok {
		return c.(prometheus.Counter)
	}
	c := vec.WithLabelValues(label)
	cache.Store(label, c)
	return c
}

// latencyOf is the latency histogram's series for a stage, resolved once.
func (m *metrics) latencyOf(stage string) prometheus.Observer {
	if o, ok := m.latencySeries.Load(stage); ok {
		return o.(prometheus.Observer)
	}
	o := m.latency.WithLabelValues(stage)
	m.latencySeries.Store(stage, o)
	return o
}

type metrics struct {
	decisions *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	// decisionSeries and latencySeries cache their children (decision,
	// latencyOf); a reason is one of gdprgate's or the policy's, a small set.
	decisionSeries, latencySeries sync.Map
	// planSeries and bodySeries: the same for plans and bodies (one per
	// ext_proc exchange each).
	planSeries, bodySeries sync.Map
	storeErrors            prometheus.Counter
	bodies                 *prometheus.CounterVec
	// streamAborted counts streamed answers aborted mid-way, by reason.
	streamAborted *prometheus.CounterVec
	// originRecorded counts origins written (observed, stated);
	// originIgnored origin_from values not used (missing, unparsable,
	// future).
	originRecorded, originIgnored *prometheus.CounterVec
	unseen                        *prometheus.GaugeVec
	// rectify counts rectification audit entries by result; rectifyPending
	// is how many wait for a retry.
	rectify        *prometheus.CounterVec
	rectifyPending prometheus.Gauge
	// shadow counts what shadow mode let through: would_deny,
	// would_redact, would_refuse.
	shadow *prometheus.CounterVec
	// commEvidence counts evidence records of communications by result.
	commEvidence *prometheus.CounterVec
	// confirm counts answers of subject.confirm routes that did not
	// confirm the request's subject, by route and result.
	confirm *prometheus.CounterVec
	// plans counts ext_proc request plans by result (reused, absent,
	// invalid, stale).
	plans *prometheus.CounterVec
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
		streamAborted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gdprgate_stream_aborted_total", Help: "Streamed answers aborted mid-way (after only rewritten items were sent), by reason (body_not_json, item_too_large, store_unavailable, subject_ambiguous, body_shape, body_undecodable, body_rejected).",
		}, []string{"reason"}),
		originRecorded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gdprgate_origin_recorded_total", Help: "Subject origins recorded from 2xx answers, by source (observed: first seen; stated: the route's origin_from).",
		}, []string{"source"}),
		originIgnored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gdprgate_origin_ignored_total", Help: "origin_from values not used, by reason (missing, unparsable, future).",
		}, []string{"reason"}),
		unseen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gdprgate_route_field_unseen",
			Help: "1 for a mapped field path that none of the route's first body.unseen_after successful JSON answers contained (a typo or a renamed backend field).",
		}, []string{"route", "path"}),
		rectify: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gdprgate_rectification_audit_total",
			Help: "Rectification audit entries by result: written, written_after_retry, not_applied (the backend refused the write), lost (given up on and logged at error level).",
		}, []string{"result"}),
		shadow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gdprgate_shadow_total",
			Help: "Shadow mode: requests and responses let through that enforcement would have changed, by route, outcome (would_deny, would_redact, would_refuse) and reason.",
		}, []string{"route", "outcome", "reason"}),
		rectifyPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gdprgate_rectification_audit_pending",
			Help: "Rectification audit entries the store refused, waiting for a retry.",
		}),
		plans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gdprgate_extproc_plans_total",
			Help: "ext_proc request plans by result: reused (ext_authz's sealed plan, nothing decided again), absent, invalid (forged, another key or route map, another request's), stale; all but reused decide again from the request.",
		}, []string{"result"}),
		commEvidence: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gdprgate_communication_evidence_total",
			Help: "Evidence records of communication routes by result: recorded, recorded_after_retry, refused (an obligatory field or the legalisation's status), not_permitted (the caller may not record evidence), lost (given up on and logged at error level).",
		}, []string{"result"}),
		confirm: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gdprgate_subject_unconfirmed_total",
			Help: "Answers of routes with subject.confirm that did not confirm the request's subject id, by route and result: alias (about another id: shown as both allow), denied (about a subject the caller may not see: replaced by the denial), missing (a 2xx without the id: refused).",
		}, []string{"route", "result"}),
	}
	if reg != nil {
		reg.MustRegister(m.decisions, m.latency, m.storeErrors, m.bodies, m.originRecorded, m.originIgnored, m.unseen, m.rectify, m.rectifyPending, m.shadow, m.commEvidence,
			m.confirm, m.plans, m.streamAborted)
	}
	return m
}
