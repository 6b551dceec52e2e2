package cache_test

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func ref(id string) model.SubjectRef { return model.SubjectRef{Entity: "contact", ID: id} }

func index(t testing.TB, version int64) *model.Index {
	t.Helper()
	ix, err := model.NewIndex(&model.Registers{}, version)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func facts(version int64, next time.Time) cache.Facts {
	return cache.Facts{RegistersVersion: version, Known: true, State: lifecycle.State{Active: 1, Next: next}}
}

// TestLocalServesFromItsInstantUntilJustBeforeNext: facts computed for an
// instant hold from it to Next; a decision dated before that instant (a
// concurrent one that read its clock earlier) is not served them — an
// unknown subject's grace, for one, starts at its first reading.
func TestLocalServesFromItsInstantUntilJustBeforeNext(t *testing.T) {
	l := cache.NewLocal(cache.Options{})
	l.SetIndex(index(t, 1))
	next := t0.Add(time.Hour)
	tests := []struct {
		name string
		now  time.Time
		hit  bool
	}{
		{"at the instant computed for", t0, true},
		{"a nanosecond before the instant computed for", t0.Add(-time.Nanosecond), false},
		{"a year before", t0.AddDate(-1, 0, 0), false},
		{"a nanosecond before next", next.Add(-time.Nanosecond), true},
		{"at next", next, false},
		{"after next", next.Add(time.Second), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l.Put(ref("c-1"), nil, facts(1, next), t0, l.Gen())
			if _, hit := l.Get(ref("c-1"), tc.now); hit != tc.hit {
				t.Fatalf("hit = %v, want %v", hit, tc.hit)
			}
		})
	}
	l.Put(ref("c-2"), nil, facts(1, time.Time{}), t0, l.Gen())
	if _, hit := l.Get(ref("c-2"), t0.AddDate(100, 0, 0)); !hit {
		t.Fatal("an entry without a next transition expired")
	}
}

func TestLocalDropsEntriesOfOtherRegisterVersions(t *testing.T) {
	l := cache.NewLocal(cache.Options{})
	l.SetIndex(index(t, 1))
	l.Put(ref("c-1"), nil, facts(1, time.Time{}), t0, l.Gen())
	l.SetIndex(index(t, 2))
	if _, hit := l.Get(ref("c-1"), t0); hit {
		t.Fatal("entry computed with registers 1 served under registers 2")
	}
	l.Put(ref("c-1"), nil, facts(1, time.Time{}), t0, l.Gen()) // a late reader of version 1
	if _, hit := l.Get(ref("c-1"), t0); hit {
		t.Fatal("late entry of an older register version served")
	}
}

func TestLocalRefusesPutAfterInvalidation(t *testing.T) {
	l := cache.NewLocal(cache.Options{})
	l.SetIndex(index(t, 1))
	gen := l.Gen() // a reader starts
	l.Invalidate(ref("c-1"))
	l.Put(ref("c-1"), nil, facts(1, time.Time{}), t0, gen) // ... and finishes late
	if _, hit := l.Get(ref("c-1"), t0); hit {
		t.Fatal("a read that raced an invalidation was cached")
	}
}

func TestLocalInvalidatesInheritingChildren(t *testing.T) {
	l := cache.NewLocal(cache.Options{})
	l.SetIndex(index(t, 1))
	parent := ref("c-1")
	child := model.SubjectRef{Entity: "phone_number", ID: "+420"}
	l.Put(child, &parent, facts(1, time.Time{}), t0, l.Gen())
	l.Put(ref("c-2"), nil, facts(1, time.Time{}), t0, l.Gen())
	l.Invalidate(parent)
	if _, hit := l.Get(child, t0); hit {
		t.Fatal("child still cached after its parent changed")
	}
	if _, hit := l.Get(ref("c-2"), t0); !hit {
		t.Fatal("an unrelated subject was dropped")
	}
}

func TestLocalEvictsLeastRecentlyUsed(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := cache.NewLocal(cache.Options{MaxSubjects: 2, Registerer: reg})
	l.SetIndex(index(t, 1))
	l.Put(ref("a"), nil, facts(1, time.Time{}), t0, l.Gen())
	l.Put(ref("b"), nil, facts(1, time.Time{}), t0, l.Gen())
	l.Get(ref("a"), t0) // a is now the most recently used
	l.Put(ref("c"), nil, facts(1, time.Time{}), t0, l.Gen())
	if l.Len() != 2 {
		t.Fatalf("Len = %d, want 2", l.Len())
	}
	if _, hit := l.Get(ref("b"), t0); hit {
		t.Fatal("b (least recently used) was not evicted")
	}
	for _, id := range []string{"a", "c"} {
		if _, hit := l.Get(ref(id), t0); !hit {
			t.Fatalf("%s evicted", id)
		}
	}
	if got := counterValue(t, reg, "gdprgate_cache_facts_evictions_total"); got != 1 {
		t.Fatalf("evictions counter = %v, want 1", got)
	}
	// A second cache on the same registry shares the collectors.
	_ = cache.NewLocal(cache.Options{Registerer: reg})
}

func TestLocalServableWithinStaleness(t *testing.T) {
	var clock atomic.Int64
	clock.Store(t0.UnixNano())
	l := cache.NewLocal(cache.Options{MaxStaleness: 10 * time.Second, Clock: func() time.Time { return time.Unix(0, clock.Load()) }})
	tests := []struct {
		name      string
		advance   time.Duration
		connected bool
		ok, stale bool
	}{
		{"connected", 0, true, true, false},
		{"disconnected just now", 0, false, true, true},
		{"disconnected within the bound", 9 * time.Second, false, true, true},
		{"disconnected at the bound", 10 * time.Second, false, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock.Store(t0.UnixNano())
			l.MarkContact()
			if !tc.connected {
				l.MarkDisconnected()
			}
			clock.Add(int64(tc.advance))
			ok, stale := l.Servable()
			if ok != tc.ok || stale != tc.stale {
				t.Fatalf("Servable = %v, %v; want %v, %v", ok, stale, tc.ok, tc.stale)
			}
		})
	}
}

func TestLocalBoundedByBytes(t *testing.T) {
	const budget = 4 << 20
	l := cache.NewLocal(cache.Options{MaxBytes: budget})
	l.SetIndex(index(t, 1))
	// Forty distinct 900 KB ids (issue: they grew a proxy by 64 MB).
	for i := range 40 {
		id := strings.Repeat(string(rune('a'+i%26)), 900<<10) + strconv.Itoa(i)
		l.Put(ref(id), nil, facts(1, time.Time{}), t0, l.Gen())
		if b := l.Bytes(); b > budget {
			t.Fatalf("after %d long ids the cache holds %d bytes, budget %d", i+1, b, budget)
		}
	}
	if n := l.Len(); n < 1 || n > 4 {
		t.Fatalf("cache keeps %d entries of 900 KB under a 4 MiB budget", n)
	}
	// Ordinary ids are still cached next to them, the long ones make room.
	l.Put(ref("c-1"), nil, facts(1, time.Time{}), t0, l.Gen())
	if _, hit := l.Get(ref("c-1"), t0); !hit {
		t.Fatal("a short id was not cached")
	}
	// One entry larger than the whole budget is not cached at all.
	huge := strings.Repeat("x", budget)
	l.Put(ref(huge), nil, facts(1, time.Time{}), t0, l.Gen())
	if _, hit := l.Get(ref(huge), t0); hit {
		t.Fatal("an entry larger than the byte budget was cached")
	}
	if _, hit := l.Get(ref("c-1"), t0); !hit {
		t.Fatal("an oversized entry evicted the others")
	}
	l.InvalidateAll()
	if b := l.Bytes(); b != 0 {
		t.Fatalf("empty cache accounts %d bytes", b)
	}
}

func TestLocalWatchdogMarksSilentStoreDisconnected(t *testing.T) {
	l := cache.NewLocal(cache.Options{MaxStaleness: time.Hour})
	defer l.StopWatchdog()
	l.ExpectContactEvery(10 * time.Millisecond)
	// No MarkContact follows (a health loop stuck on a hung server): the
	// entries must stop counting as fresh without anyone reporting an error.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, stale := l.Servable()
		if ok && stale {
			break
		}
		if !ok || time.Now().After(deadline) {
			t.Fatalf("Servable = %v, %v; want served stale once contact is overdue", ok, stale)
		}
		time.Sleep(5 * time.Millisecond)
	}
	l.MarkContact()
	if ok, stale := l.Servable(); !ok || stale {
		t.Fatalf("Servable after contact = %v, %v; want fresh", ok, stale)
	}
}

func BenchmarkLocalGetHit(b *testing.B) {
	l := cache.NewLocal(cache.Options{})
	ix, _ := model.NewIndex(&model.Registers{}, 1)
	l.SetIndex(ix)
	r := ref("c-1")
	l.Put(r, nil, facts(1, t0.Add(time.Hour)), t0, l.Gen())
	b.ReportAllocs()
	for b.Loop() {
		if _, hit := l.Get(r, t0); !hit {
			b.Fatal("miss")
		}
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// TestLocalAgreesWithASimpleLRU: random puts, gets, invalidations (some
// subjects inheriting from others) and evictions by count; after every step
// the cache holds what the model holds (cache.RecencyModel: a plain
// least-recently-used list, each entry evicted among the window least
// recently used, window a quarter of the cache), each subject with its own
// facts — slots are reused by index, so a stale link or a slot freed twice
// would show as a wrong or lost entry.
func TestLocalAgreesWithASimpleLRU(t *testing.T) {
	for _, tc := range []struct {
		max    int
		window int64
	}{{8, 2}, {64, 16}} {
		t.Run(strconv.Itoa(tc.max), func(t *testing.T) {
			l := cache.NewLocal(cache.Options{MaxSubjects: tc.max})
			l.SetIndex(index(t, 1))
			m := cache.NewRecencyModel(t, l)
			next := cache.LCG(uint64(1))
			ids := tc.max * 5 / 2
			for step := range 5000 {
				r := ref("c-" + strconv.Itoa(next(ids)))
				if w := m.Window(r); w != tc.window {
					t.Fatalf("window %d, want %d", w, tc.window)
				}
				switch op := next(10); {
				case op < 5: // put
					it := cache.ModelItem{Ref: r, Active: uint32(step + 1)}
					if p := next(4); p == 0 {
						pr := ref("c-" + strconv.Itoa(next(ids)))
						it.Parent = &pr
					}
					f := cache.Facts{RegistersVersion: 1, Known: true, State: lifecycle.State{Active: it.Active}}
					l.Put(r, it.Parent, f, t0, l.Gen())
					m.Put(step, it)
				case op < 9: // get
					f, ok := l.Get(r, t0)
					m.Get(step, r, f.State.Active, ok)
				default: // invalidate r and its children
					l.Invalidate(r)
					m.Invalidate(step, r)
				}
			}
		})
	}
}
