package gate_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/gate"
	"github.com/gdprgate/gdprgate/policy/model"
)

// countingStore counts the subject reads of the response stage.
type countingStore struct {
	cache.Store
	facts, many, manyRefs atomic.Int64
	failMany, cached      atomic.Bool
}

// Cached is what the gate asks before reading a list ahead.
func (s *countingStore) Cached(model.SubjectRef, time.Time) bool { return s.cached.Load() }

func (s *countingStore) Facts(ctx context.Context, ref model.SubjectRef, now time.Time) (cache.Facts, error) {
	s.facts.Add(1)
	return s.Store.Facts(ctx, ref, now)
}

func (s *countingStore) FactsMany(ctx context.Context, refs []model.SubjectRef, now time.Time) ([]cache.Facts, error) {
	s.many.Add(1)
	s.manyRefs.Add(int64(len(refs)))
	if s.failMany.Load() {
		return nil, cache.ErrUnavailable
	}
	return s.Store.FactsMany(ctx, refs, now)
}

// With BatchLookups (a Redis store), a list answer whose first subject is
// not in the local cache has its distinct subjects read in one FactsMany
// call instead of one Facts each, and the answer is exactly the one the
// item-by-item reading gives; a FactsMany that fails leaves them to be
// read one by one, and a list whose first subject is cached is read as it
// comes (no extra pass over the answer).
func TestListSubjectsAreReadTogether(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	g := sc.App.Gate
	var items []string
	for i := range 12 {
		// c-1 … c-6 twice each, and subjects never stored.
		items = append(items, fmt.Sprintf(`{"id":"c-%d","name":"n%d","email":"e%d@x","phone":"+44%d","health_notes":"h%d"}`, i%6+1, i, i, i, i))
	}
	items = append(items, `{"id":"x-unknown","email":"u@x"}`)
	body := `{"data":[` + strings.Join(items, ",") + `],"page":1,"total":13}`
	s := &countingStore{Store: sc.App.Store}
	gate.SetStore(g, s)
	read := func(t *testing.T, batch, cached, failMany bool) string {
		t.Helper()
		gate.SetBatch(g, batch)
		s.cached.Store(cached)
		s.failMany.Store(failMany)
		s.many.Store(0)
		s.manyRefs.Store(0)
		return agentReadsList(t, g, body, func() { s.facts.Store(0) })
	}
	want := read(t, false, false, false)
	if s.facts.Load() != 7 || s.many.Load() != 0 {
		t.Fatalf("item by item: %d Facts, %d FactsMany; want 7 and 0", s.facts.Load(), s.many.Load())
	}
	if got := read(t, true, false, false); got != want {
		t.Fatalf("batched answer differs:\n got %s\nwant %s", got, want)
	}
	if s.facts.Load() != 0 || s.many.Load() != 1 || s.manyRefs.Load() != 7 {
		t.Fatalf("batched: %d Facts, %d FactsMany of %d subjects; want 0, 1 of 7", s.facts.Load(), s.many.Load(), s.manyRefs.Load())
	}
	if got := read(t, true, false, true); got != want {
		t.Fatalf("answer after a failed FactsMany differs:\n got %s\nwant %s", got, want)
	}
	if s.facts.Load() != 7 {
		t.Fatalf("after a failed FactsMany: %d Facts, want 7", s.facts.Load())
	}
	if got := read(t, true, true, false); got != want {
		t.Fatalf("answer of a cached list differs:\n got %s\nwant %s", got, want)
	}
	if s.facts.Load() != 7 || s.many.Load() != 0 {
		t.Fatalf("cached list: %d Facts, %d FactsMany; want 7 and 0", s.facts.Load(), s.many.Load())
	}
}

// cachedCounting is a store answering from its local cache alone
// (CachedFactsTo), as memstore and redisstore do, counting those reads;
// with off set it says nothing is cached (every item goes through Facts).
type cachedCounting struct {
	*countingStore
	off         atomic.Bool
	cachedReads atomic.Int64
	mu          sync.Mutex
	behind      []string // ids read with Facts
}

func (s *cachedCounting) Facts(ctx context.Context, ref model.SubjectRef, now time.Time) (cache.Facts, error) {
	s.mu.Lock()
	s.behind = append(s.behind, ref.ID)
	s.mu.Unlock()
	return s.countingStore.Facts(ctx, ref, now)
}

func (s *cachedCounting) CachedFactsTo(ref model.SubjectRef, now time.Time, dst *cache.Facts) bool {
	if s.off.Load() {
		return false
	}
	s.cachedReads.Add(1)
	return s.Store.(interface {
		CachedFactsTo(model.SubjectRef, time.Time, *cache.Facts) bool
	}).CachedFactsTo(ref, now, dst)
}

// A list whose subjects the local cache serves is decided item by item
// from it, without the answer's own memory of decisions: repeats (one
// with its id escaped, decoded into a buffer the next item's id reuses)
// answer exactly as the memorised reading does, and nothing is read
// from behind the cache once it is warm.
func TestWarmListAnswersAsTheMemorisedReading(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	g := sc.App.Gate
	var items []string
	for i := range 12 {
		id := fmt.Sprintf("c-%d", i%6+1)
		if i%4 == 3 {
			id = `c-\u003` + id[2:] // the same id, escaped
		}
		items = append(items, fmt.Sprintf(`{"id":"%s","name":"n%d","email":"e%d@x","phone":"+44%d","health_notes":"h%d"}`, id, i, i, i, i))
	}
	items = append(items, `{"id":"x-unknown","email":"u@x"}`, `{"id":"c-1","email":"again@x"}`)
	body := `{"data":[` + strings.Join(items, ",") + `],"page":1,"total":14}`
	s := &cachedCounting{countingStore: &countingStore{Store: sc.App.Store}}
	gate.SetStore(g, s)
	read := func(t *testing.T) string {
		t.Helper()
		s.facts.Store(0)
		s.cachedReads.Store(0)
		s.mu.Lock()
		s.behind = nil
		s.mu.Unlock()
		return agentReadsList(t, g, body, nil)
	}
	s.off.Store(true)
	want := read(t)
	if s.facts.Load() != 7 {
		t.Fatalf("memorised reading: %d Facts, want 7 (one per distinct subject)", s.facts.Load())
	}
	s.off.Store(false)
	got := read(t)
	if got != want {
		t.Fatalf("warm answer differs:\n got %s\nwant %s", got, want)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// x-unknown, never stored, may not be cached (whether its facts are
	// depends on when they were computed): then read once, remembered.
	if s.cachedReads.Load() != 14 || len(s.behind) > 1 || len(s.behind) == 1 && s.behind[0] != "x-unknown" {
		t.Fatalf("warm: %d cached reads, Facts for %q; want 14 and at most [x-unknown]", s.cachedReads.Load(), s.behind)
	}
}

// agentReadsList has an agent GET /api/contacts and the backend answer with
// body (a list the route redacts); betweenCheckAndRewrite runs between the
// two phases. It returns the body the agent gets.
func agentReadsList(t *testing.T, g *gate.Gate, body string, betweenCheckAndRewrite func()) string {
	t.Helper()
	ex := g.Check(context.Background(), &gate.Request{Method: "GET", Path: "/api/contacts", Header: func(n string) string {
		if n == "x-gdpr-roles" {
			return "agent"
		}
		return ""
	}})
	if !ex.Verdict.Allow {
		t.Fatalf("list denied: %d %s", ex.Verdict.Status, ex.Verdict.Body)
	}
	if betweenCheckAndRewrite != nil {
		betweenCheckAndRewrite()
	}
	rw := g.Rewrite(context.Background(), ex, &gate.Response{Status: 200, Body: []byte(body), Header: contentType("application/json")})
	if rw.Replace || !rw.Modified {
		t.Fatalf("premise: the list is redacted, not replaced: %+v", rw)
	}
	return string(rw.Body)
}
