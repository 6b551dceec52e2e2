package redisstore

import (
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/policy/model"
)

// Local-cache misses of concurrent decisions share round trips: a miss
// that finds no read in flight reads at once; misses that arrive while one
// is go together in the next read. There is no timer: an idle sidecar pays
// no delay, a busy one pays one round trip (two syscalls, one pipeline)
// for many misses instead of one each. Bounded: maxMissReads reads in
// flight, maxMissBatch subjects a read. One slot batches more than two: in
// gdprgate serve at ~4k Checks/s (99% misses, c=16, one Redis) misses
// rarely overlap a read on loopback, so with two slots most read alone
// (server CPU per Check, miss/cached, two interleaved rounds: one slot
// 1.69 and 1.78, two slots 1.87 and 2.23, before batching 2.39 and 1.73).
// A decision waits no longer than its own deadline and then fails closed,
// whatever becomes of the read (its facts are cached when it ends); the
// decision reading a batch on its own goroutine is one whose deadline
// lies beyond the read's bound (canLead). On a
// single-server store a batch is read through the batcher's own
// connection (rawread.go), not go-redis.
const (
	maxMissReads = 1
	maxMissBatch = 128
)

type missBatcher struct {
	mu      sync.Mutex
	pending []*missReq
	reads   int // reads in flight
}

type missReq struct {
	ref model.SubjectRef
	now time.Time
	// until is the decision's deadline (zero: none).
	until time.Time
	// wake (capacity 1) says the answer is in, or, with lead set, that
	// this request's decision now holds the read slot and reads itself.
	wake chan struct{}
	// lead and gone are guarded by missBatcher.mu. lead is set before the
	// wake is sent; gone: the decision gave up at its deadline and is
	// never handed the slot.
	lead, gone bool
	f          cache.Facts
	err        error
}

// take removes up to maxMissBatch pending misses (b.mu held).
func (b *missBatcher) take() []*missReq {
	n := min(len(b.pending), maxMissBatch)
	batch := make([]*missReq, n)
	copy(batch, b.pending)
	rest := copy(b.pending, b.pending[n:])
	clear(b.pending[rest:])
	b.pending = b.pending[:rest]
	return batch
}

// canLead says whether a decision with deadline until may read a batch on
// its own goroutine at now: it then waits for the read, which is bounded
// by the store's timeout, not by its deadline, so the deadline must lie
// beyond that bound (a shorter one: a goroutine of its own reads, and the
// decision leaves at its deadline as the others do).
func (s *Store) canLead(until, now time.Time) bool {
	return until.IsZero() || !until.Before(now.Add(s.opts.Timeout+maxMissBatch*missAllowance))
}

// missAllowance is the time a read's bound grows by per subject.
const missAllowance = 20 * time.Microsecond

// factsMiss reads ref's facts for a decision, sharing the round trip with
// the misses of concurrent decisions.
//
// The decision that finds the slot free reads the batch on its own
// goroutine, and when its answer is in hands the slot to a decision
// waiting in the next batch (waking it, as its answer would have): no
// goroutine is started and no decision is woken twice per read (gdprgate
// serve, 10M subjects, c=16: see README "Capacity and sizing"). A decision
// whose deadline comes before the read's bound is never handed the slot
// (canLead): a goroutine of its own reads instead.
func (s *Store) factsMiss(ctx context.Context, ref model.SubjectRef, now time.Time) (cache.Facts, error) {
	r := &missReq{ref: ref, now: now, wake: make(chan struct{}, 1)}
	r.until, _ = ctx.Deadline()
	b := &s.misses
	b.mu.Lock()
	b.pending = append(b.pending, r)
	read := b.reads < maxMissReads
	if read {
		b.reads++
	}
	b.mu.Unlock()
	if read {
		if s.canLead(r.until, time.Now()) {
			s.readMisses(ctx, r)
			return r.f, r.err
		}
		// Not on this goroutine: the caller must be free to give up at its
		// own deadline, and the read answers the others too.
		go s.readMisses(ctx, nil)
	}
	select {
	case <-r.wake:
		if r.lead {
			s.readMisses(ctx, r)
		}
		return r.f, r.err
	case <-ctx.Done():
		b.mu.Lock()
		r.gone = true
		lead := r.lead
		b.mu.Unlock()
		if lead {
			// Handed the slot as it gave up: someone must still read.
			go s.readMisses(ctx, nil)
		}
		return cache.Facts{}, s.fail("facts", ctx.Err())
	}
}

// readMisses holds the read slot: it reads one batch of misses — me's
// among them when me is not nil (me's decision reads on its own goroutine)
// — then hands the slot to a decision waiting in the next batch, or to a
// goroutine of its own when none may take it, or frees it when nothing
// waits. A read is bounded by the decisions' timeout (loadFactsFromStore
// sets it), not by one caller's context: it answers the others too.
func (s *Store) readMisses(ctx context.Context, me *missReq) {
	ctx = context.WithoutCancel(ctx)
	b := &s.misses
	// Let the goroutines already runnable (decisions decoded in the same
	// burst, about to miss too) queue their misses before the batch is
	// taken; no wait when there are none. gdprgate serve, 1M subjects, c=16:
	// 7.0–8.1 misses per read instead of 5.5, one write system call each.
	runtime.Gosched()
	b.mu.Lock()
	// me waits among the first maxMissBatch (the slot was free when it
	// queued, or it was handed the slot from there, and nobody takes
	// from the queue but the slot's holder): it is in this batch.
	batch := b.take()
	b.mu.Unlock()
	s.readBatch(ctx, batch, me)

	b.mu.Lock()
	if len(b.pending) == 0 {
		b.reads--
		b.mu.Unlock()
		return
	}
	now := time.Now()
	for _, r := range b.pending[:min(len(b.pending), maxMissBatch)] {
		if !r.gone && s.canLead(r.until, now) {
			r.lead = true
			b.mu.Unlock()
			wake(r)
			return
		}
	}
	b.mu.Unlock()
	go s.readMisses(ctx, nil)
}

// readBatch reads batch and answers each of its misses (me's answer is
// left in me: its goroutine is the one reading).
func (s *Store) readBatch(ctx context.Context, batch []*missReq, me *missReq) {
	refs := make([]model.SubjectRef, len(batch))
	nows := make([]time.Time, len(batch))
	miss := make([]int, len(batch))
	for i, r := range batch {
		refs[i], nows[i], miss[i] = r.ref, r.now, i
	}
	out := make([]cache.Facts, len(batch))
	// loadFacts bounds the read itself (the decisions' timeout, a little
	// more for a large batch); a second deadline here cost a timer and a
	// child context registered with this one for every read.
	err := s.loadFacts(ctx, refs, miss, out, nows, s.raw)
	for i, r := range batch {
		r.f, r.err = out[i], err
		if r != me {
			wake(r)
		}
	}
}

// wake signals r's decision. It never blocks: the one signal a request
// can find already waiting is the slot handed to it just as it gave up,
// and then nobody listens any more.
func wake(r *missReq) {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}
