package cache

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
)

// TestLocalLockFreeHitsNeverTornNorAnothers (run it with -race): readers
// hit subjects without a lock while writers put new versions (every put
// evicting, in caches of a few entries), invalidate subjects and
// everything, and the shards' tables and entries grow and are dropped
// again. Every field of a subject's facts is made from its number and
// version, so a read that mixes two puts, or returns another subject's,
// shows; a subject's version never goes back past an invalidation its
// reader saw. Ids of every kind share hashes (masks), including ones
// only a long id's comparison under the mutex tells apart.
func TestLocalLockFreeHitsNeverTornNorAnothers(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	long := strings.Repeat("z", inlineID)
	var refs []model.SubjectRef
	for n := range 24 {
		id := "c-" + strconv.Itoa(n)
		switch n % 4 {
		case 1:
			id = long[:inlineID-len(id)] + id // exactly inline
		case 2:
			id = long + id // out of line
		}
		entity := "contact"
		if n%3 == 0 {
			entity = "phone_number"
		}
		refs = append(refs, model.SubjectRef{Entity: entity, ID: id})
	}
	// Two subjects with one id under two entities.
	refs = append(refs, model.SubjectRef{Entity: "phone_number", ID: refs[1].ID}, model.SubjectRef{Entity: "contact", ID: refs[0].ID})
	facts := func(i int, v uint32) Facts {
		k := uint32(i)*10_000 + v
		f := Facts{Known: i%2 == 0, RegistersVersion: 1, State: lifecycle.State{
			Active: uint32(i), Expired: v, Archived: k, Obliviated: ^k, Coverage: lifecycle.Coverage(i % 3),
			Next:   base.Add(time.Duration(k+1) * time.Minute),
			Grants: make([]lifecycle.Grant, i%3+1),
		}}
		for g := range f.State.Grants {
			f.State.Grants[g] = lifecycle.Grant{LegalisationID: "l-" + strconv.Itoa(i), ProjectID: strconv.Itoa(int(k))}
		}
		return f
	}
	check := func(i int, f Facts) (uint32, error) {
		want := facts(i, f.State.Expired)
		if !sameFacts(&f, &want) {
			return 0, fmt.Errorf("Get(%v) = %+v, a subject %d version %d would be %+v", refs[i], f, i, f.State.Expired, want)
		}
		return f.State.Expired, nil
	}
	for _, tc := range []struct {
		name   string
		shards int
		mask   uint64
		max    int
	}{
		{"one shard, two entries", 1, math.MaxUint64, 2},
		{"one shard", 1, math.MaxUint64, 6},
		{"one shard, colliding", 1, 0x3, 6},
		{"four shards, colliding", 4, 3<<62 | 1, 10},
		{"eight shards, room for all", 8, math.MaxUint64, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLocal(Options{MaxSubjects: tc.max}.WithDefaults(), tc.shards)
			l.hashMask = tc.mask
			l.SetIndex(emptyIndex(t))
			truth := make([]atomic.Uint32, len(refs))
			var failed atomic.Value
			var hits atomic.Int64
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					next := lcg(uint64(g + 11))
					reader := g < 6
					for range 20_000 {
						i := next(len(refs))
						op := next(100)
						switch {
						case reader && op < 90 || !reader && op < 30:
							if f, ok := l.Get(refs[i], base); ok {
								hits.Add(1)
								if _, err := check(i, f); err != nil {
									failed.Store(err.Error())
								}
							}
						case op < 97 || reader:
							gen := l.Gen()
							l.Put(refs[i], nil, facts(i, truth[i].Load()), base, gen)
						case op < 99:
							v := truth[i].Add(1)
							l.Invalidate(refs[i])
							if f, ok := l.Get(refs[i], base); ok {
								if got, err := check(i, f); err != nil {
									failed.Store(err.Error())
								} else if got < v {
									failed.Store(fmt.Sprintf("Get(%v) after version %d's invalidation = version %d", refs[i], v, got))
								}
							}
						default:
							truth[i].Add(1)
							l.InvalidateAll()
						}
					}
				}()
			}
			wg.Wait()
			if f := failed.Load(); f != nil {
				t.Fatal(f)
			}
			if hits.Load() == 0 {
				t.Fatal("no hits: nothing tested")
			}
			if n := l.Len(); n > tc.max {
				t.Fatalf("%d entries, at most %d", n, tc.max)
			}
			if r, n := l.reserved.Load(), l.Len(); r != int64(n) {
				t.Fatalf("reserved %d for %d entries", r, n)
			}
			for k := range l.shards {
				s := &l.shards[k]
				if len(s.heap) != s.count {
					t.Fatalf("shard %d: %d in the heap for %d entries", k, len(s.heap), s.count)
				}
			}
		})
	}
}

// TestLocalCompactsValuesKeepingEachEntrysFacts: values are never
// rewritten in place, so dead ones pile up until the array is copied
// without them; every entry keeps its own facts through the copies, and
// the array within twice the entries the cache may hold (or 16).
func TestLocalCompactsValuesKeepingEachEntrysFacts(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const size = 50
	l := newLocal(Options{MaxSubjects: size}.WithDefaults(), 1)
	l.SetIndex(emptyIndex(t))
	ref := func(n int) model.SubjectRef { return model.SubjectRef{Entity: "contact", ID: "c-" + strconv.Itoa(n)} }
	put := map[int]uint32{}
	for step := range 5000 {
		n := step % (2 * size)
		// Every fifth step a new value; else one of a few shared ones.
		v := uint32(step%5 + 1)
		if step%5 == 0 {
			v = uint32(step + 1000)
		}
		l.Put(ref(n), nil, Facts{RegistersVersion: 1, State: lifecycle.State{Active: v}}, at, l.Gen())
		put[n] = v
		if step%97 == 0 {
			l.Invalidate(ref((step / 97) % (2 * size)))
			delete(put, (step/97)%(2*size))
		}
		s := &l.shards[0]
		if vals := s.vals.Load(); vals != nil && len(vals.v) > max(16, 2*size) {
			t.Fatalf("step %d: %d places for %d live values", step, len(vals.v), s.liveVals)
		}
	}
	held := 0
	for n, v := range put {
		f, ok := l.Get(ref(n), at)
		if !ok {
			continue // evicted
		}
		held++
		if f.State.Active != v {
			t.Fatalf("c-%d: facts %d, want %d", n, f.State.Active, v)
		}
	}
	if held != l.Len() || held == 0 {
		t.Fatalf("%d of the cache's %d entries found", held, l.Len())
	}
}

// TestLocalGetToWritesAHitOnlyAsGetReturnsIt: GetTo writes exactly what
// Get returns on a hit, lock-free (short id) or not (long id), and leaves
// dst as it was on every kind of miss: absent, computed for a later
// instant, at or after Next, of other registers.
func TestLocalGetToWritesAHitOnlyAsGetReturnsIt(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	l := newLocal(Options{}.WithDefaults(), 4)
	l.SetIndex(emptyIndex(t))
	ref := func(id string) model.SubjectRef { return model.SubjectRef{Entity: "contact", ID: id} }
	next := at.Add(time.Hour)
	f := Facts{RegistersVersion: 1, Known: true, State: lifecycle.State{Active: 3, Next: next,
		Grants: []lifecycle.Grant{{LegalisationID: "l", ProjectID: "p"}}}}
	long := strings.Repeat("x", inlineID+5)
	l.Put(ref("short"), nil, f, at, l.Gen())
	l.Put(ref(long), nil, f, at, l.Gen())
	l.Put(ref("later"), nil, f, at.Add(time.Minute), l.Gen())
	l.Put(ref("other-registers"), nil, Facts{RegistersVersion: 2}, at, l.Gen())
	sentinel := Facts{Origin: 7, State: lifecycle.State{Archived: 99}}
	for _, tc := range []struct {
		ref model.SubjectRef
		now time.Time
		hit bool
	}{
		{ref("short"), at, true},
		{ref(long), at.Add(time.Second), true},
		{ref("absent"), at, false},
		{ref(long + "y"), at, false},
		{ref("later"), at, false},
		{ref("short"), next, false},
		{ref("other-registers"), at, false},
	} {
		got, ok := l.Get(tc.ref, tc.now)
		dst := sentinel
		okTo := l.GetTo(tc.ref, tc.now, &dst)
		if ok != tc.hit || okTo != tc.hit {
			t.Fatalf("%v at %v: Get hit %v, GetTo hit %v, want %v", tc.ref, tc.now, ok, okTo, tc.hit)
		}
		want := sentinel
		if tc.hit {
			want = got
			if !sameFacts(&got, &f) {
				t.Fatalf("%v: Get = %+v, want %+v", tc.ref, got, f)
			}
		}
		if !sameFacts(&dst, &want) {
			t.Fatalf("%v at %v: GetTo wrote %+v, want %+v", tc.ref, tc.now, dst, want)
		}
	}
}
