package gate

import (
	"context"
	"log/slog"
	"sync"
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
// (legalisation, communication id, the subject as a keyed hash).
type commRetry struct {
	g        *Gate
	retryFor time.Duration

	mu      sync.Mutex
	queue   []pendingEvidence
	running bool
	closed  bool
	stop    chan struct{}
	done    chan struct{}
}

type pendingEvidence struct {
	evs   []model.Evidence
	entry audit.Entry
	since time.Time
}

func newCommRetry(g *Gate, retryFor time.Duration) *commRetry {
	if retryFor <= 0 {
		retryFor = defaultRectifyRetryFor
	}
	return &commRetry{g: g, retryFor: retryFor, stop: make(chan struct{})}
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
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || len(q.queue) >= rectifyQueue {
		q.lost(evs, entry, "no room to retry")
		return nil, false
	}
	q.queue = append(q.queue, pendingEvidence{evs, entry, time.Now()})
	if !q.running {
		q.running = true
		q.done = make(chan struct{})
		go q.run()
	}
	return nil, false
}

func (q *commRetry) try(ctx context.Context, evs []model.Evidence, entry audit.Entry) ([]model.Evidence, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rectifyTimeout)
	defer cancel()
	return q.g.store.PutEvidence(ctx, evs, entry)
}

func (q *commRetry) run() {
	defer close(q.done)
	backoff := 100 * time.Millisecond
	for {
		q.mu.Lock()
		if len(q.queue) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		p := q.queue[0]
		q.mu.Unlock()
		_, err := q.try(context.Background(), p.evs, p.entry)
		q.mu.Lock()
		switch {
		case err == nil:
			q.queue = q.queue[1:]
			q.g.metrics.commEvidence.WithLabelValues("recorded_after_retry").Add(float64(len(p.evs)))
			backoff = 100 * time.Millisecond
		case time.Since(p.since) >= q.retryFor:
			q.queue = q.queue[1:]
			q.lost(p.evs, p.entry, err.Error())
		}
		q.mu.Unlock()
		if err == nil {
			continue
		}
		select {
		case <-q.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (q *commRetry) close(ctx context.Context) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	close(q.stop)
	done := q.done
	q.mu.Unlock()
	if done != nil {
		<-done
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, p := range q.queue {
		if _, err := q.try(ctx, p.evs, p.entry); err != nil {
			q.lost(p.evs, p.entry, "gdprgate is stopping: "+err.Error())
			continue
		}
		q.g.metrics.commEvidence.WithLabelValues("recorded_after_retry").Add(float64(len(p.evs)))
	}
	q.queue = nil
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
