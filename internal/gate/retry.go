package gate

import (
	"context"
	"sync"
	"time"
)

// retryQueue keeps the store writes that must not be lost because the
// backend has already acted on them (a rectification's audit entry, the
// evidence a communication created): an item whose inline write failed is
// retried oldest first with backoff for retryFor, tried once more at close,
// and handed to lost when given up on — the caller logs it at error level
// so the line itself is the record to replay. The queue is bounded; an item
// that finds it full is lost at once rather than growing memory without
// limit while the store is down.
type retryQueue[T any] struct {
	retryFor time.Duration
	max      int
	// store stores an item; it must be idempotent (a retry may race the
	// answer of an attempt that did succeed).
	store func(ctx context.Context, item T) error
	// written reports an item stored after a retry.
	written func(item T)
	// lost reports an item given up on, with why.
	lost func(item T, why string)
	// pending, when set, is told the queue's length after each change.
	pending func(n int)

	mu      sync.Mutex
	queue   []queued[T]
	running bool
	closed  bool
	stop    chan struct{}
	done    chan struct{}
}

type queued[T any] struct {
	item  T
	since time.Time
}

func newRetryQueue[T any](retryFor time.Duration, max int, store func(context.Context, T) error, written func(T), lost func(T, string)) *retryQueue[T] {
	if retryFor <= 0 {
		retryFor = defaultRectifyRetryFor
	}
	return &retryQueue[T]{retryFor: retryFor, max: max, store: store, written: written, lost: lost, stop: make(chan struct{})}
}

// add queues an item whose inline write failed.
func (q *retryQueue[T]) add(item T) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || len(q.queue) >= q.max {
		q.lost(item, "no room to retry")
		return
	}
	q.queue = append(q.queue, queued[T]{item, time.Now()})
	q.setPending()
	if !q.running {
		q.running = true
		q.done = make(chan struct{})
		go q.run()
	}
}

func (q *retryQueue[T]) setPending() {
	if q.pending != nil {
		q.pending(len(q.queue))
	}
}

// run retries the queue oldest first until it is empty or close stops it.
func (q *retryQueue[T]) run() {
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
		err := q.store(context.Background(), p.item)
		q.mu.Lock()
		switch {
		case err == nil:
			q.queue = q.queue[1:]
			q.written(p.item)
			backoff = 100 * time.Millisecond
		case time.Since(p.since) >= q.retryFor:
			q.queue = q.queue[1:]
			q.lost(p.item, err.Error())
		}
		q.setPending()
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

// close stops the retries, tries every waiting item once more within ctx,
// and reports those still not stored as lost.
func (q *retryQueue[T]) close(ctx context.Context) {
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
		if err := q.store(ctx, p.item); err != nil {
			q.lost(p.item, "gdprgate is stopping: "+err.Error())
			continue
		}
		q.written(p.item)
	}
	q.queue = nil
	q.setPending()
}
