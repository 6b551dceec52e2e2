package gate

import (
	"context"
	"log/slog"
	"time"

	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/model"
)

// commRetry stores the evidence of communications the store refused when
// the backend had already recorded them: nothing accepted is lost. The
// records have ids derived from what they are (commEvidenceID), so a retry
// that raced a success stores nothing twice. It follows the rectifier:
// retried with backoff for the same time, tried once more at Close, and a
// record given up on is logged at error level with what identifies it
// (legalisation, communication id, the subject as a keyed hash). The
// queueing is the rectifier's (retryQueue).
type commRetry struct {
	g       *Gate
	retries *retryQueue[pendingEvidence]
}

type pendingEvidence struct {
	evs   []model.Evidence
	entry audit.Entry
}

func newCommRetry(g *Gate, retryFor time.Duration) *commRetry {
	q := &commRetry{g: g}
	q.retries = newRetryQueue(retryFor, rectifyQueue, func(ctx context.Context, p pendingEvidence) error {
		_, err := q.try(ctx, p.evs, p.entry)
		return err
	}, func(p pendingEvidence) {
		g.metrics.commEvidence.WithLabelValues("recorded_after_retry").Add(float64(len(p.evs)))
	}, func(p pendingEvidence, why string) { q.lost(p.evs, p.entry, why) })
	return q
}

// put stores evs once, inline; on failure it queues them for retries and
// reports false.
func (q *commRetry) put(ctx context.Context, evs []model.Evidence, entry audit.Entry) ([]model.Evidence, bool) {
	stored, err := q.try(ctx, evs, entry)
	if err == nil {
		q.g.metrics.commEvidence.WithLabelValues("recorded").Add(float64(len(stored)))
		return stored, true
	}
	q.log(slog.LevelWarn, "communication evidence not recorded yet; retrying (the backend has the communication)", evs, entry, err)
	q.retries.add(pendingEvidence{evs, entry})
	return nil, false
}

func (q *commRetry) try(ctx context.Context, evs []model.Evidence, entry audit.Entry) ([]model.Evidence, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rectifyTimeout)
	defer cancel()
	return q.g.store.PutEvidence(ctx, evs, entry)
}

func (q *commRetry) lost(evs []model.Evidence, entry audit.Entry, why string) {
	q.g.metrics.commEvidence.WithLabelValues("lost").Add(float64(len(evs)))
	q.log(slog.LevelError, "communication evidence NOT recorded: replay it from this line", evs, entry, nil, "reason", why)
}

func (q *commRetry) log(level slog.Level, msg string, evs []model.Evidence, entry audit.Entry, err error, extra ...any) {
	legs := make([]string, len(evs))
	var comm string
	for i, ev := range evs {
		legs[i] = ev.LegalisationID
		if len(ev.CommIDs) > 0 {
			comm = ev.CommIDs[0]
		}
	}
	args := []any{"route", entry.Object, "subject", entry.Subject, "legalisations", legs, "communication_id", comm,
		"time", entry.Time.UTC().Format(time.RFC3339Nano), "decision_id", entry.Detail["decision_id"]}
	if err != nil {
		args = append(args, "err", err)
	}
	q.g.log.Log(context.Background(), level, msg, append(args, extra...)...)
}
