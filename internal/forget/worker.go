// Package forget is everything in gdprgate that deletes (DESIGN §5): the
// worker executing deletion work (WipeCtcAll wipes, lifecycle erasures,
// purges of proof communications), the sweeper that applies due lifecycle
// transitions, the approvals of held deletions, the mass-deletion guard
// shared by every sidecar, the preview of a register change and the due
// report.
//
// # The worker
//
// For a deletion it calls the backend's routes, one step after another,
// until every step is done. A wipe is exactly-once in effect: each step is an idempotent HTTP call (2xx
// or 404 both mean "gone"), its progress is saved in the store after every
// attempt, a step already done is never repeated, and a wipe whose worker
// died is handed to another worker by the store's claim protocol (ClaimWipe
// re-hands a claim that stayed un-acked longer than MinIdle), which resumes
// at the first step not done.
//
// The manual's switches are honoured at every claim: config.suspend_wipes
// holds the whole wipe (status "suspended", not acked, so it is re-claimed
// after MinIdle and re-checked), config.suspend_wipe_issue holds only the
// steps marked Issue while the others run.
package forget

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
)

// Step statuses (cache.WipeStep.Status).
const (
	StepPending   = "pending"
	StepSuspended = "suspended"
	StepDone      = "done"
	StepFailed    = "failed"
	StepSkipped   = "skipped"
)

// Options configure a Worker. Store, Plan and Backend are required.
type Options struct {
	Store cache.Store
	Plan  Plan
	// Backend is the base URL the steps' paths are appended to.
	Backend string
	// Client makes the backend calls; default a client with a 10s timeout.
	Client *http.Client
	// Consumer names this worker in the store's claim protocol; default
	// "wipe-worker".
	Consumer string
	Logger   *slog.Logger
	// Hasher turns subjects into the keyed hashes written to logs and audit.
	Hasher audit.Hasher
	// MaxAttempts bounds the attempts of one step within one claim (default
	// 5). A step still failing transiently stays pending: the wipe is not
	// acked and is retried after MinIdle, so nothing accepted is lost.
	MaxAttempts int
	// Backoff is the first retry delay, doubled per attempt (default 200ms,
	// capped at 30s).
	Backoff time.Duration
	// MinIdle is how long a claim stays with a silent worker before another
	// may take it over; suspended wipes are re-checked at this interval
	// (default 30s).
	MinIdle time.Duration
	// Block is how long one ClaimWipe call waits for work (default 2s).
	Block time.Duration
	// Clock stamps records (default time.Now).
	Clock func() time.Time
}

// Worker claims queued wipes and executes them.
type Worker struct {
	o   Options
	log *slog.Logger
}

// NewWorker checks o and fills its defaults.
func NewWorker(o Options) (*Worker, error) {
	if o.Store == nil {
		return nil, errors.New("wipe: Options.Store is required")
	}
	if _, err := url.Parse(o.Backend); err != nil || o.Backend == "" {
		return nil, fmt.Errorf("wipe: Options.Backend must be a base URL (got %q)", o.Backend)
	}
	o.Backend = strings.TrimRight(o.Backend, "/")
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Consumer == "" {
		o.Consumer = "wipe-worker"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.Backoff <= 0 {
		o.Backoff = 200 * time.Millisecond
	}
	if o.MinIdle <= 0 {
		o.MinIdle = 30 * time.Second
	}
	if o.Block <= 0 {
		o.Block = 2 * time.Second
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return &Worker{o: o, log: o.Logger.With("component", "wipe", "consumer", o.Consumer)}, nil
}

// Run claims and executes wipes until ctx is done; it then returns ctx's
// error. Store errors are logged and retried; they never stop the loop.
func (w *Worker) Run(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, err := w.o.Store.ClaimWipe(ctx, w.o.Consumer, w.o.MinIdle, w.o.Block)
		if err != nil {
			if errors.Is(err, cache.ErrNotFound) {
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			w.log.WarnContext(ctx, "claim wipe failed", "err", err)
			if !sleep(ctx, w.o.Backoff) {
				return ctx.Err()
			}
			continue
		}
		if err := w.Process(ctx, c); err != nil && ctx.Err() == nil {
			// Not acked: the store hands the claim again after MinIdle.
			w.log.WarnContext(ctx, "wipe not finished", "wipe", c.WipeID, "err", err)
		}
	}
}

// Process executes one claimed wipe as far as it can. It acks the claim when
// the wipe reached a final status (done, failed, cancelled) and leaves it
// claimed otherwise (suspended, transient failures, ctx cancelled), so the
// store hands it out again after MinIdle.
func (w *Worker) Process(ctx context.Context, c cache.Claim) error {
	rec, err := w.o.Store.Wipe(ctx, c.WipeID)
	if errors.Is(err, cache.ErrNotFound) {
		// A queue entry without a record cannot be executed; drop it.
		w.log.ErrorContext(ctx, "claimed wipe has no record; dropping it", "wipe", c.WipeID)
		return w.o.Store.AckWipe(ctx, c)
	}
	if err != nil {
		return fmt.Errorf("read wipe %s: %w", c.WipeID, err)
	}
	switch rec.Status {
	case cache.WipeDone, cache.WipeFailed, cache.WipeCancelled:
		return w.o.Store.AckWipe(ctx, c)
	}
	ix, err := w.o.Store.Registers(ctx)
	if err != nil {
		return fmt.Errorf("read config for wipe %s: %w", c.WipeID, err)
	}
	cfg := ix.Registers.Config
	subj := w.o.Hasher.Subject(rec.Subject)
	rec.Attempts++
	if cfg.SuspendWipes {
		rec.Status = cache.WipeSuspended
		for i := range rec.Steps {
			if rec.Steps[i].Status == StepPending {
				rec.Steps[i].Status = StepSuspended
			}
		}
		rec.UpdatedAt = w.o.Clock()
		if err := w.o.Store.SaveWipe(ctx, rec); err != nil {
			return fmt.Errorf("save suspended wipe %s: %w", rec.ID, err)
		}
		w.log.InfoContext(ctx, "wipe suspended by config.suspend_wipes", "wipe", rec.ID, "subject", subj)
		return nil
	}

	// A lifecycle erasure may have waited long (suspend_wipes) after its
	// approval: it runs only while its data is still obliviated. (A
	// lifecycle wipe restricted its subject when approved and runs like
	// any wipe.)
	if kindOf(rec) == cache.KindErasure && rec.Reason == cache.ReasonLifecycle && !anyStepDone(rec) {
		why, err := notDue(ctx, w.o.Store, ix, rec, w.o.Clock(), map[string]string{})
		if err != nil {
			return fmt.Errorf("wipe %s: %w", rec.ID, err)
		}
		if why != "" {
			rec.Error = "not due any more: " + why
			entry := w.finalEntry(rec, subj, "deletion.not_due", cache.WipeCancelled)
			entry.Detail["why"] = why
			if err := w.save(ctx, &rec, cache.WipeCancelled, entry); err != nil {
				return err
			}
			w.log.InfoContext(ctx, "lifecycle erasure cancelled: its data is no longer obliviated", "wipe", rec.ID, "subject", subj, "why", why)
			return w.o.Store.AckWipe(ctx, c)
		}
	}

	held := false
	for i := range rec.Steps {
		st := &rec.Steps[i]
		if st.Status == StepDone || st.Status == StepSkipped {
			continue // resumed after a crash, or done before a suspension
		}
		if w.isIssue(rec.Subject.Entity, i, st) && cfg.SuspendWipeIssue {
			if st.Status != StepSuspended {
				st.Status = StepSuspended
				if err := w.save(ctx, &rec, ""); err != nil {
					return err
				}
			}
			held = true
			continue
		}
		// Re-read right before deleting: an admin may have cancelled the
		// wipe since it was claimed (cancel is allowed until a step is done).
		cur, err := w.o.Store.Wipe(ctx, rec.ID)
		if err != nil {
			return fmt.Errorf("re-read wipe %s: %w", rec.ID, err)
		}
		if cur.Status == cache.WipeCancelled {
			w.log.InfoContext(ctx, "wipe cancelled before deleting", "wipe", rec.ID)
			return w.o.Store.AckWipe(ctx, c)
		}
		st.Status = StepPending
		if err := w.save(ctx, &rec, cache.WipeRunning); err != nil {
			return err
		}
		final, err := w.runStep(ctx, &rec, st, subj)
		if ctx.Err() != nil {
			// Killed mid-step: whatever the backend did, the step is
			// repeated by whoever resumes (the calls are idempotent).
			return ctx.Err()
		}
		if err != nil && !final {
			rec.Error = err.Error()
			rec.Status = cache.WipeQueued
			if serr := w.save(ctx, &rec, ""); serr != nil {
				return serr
			}
			return fmt.Errorf("wipe %s step %q: %w", rec.ID, st.Name, err)
		}
		if err != nil {
			rec.Error = fmt.Sprintf("step %q: %v", st.Name, err)
			if serr := w.save(ctx, &rec, cache.WipeFailed, w.finalEntry(rec, subj, "wipe.failed", cache.WipeFailed)); serr != nil {
				return serr
			}
			w.log.ErrorContext(ctx, "wipe failed", "wipe", rec.ID, "subject", subj, "step", st.Name, "err", err)
			return w.o.Store.AckWipe(ctx, c)
		}
	}
	if held {
		rec.Error = ""
		if err := w.save(ctx, &rec, cache.WipeSuspended); err != nil {
			return err
		}
		w.log.InfoContext(ctx, "issue steps held by config.suspend_wipe_issue", "wipe", rec.ID, "subject", subj)
		return nil
	}
	rec.Error = ""
	if err := w.save(ctx, &rec, cache.WipeDone, w.finalEntry(rec, subj, "wipe.done", cache.WipeDone)); err != nil {
		return err
	}
	w.log.InfoContext(ctx, "wipe done", "wipe", rec.ID, "subject", subj)
	return w.o.Store.AckWipe(ctx, c)
}

func anyStepDone(rec cache.WipeRecord) bool {
	for _, st := range rec.Steps {
		if st.Status == StepDone {
			return true
		}
	}
	return false
}

// isIssue reports whether step i of a wipe is held by suspend_wipe_issue. The
// record does not keep the flag, so it is looked up in the plan by name.
func (w *Worker) isIssue(entity string, i int, st *cache.WipeStep) bool {
	if st.Issue {
		return true
	}
	steps := w.o.Plan[entity]
	if i < len(steps) && steps[i].Name == st.Name {
		return steps[i].Issue
	}
	for _, s := range steps {
		if s.Name == st.Name {
			return s.Issue
		}
	}
	return false
}

// save stores the wipe's progress, with entries (its audit) in the same
// write: a saved step or outcome is never left unaudited, and an outcome
// whose save fails is neither stored nor audited (the claim is handed out
// again and the idempotent step repeated).
func (w *Worker) save(ctx context.Context, rec *cache.WipeRecord, status string, entries ...audit.Entry) error {
	if status != "" {
		rec.Status = status
	}
	rec.UpdatedAt = w.o.Clock()
	if err := w.o.Store.SaveWipe(ctx, *rec, entries...); err != nil {
		return fmt.Errorf("save wipe %s: %w", rec.ID, err)
	}
	return nil
}

// errPermanent marks a backend answer that retrying will not change.
var errPermanent = errors.New("permanent failure")

// runStep calls the backend until the step is done, a permanent error, or
// MaxAttempts transient failures. final reports that err is permanent.
// Progress is saved after every attempt; the last attempt's save carries the
// step's audit entry.
func (w *Worker) runStep(ctx context.Context, rec *cache.WipeRecord, st *cache.WipeStep, subj string) (final bool, err error) {
	delay := w.o.Backoff
	for attempt := 0; attempt < w.o.MaxAttempts; attempt++ {
		if attempt > 0 {
			if !sleep(ctx, delay) {
				return false, ctx.Err()
			}
			delay = min(delay*2, 30*time.Second)
		}
		st.Attempts++
		err = w.call(ctx, st)
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if err == nil {
			st.Status, st.LastError, st.DoneAt = StepDone, "", w.o.Clock().UTC()
		} else {
			st.LastError = err.Error()
			if errors.Is(err, errPermanent) {
				st.Status = StepFailed
			}
		}
		var entries []audit.Entry
		if err == nil || errors.Is(err, errPermanent) || attempt == w.o.MaxAttempts-1 {
			entries = append(entries, w.stepEntry(*rec, *st, subj))
		}
		if serr := w.save(ctx, rec, "", entries...); serr != nil {
			return false, serr
		}
		if err == nil {
			return false, nil
		}
		if errors.Is(err, errPermanent) {
			return true, err
		}
	}
	return false, err
}

// call makes one backend call: 2xx and 404 (already gone) succeed, 5xx, 429,
// 408 and network errors are transient, other answers permanent.
func (w *Worker) call(ctx context.Context, st *cache.WipeStep) error {
	var body io.Reader
	if st.Body != "" {
		body = strings.NewReader(st.Body)
	}
	req, err := http.NewRequestWithContext(ctx, st.Method, w.o.Backend+st.Path, body)
	if err != nil {
		return fmt.Errorf("%w: build request: %v", errPermanent, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := w.o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("call backend: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300, resp.StatusCode == http.StatusNotFound:
		return nil
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout:
		return fmt.Errorf("backend answered %d", resp.StatusCode)
	default:
		return fmt.Errorf("%w: backend answered %d", errPermanent, resp.StatusCode)
	}
}

func (w *Worker) stepEntry(rec cache.WipeRecord, st cache.WipeStep, subj string) audit.Entry {
	e := audit.Entry{
		Time: w.o.Clock().UTC(), Actor: "system:" + w.o.Consumer, Action: "wipe.step",
		Object: "wipes/" + rec.ID, Subject: subj,
		Detail: map[string]string{"step": st.Name, "status": st.Status, "attempts": fmt.Sprint(st.Attempts)},
	}
	if st.LastError != "" {
		e.Detail["error"] = st.LastError
	}
	return e
}

func (w *Worker) finalEntry(rec cache.WipeRecord, subj, action, status string) audit.Entry {
	return audit.Entry{
		Time: w.o.Clock().UTC(), Actor: "system:" + w.o.Consumer, Action: action,
		Object: "wipes/" + rec.ID, Subject: subj,
		Detail: map[string]string{"status": status},
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
