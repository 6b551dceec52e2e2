package forget

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
)

// LeaseName is the store lease the active sweeper holds.
const LeaseName = "sweeper"

// SweeperOptions configure a Sweeper. Executor is required.
type SweeperOptions struct {
	Executor *Executor
	// Holder names this sweeper in the lease (default host-pid-random).
	Holder string
	// Interval is the pause between passes when nothing is due (default 1s).
	Interval time.Duration
	// LeaseTTL is how long the lease outlives a silent holder (default 15s).
	LeaseTTL time.Duration
	// Batch bounds the subjects per store round trip (default 10000).
	Batch int
	// MaxBatches bounds one pass (default 100): a long backlog is worked
	// off in passes, renewing the lease in between.
	MaxBatches int
	// Workers split a batch so that reading, deciding and committing
	// overlap (default 4).
	Workers int
	Logger  *slog.Logger
}

// Sweeper applies due lifecycle transitions: one sweeper is active at a
// time across every sidecar (the store lease "sweeper"; another takes it
// over when its holder dies). Each pass it
//
//   - renews the lease (or tries to take it);
//   - does nothing while gdpr_enforced is false (the manual: "the
//     corresponding processes of archiving, expiration and forgetting … are
//     not running");
//   - continues the re-indexing a register change started (every subject,
//     in bounded batches, progress saved);
//   - takes the subjects whose next transition is due, in batches: computes
//     their state now, creates the deletion work obliviation asks for,
//     purges evidence past its retention, and moves each subject to its
//     next transition — only if no write came in between (then it is
//     processed again), so no transition is lost or applied twice.
//
// Sidecars never serve a cached state past its next transition, so the
// refreshed state reaches every sidecar on time without a message per
// subject; the writes the sweeper makes (restrictions, purges) publish
// their invalidations like any write.
type Sweeper struct {
	o   SweeperOptions
	e   *Executor
	st  cache.Store
	log *slog.Logger
}

// NewSweeper checks o and fills its defaults.
func NewSweeper(o SweeperOptions) (*Sweeper, error) {
	if o.Executor == nil {
		return nil, errors.New("forget: SweeperOptions.Executor is required")
	}
	if o.Holder == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		o.Holder = host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 15 * time.Second
	}
	if o.Batch <= 0 {
		o.Batch = 10000
	}
	if o.MaxBatches <= 0 {
		o.MaxBatches = 100
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Logger == nil {
		o.Logger = o.Executor.o.Logger
	}
	return &Sweeper{o: o, e: o.Executor, st: o.Executor.o.Store, log: o.Logger.With("component", "sweeper", "holder", o.Holder)}, nil
}

// Holder is the name this sweeper holds the lease under.
func (s *Sweeper) Holder() string { return s.o.Holder }

// Run sweeps until ctx is done, then gives the lease up.
func (s *Sweeper) Run(ctx context.Context) error {
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.st.ReleaseLease(rctx, LeaseName, s.o.Holder)
		s.e.m.leader.Set(0)
	}()
	for {
		res, err := s.Pass(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			s.log.WarnContext(ctx, "sweep pass failed", "err", err)
		}
		if res.More && err == nil {
			continue // a backlog: go on at once
		}
		t := time.NewTimer(s.o.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// PassResult says what one pass did.
type PassResult struct {
	Leader bool
	// Processed subjects; Committed of them moved to their next
	// transition, Retried stay due (a write came in between, or their
	// deletion work could not be created).
	Processed, Committed, Retried int
	// Recomputed subjects of a register change's re-indexing.
	Recomputed int
	// More: the pass stopped at its bound with work left.
	More bool
}

// Pass is one sweep: see Sweeper. It is safe to call from tests with a
// fake clock (the executor's).
func (s *Sweeper) Pass(ctx context.Context) (PassResult, error) {
	var res PassResult
	held, err := s.st.AcquireLease(ctx, LeaseName, s.o.Holder, s.o.LeaseTTL)
	if err != nil {
		return res, fmt.Errorf("lease: %w", err)
	}
	if !held {
		s.e.m.leader.Set(0)
		return res, nil
	}
	res.Leader = true
	s.e.m.leader.Set(1)
	ix, err := s.st.Registers(ctx)
	if err != nil {
		return res, fmt.Errorf("registers: %w", err)
	}
	if !ix.Registers.Config.GdprEnforced {
		return res, nil
	}
	batches := 0
	renew := func() (bool, error) {
		batches++
		if batches >= s.o.MaxBatches {
			res.More = true
			return false, nil
		}
		ok, err := s.st.AcquireLease(ctx, LeaseName, s.o.Holder, s.o.LeaseTTL)
		if err != nil || !ok {
			s.e.m.leader.Set(0)
			return false, err
		}
		return true, nil
	}

	// A register change: recompute every subject under the new registers.
	p, err := s.st.Recompute(ctx)
	if err != nil {
		return res, fmt.Errorf("recompute progress: %w", err)
	}
	// The next page is read while this one is decided and committed
	// (reading and writing overlap): the pages hold other subjects, and a
	// subject a page read again after its commit fails its own commit's
	// compare — nothing is applied twice.
	type page struct {
		ds   []cache.Due
		next string
		err  error
	}
	scan := func(cursor string) <-chan page {
		ch := make(chan page, 1)
		go func() {
			ds, next, err := s.st.ScanDue(ctx, cursor, s.o.Batch)
			ch <- page{ds, next, err}
		}()
		return ch
	}
	var ahead <-chan page
	if p.Version == ix.Version && !p.Done {
		ahead = scan(p.Cursor)
	}
	defer func() {
		if ahead != nil {
			<-ahead // no read outlives the pass
		}
	}()
	for p.Version == ix.Version && !p.Done {
		pg := <-ahead
		ahead = nil
		if pg.err != nil {
			return res, fmt.Errorf("recompute: %w", pg.err)
		}
		ds, next := pg.ds, pg.next
		if next != "" && batches+1 < s.o.MaxBatches {
			ahead = scan(next)
		}
		if err := s.process(ctx, ix, ds, &res); err != nil {
			return res, err
		}
		res.Recomputed += len(ds)
		p.Cursor, p.Scanned = next, p.Scanned+int64(len(ds))
		if next == "" {
			p.Done, p.Finished = true, s.e.o.Clock().UTC()
		}
		if err := s.st.SaveRecompute(ctx, p); err != nil {
			if errors.Is(err, cache.ErrConflict) {
				break // a newer change restarted it; the next pass picks it up
			}
			return res, fmt.Errorf("recompute progress: %w", err)
		}
		s.e.m.recompute.WithLabelValues("version").Set(float64(p.Version))
		s.e.m.recompute.WithLabelValues("scanned").Set(float64(p.Scanned))
		s.e.m.recompute.WithLabelValues("done").Set(b2f(p.Done))
		if p.Done {
			s.log.InfoContext(ctx, "re-indexing after a register change done", "version", p.Version, "subjects", p.Scanned)
			break
		}
		if ok, err := renew(); !ok {
			return res, err
		}
	}

	// Due transitions, earliest first.
	var stop bool
	if sh, ok := s.st.(cache.DueSharder); ok {
		stop, err = s.sweepShards(ctx, sh, ix, &res, renew)
	} else {
		stop, err = s.sweepDue(ctx, ix, &res, renew)
	}
	if stop || err != nil {
		return res, err
	}
	if total, due, err := s.st.DueCount(ctx, s.e.o.Clock()); err == nil {
		s.e.m.indexed.Set(float64(total))
		s.e.m.due.Set(float64(due))
	}
	return res, nil
}

// sweepDue is the due loop over a store with one due index. It reports
// whether the pass must stop (its bound reached, or the lease lost).
func (s *Sweeper) sweepDue(ctx context.Context, ix *model.Index, res *PassResult, renew func() (bool, error)) (bool, error) {
	for {
		ds, err := s.st.Due(ctx, s.e.o.Clock(), s.o.Batch)
		if err != nil {
			return true, fmt.Errorf("due: %w", err)
		}
		if len(ds) == 0 {
			return false, nil
		}
		if err := s.process(ctx, ix, ds, res); err != nil {
			return true, err
		}
		if len(ds) < s.o.Batch {
			return false, nil
		}
		if ok, err := renew(); !ok {
			return true, err
		}
	}
}

// dueShards is how many shards of a sharded due index the sweeper
// alternates between: one is read while the other is decided and committed.
const dueShards = 2

// sweepShards is the due loop over a store whose due index splits in
// shards: while the subjects read from one shard are decided and
// committed, the other shard is read (its own last commit is done, and
// the shards hold different subjects, so no read sees a commit in flight).
// A shard whose read comes back short is finished for this pass. It
// reports whether the pass must stop (its bound reached, or the lease lost).
func (s *Sweeper) sweepShards(ctx context.Context, sh cache.DueSharder, ix *model.Index, res *PassResult, renew func() (bool, error)) (bool, error) {
	type page struct {
		ds  []cache.Due
		err error
	}
	var ahead [dueShards]<-chan page
	read := func(shard int) {
		ch := make(chan page, 1)
		now := s.e.o.Clock()
		go func() {
			ds, err := sh.DueShard(ctx, now, s.o.Batch, shard, dueShards)
			ch <- page{ds, err}
		}()
		ahead[shard] = ch
	}
	defer func() {
		for _, ch := range ahead {
			if ch != nil {
				<-ch // no read outlives the pass
			}
		}
	}()
	var done [dueShards]bool
	cur := 0
	read(cur)
	for {
		pg := <-ahead[cur]
		ahead[cur] = nil
		if pg.err != nil {
			return true, fmt.Errorf("due: %w", pg.err)
		}
		if len(pg.ds) < s.o.Batch {
			done[cur] = true
		}
		next := cur
		for k := 1; k <= dueShards; k++ {
			if o := (cur + k) % dueShards; !done[o] {
				next = o
				break
			}
		}
		if !done[next] && ahead[next] == nil && next != cur {
			read(next)
		}
		if err := s.process(ctx, ix, pg.ds, res); err != nil {
			return true, err
		}
		if done[next] {
			return false, nil // every shard finished
		}
		if ok, err := renew(); !ok {
			return true, err
		}
		if next == cur {
			read(cur) // the others are finished: read this one again
		}
		cur = next
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// process applies the transitions of one batch: the workers read what
// the due index did not give and decide (the subjects are distinct, so
// their work is independent), then one commit writes the whole batch —
// one script per shard of the store for all of its subjects, rather than
// one per worker and shard.
func (s *Sweeper) process(ctx context.Context, ix *model.Index, ds []cache.Due, res *PassResult) error {
	if len(ds) == 0 {
		return nil
	}
	n := min(s.o.Workers, (len(ds)+99)/100)
	var updates []cache.SweepUpdate
	var purges []sweepPurge
	if n <= 1 {
		var err error
		if updates, purges, err = s.decide(ctx, ix, ds, res); err != nil {
			return err
		}
	} else {
		size := (len(ds) + n - 1) / n
		var wg sync.WaitGroup
		var mu sync.Mutex
		var first error
		for start := 0; start < len(ds); start += size {
			part := ds[start:min(start+size, len(ds))]
			wg.Add(1)
			go func() {
				defer wg.Done()
				var r PassResult
				us, ps, err := s.decide(ctx, ix, part, &r)
				mu.Lock()
				defer mu.Unlock()
				res.Retried += r.Retried
				updates = append(updates, us...)
				purges = append(purges, ps...)
				if err != nil && first == nil {
					first = err
				}
			}()
		}
		wg.Wait()
		if first != nil {
			return first
		}
	}
	ok, err := s.st.CommitSweep(ctx, updates)
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	for _, c := range ok {
		res.Processed++
		if c {
			res.Committed++
			s.e.m.subjects.WithLabelValues("committed").Inc()
		} else {
			res.Retried++
			s.e.m.subjects.WithLabelValues("retried").Inc()
		}
	}
	for _, p := range purges {
		if err := s.e.Purge(ctx, ix, p.ref, p.evs); err != nil {
			s.log.WarnContext(ctx, "evidence past its retention not purged; retried", "subject", s.e.o.Hasher.Subject(p.ref), "err", err)
		}
	}
	return nil
}

// sweepPurge is evidence of a subject past its retention, purged after
// the commit.
type sweepPurge struct {
	ref model.SubjectRef
	evs []model.Evidence
}

// decide computes the transitions of some subjects of a batch, creating
// the deletion work they ask for.
func (s *Sweeper) decide(ctx context.Context, ix *model.Index, ds []cache.Due, res *PassResult) ([]cache.SweepUpdate, []sweepPurge, error) {
	refs := make([]model.SubjectRef, len(ds))
	for i, d := range ds {
		refs[i] = d.Ref
	}
	snaps, err := snapshots(ctx, s.st, ds)
	if err != nil {
		return nil, nil, err
	}
	now := s.e.o.Clock()
	updates := make([]cache.SweepUpdate, 0, len(ds))
	var purges []sweepPurge
	for i := range snaps {
		snap := &snaps[i]
		st := cache.ComputeFacts(ix, snap.Record, snap.Origin, snap.Inherited, now).State
		next := st.Next
		if snap.Record.Restriction != "" {
			// Wiped: its transitions ask for nothing more (lifting the
			// restriction marks it due again).
			next = time.Time{}
		}
		w := s.e.Decide(ix, snap, &st)
		if w.Any() {
			if err := s.e.Create(ctx, ix, refs[i], w); err != nil {
				// Left due: retried at the next pass.
				s.log.WarnContext(ctx, "lifecycle deletion not created; retried", "subject", s.e.o.Hasher.Subject(refs[i]), "err", err)
				s.e.m.subjects.WithLabelValues("failed").Inc()
				res.Retried++
				continue
			}
		}
		// Evidence is kept until the data's obliviation plus the purpose's
		// evidence_period_offset, then purged (after the commit below).
		var expired []model.Evidence
		for _, ev := range snap.Record.Evidence {
			end, ok := lifecycle.Retention(ix, &ev)
			if !ok {
				continue
			}
			if !now.Before(end) {
				expired = append(expired, ev)
				end = now // stays due until purged
			}
			if next.IsZero() || end.Before(next) {
				next = end
			}
		}
		if len(expired) > 0 {
			purges = append(purges, sweepPurge{refs[i], expired})
		}
		updates = append(updates, cache.SweepUpdate{Ref: refs[i], Expect: ds[i].Score, Next: cache.DueScore(next),
			Applied: w.Applied, AppliedChanged: w.Applied != snap.Applied, Token: ds[i].Token})
	}
	return updates, purges, nil
}

// snapshots are the subjects of ds as read with the due index, or read
// now for those the store did not give (cache.Due.Snapshot).
func snapshots(ctx context.Context, st cache.Store, ds []cache.Due) ([]cache.Snapshot, error) {
	out := make([]cache.Snapshot, len(ds))
	var missing []int
	for i, d := range ds {
		if d.Snapshot != nil {
			out[i] = *d.Snapshot
		} else {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	refs := make([]model.SubjectRef, len(missing))
	for k, i := range missing {
		refs[k] = ds[i].Ref
	}
	read, err := st.Snapshots(ctx, refs)
	if err != nil {
		return nil, fmt.Errorf("snapshots: %w", err)
	}
	for k, i := range missing {
		out[i] = read[k]
	}
	return out, nil
}

// Purge removes evidence records past their retention, each with an audit
// entry "evidence.purge", after creating the deletion work for the proof
// communications they name (erasure.communications; not executable when
// none is configured).
func (e *Executor) Purge(ctx context.Context, ix *model.Index, ref model.SubjectRef, evs []model.Evidence) error {
	now := e.o.Clock().UTC()
	subj := e.o.Hasher.Subject(ref)
	for _, ev := range evs {
		if len(ev.CommIDs) > 0 {
			if err := e.purgeComms(ctx, ref, ev, now); err != nil {
				return err
			}
		}
		end, _ := lifecycle.Retention(ix, &ev)
		entry := audit.Entry{Time: now, Actor: "lifecycle", Action: "evidence.purge", Object: "evidence/" + ev.ID, Subject: subj,
			Detail: map[string]string{"legalisation": ev.LegalisationID, "retention_end": end.Format(time.RFC3339), "communications": strconv.Itoa(len(ev.CommIDs))}}
		if err := e.o.Store.RevokeEvidence(ctx, ref, ev.ID, entry); err != nil && !errors.Is(err, cache.ErrNotFound) {
			return fmt.Errorf("purge evidence: %w", err)
		}
		e.m.purged.Inc()
	}
	return nil
}

func (e *Executor) purgeComms(ctx context.Context, ref model.SubjectRef, ev model.Evidence, now time.Time) error {
	id := "lc-" + e.hashID(ref) + "-p-" + ev.ID
	rec := cache.WipeRecord{ID: id, Subject: ref, Scope: "evidence retention", Kind: cache.KindPurge, Reason: cache.ReasonRetention,
		RequestedBy: "lifecycle", CreatedAt: now, UpdatedAt: now}
	for _, c := range ev.CommIDs {
		for _, st := range e.o.Plans.Comm {
			ws := st.record(c)
			ws.Name = "communication:" + st.Name
			rec.Steps = append(rec.Steps, ws)
		}
	}
	action := "deletion.create"
	switch {
	case len(e.o.Plans.Comm) == 0:
		rec.Status, rec.Error = cache.WipeNotExecutable, "no erasure.communications step is configured"
		action = "deletion.not_executable"
	case e.o.Auto:
		rec.Status = cache.WipeQueued
		var ge *GuardError
		if err := e.Admit(ctx, 1, false); errors.As(err, &ge) {
			rec.Status, rec.HeldFor = cache.WipeHeld, "mass_deletion_guard"
		} else if err != nil {
			return err
		}
	default:
		rec.Status, rec.HeldFor = cache.WipeHeld, "approval"
	}
	entry := audit.Entry{Time: now, Actor: "lifecycle", Action: action, Object: "wipes/" + id, Subject: e.o.Hasher.Subject(ref),
		Detail: map[string]string{"kind": cache.KindPurge, "status": rec.Status, "communications": strconv.Itoa(len(ev.CommIDs)), "evidence": ev.ID}}
	return e.enqueue(ctx, []cache.WipeRecord{rec}, []audit.Entry{entry})
}
