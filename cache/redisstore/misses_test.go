package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/redisstore"
	"github.com/gdprgate/gdprgate/cache/storetest"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/testredis"
	"github.com/gdprgate/gdprgate/policy/model"
)

// TestConcurrentMissesEachGetTheirOwnFacts: misses of concurrent decisions
// read together still answer each its own subject at its own instant —
// the same facts a store reading every miss on its own computes.
func TestConcurrentMissesEachGetTheirOwnFacts(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	batched := seededStore(t, srv.URL(), generous(cache.Options{MaxSubjects: 1}))
	alone := newStore(t, srv.URL(), generous(cache.Options{MaxSubjects: 1}))
	redisstore.UnbatchMissesForTest(alone)
	var evs []model.Evidence
	for i := range 40 { // c-40 .. c-79 are unknown
		evs = append(evs, model.Evidence{Subject: contact(i), LegalisationID: "contract-care", Origin: storetest.T0.AddDate(0, 0, -30*i)})
	}
	if _, err := batched.PutEvidence(ctx, evs, audit.Entry{Actor: "t", Action: "evidence.import"}); err != nil {
		t.Fatal(err)
	}
	var asks []ask
	for i := range 80 {
		for _, d := range []int{0, 400, 2000} {
			asks = append(asks, ask{contact(i), storetest.T0.AddDate(0, 0, d)})
		}
	}
	got, errs := factsAtOnce(batched, asks, func(int) (context.Context, context.CancelFunc) { return ctx, func() {} })
	sameAsRead(t, "", asks, got, errs, alone, ctx)
}

// ask is one decision's question: a subject's facts at an instant.
type ask struct {
	ref model.SubjectRef
	now time.Time
}

// asksAt asks for the facts of c-0 .. c-(n-1) at now.
func asksAt(n int, now time.Time) []ask {
	asks := make([]ask, n)
	for i := range asks {
		asks[i] = ask{contact(i), now}
	}
	return asks
}

// factsAtOnce asks s every question at once, each on a goroutine of its
// own under the context ctxFor(i) gives it, as concurrent decisions do.
func factsAtOnce(s *redisstore.Store, asks []ask, ctxFor func(i int) (context.Context, context.CancelFunc)) ([]cache.Facts, []error) {
	got := make([]cache.Facts, len(asks))
	errs := make([]error, len(asks))
	var wg sync.WaitGroup
	for i, a := range asks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := ctxFor(i)
			defer cancel()
			got[i], errs[i] = s.Facts(c, a.ref, a.now)
		}()
	}
	wg.Wait()
	return got, errs
}

// sameAsRead fails t for every answer that is an error or differs from
// what ref (read under refCtx, one question at a time) answers, and
// returns ref's answers.
func sameAsRead(t *testing.T, what string, asks []ask, got []cache.Facts, errs []error, ref *redisstore.Store, refCtx context.Context) []cache.Facts {
	t.Helper()
	wants := make([]cache.Facts, len(asks))
	for i, a := range asks {
		if errs[i] != nil {
			t.Fatalf("%sFacts(%v, %v): %v", what, a.ref, a.now, errs[i])
		}
		want, err := ref.Facts(refCtx, a.ref, a.now)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got[i], want) {
			t.Errorf("%sFacts(%v, %v) read with others = %+v, read alone = %+v", what, a.ref, a.now, got[i], want)
		}
		wants[i] = want
	}
	return wants
}

// TestMissFailsClosedAtItsOwnDeadline: a decision whose miss waits on a
// read that does not come back (Redis frozen) fails with ErrUnavailable at
// its own deadline, as do the decisions queued behind it; reads resume
// when Redis does.
func TestMissFailsClosedAtItsOwnDeadline(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	s := seededStore(t, srv.URL(), generous(cache.Options{MaxSubjects: 1}))
	if _, err := s.PutEvidence(ctx, []model.Evidence{{Subject: contact(1), LegalisationID: "contract-care", Origin: storetest.T0}}, audit.Entry{Actor: "t", Action: "evidence.create"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Registers(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	stopped := true
	defer func() {
		if stopped {
			srv.Continue()
		}
	}()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			_, errs[i] = s.Facts(c, contact(i+1), storetest.T0)
		}()
	}
	wg.Wait() // would hang past the deadlines if a miss waited for its read
	for i, err := range errs {
		if !errors.Is(err, cache.ErrUnavailable) {
			t.Errorf("miss %d with Redis frozen: err = %v, want ErrUnavailable", i, err)
		}
	}
	srv.Continue()
	stopped = false
	deadline := time.Now().Add(30 * time.Second)
	for {
		f, err := s.Facts(ctx, contact(1), storetest.T0)
		if err == nil {
			if !f.Known {
				t.Fatalf("c-1 after Redis resumed: %+v, want known", f)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("misses never resumed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAdminReadsWaitWhereDecisionsFailClosed: with Redis frozen, a
// decision's read fails closed within Options.Timeout while the same read
// for the admin API (cache.ForAdmin) waits, up to Options.WriteTimeout,
// and succeeds once Redis answers again.
func TestAdminReadsWaitWhereDecisionsFailClosed(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	s := seededStore(t, srv.URL(), cache.Options{Timeout: 200 * time.Millisecond, WriteTimeout: 2 * time.Minute, MaxSubjects: 1})
	if _, err := s.PutEvidence(ctx, []model.Evidence{{Subject: contact(1), LegalisationID: "contract-care", Origin: storetest.T0}}, audit.Entry{Actor: "t", Action: "evidence.create"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Registers(ctx); err != nil {
		t.Fatal(err)
	}
	s.Local().Invalidate(contact(1))
	srv.Stop()
	stopped := true
	defer func() {
		if stopped {
			srv.Continue()
		}
	}()
	type result struct {
		f   cache.Facts
		err error
	}
	admin := make(chan result, 1)
	go func() {
		f, err := s.Facts(cache.ForAdmin(ctx), contact(1), storetest.T0)
		admin <- result{f, err}
	}()
	if _, err := s.Facts(ctx, contact(1), storetest.T0); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("decision with Redis frozen: err = %v, want ErrUnavailable", err)
	}
	select {
	case r := <-admin:
		t.Fatalf("admin read returned while Redis was frozen: %+v, %v", r.f, r.err)
	default:
	}
	srv.Continue()
	stopped = false
	r := <-admin
	if r.err != nil || !r.f.Known {
		t.Fatalf("admin read after Redis resumed: %+v, %v; want c-1's facts", r.f, r.err)
	}
}

// TestMissesReadByTheirDecisionsAndByGoroutines: decisions whose deadline
// lies beyond the read's bound (or that have none) read their batch on
// their own goroutine and hand the read on; the others are read for by a
// goroutine. Mixed, every decision still gets the facts a store reading
// each miss on its own computes, and the slot is free afterwards.
func TestMissesReadByTheirDecisionsAndByGoroutines(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	opts := cache.Options{Timeout: 5 * time.Second, MaxSubjects: 1}
	batched := seededStore(t, srv.URL(), opts)
	alone := newStore(t, srv.URL(), opts)
	redisstore.UnbatchMissesForTest(alone)
	var evs []model.Evidence
	for i := range 30 {
		evs = append(evs, model.Evidence{Subject: contact(i), LegalisationID: "contract-care", Origin: storetest.T0.AddDate(0, 0, -50*i)})
	}
	if _, err := batched.PutEvidence(ctx, evs, audit.Entry{Actor: "t", Action: "evidence.import"}); err != nil {
		t.Fatal(err)
	}
	now := storetest.T0.AddDate(0, 0, 500)
	asks := asksAt(60, now)
	for round := range 5 {
		got, errs := factsAtOnce(batched, asks, func(i int) (context.Context, context.CancelFunc) {
			switch i % 3 {
			case 1: // beyond the read's bound: may lead
				return context.WithTimeout(ctx, time.Minute)
			case 2: // before it: never leads
				return context.WithTimeout(ctx, 4*time.Second+time.Duration(round)*time.Millisecond)
			}
			return ctx, func() {}
		})
		sameAsRead(t, fmt.Sprintf("round %d: ", round), asks, got, errs, alone, ctx)
	}
}

// TestMissesOfDecisionsThatGaveUpAreStillRead: decisions that give up
// (cancelled) while a read is stuck are never handed the read; the reads
// go on for them (their facts are cached when Redis answers), and later
// misses are not left waiting for a reader that left. Many decisions
// cancelled at random moments: nothing hangs, no answer is wrong.
func TestMissesOfDecisionsThatGaveUpAreStillRead(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	s := seededStore(t, srv.URL(), cache.Options{Timeout: 30 * time.Second, MaxSubjects: 1000})
	var evs []model.Evidence
	for i := range 200 {
		evs = append(evs, model.Evidence{Subject: contact(i), LegalisationID: "contract-care", Origin: storetest.T0})
	}
	if _, err := s.PutEvidence(ctx, evs, audit.Entry{Actor: "t", Action: "evidence.import"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Registers(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		s.Local().Invalidate(contact(i))
	}
	// The first decision leads a read that Redis does not answer yet.
	srv.Stop()
	stopped := true
	defer func() {
		if stopped {
			srv.Continue()
		}
	}()
	first := make(chan error, 1)
	go func() {
		f, err := s.Facts(ctx, contact(0), storetest.T0)
		if err == nil && !f.Known {
			err = errors.New("c-0 unknown")
		}
		first <- err
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var wrong []string
	for i := 1; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithCancel(ctx)
			defer cancel()
			if i%2 == 0 {
				go func() {
					time.Sleep(time.Duration(i%7) * time.Millisecond)
					cancel()
				}()
			}
			f, err := s.Facts(c, contact(i), storetest.T0)
			if err != nil {
				if i%2 != 0 || c.Err() == nil {
					mu.Lock()
					wrong = append(wrong, fmt.Sprintf("c-%d: %v", i, err))
					mu.Unlock()
				}
				return
			}
			if !f.Known {
				mu.Lock()
				wrong = append(wrong, fmt.Sprintf("c-%d: unknown", i))
				mu.Unlock()
			}
		}()
		if i == 100 {
			time.Sleep(20 * time.Millisecond) // some give up while the read is stuck
			srv.Continue()
			stopped = false
		}
	}
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatalf("the first decision: %v", err)
	}
	if len(wrong) > 0 {
		t.Fatalf("%d wrong answers: %v", len(wrong), wrong)
	}
	// Every subject asked for is read in the end, those that gave up too.
	deadline := time.Now().Add(30 * time.Second)
	for i := range 200 {
		for !s.Cached(contact(i), storetest.T0) {
			if time.Now().After(deadline) {
				t.Fatalf("c-%d never read: a miss waits for a reader that left", i)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if f, err := s.Facts(ctx, contact(7), storetest.T0); err != nil || !f.Known {
		t.Fatalf("a miss after them: %+v, %v", f, err)
	}
}
