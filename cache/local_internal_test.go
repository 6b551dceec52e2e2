package cache

import (
	"fmt"
	"math"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
)

// emptyIndex is an index of empty registers at version 1: what a cache
// needs set before it serves anything.
func emptyIndex(t testing.TB) *model.Index {
	t.Helper()
	ix, err := model.NewIndex(&model.Registers{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

// TestLocalRecencyStaysBounded: hits on a cache that never evicts, and
// evictions on every put, leave the order of use holding each entry once
// and the slots no more than the entries the cache may hold.
func TestLocalRecencyStaysBounded(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		max, ids int
	}{{"hits without evictions", 100, 10}, {"evictions on every put", 10, 1000}} {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLocal(Options{MaxSubjects: tc.max})
			l.SetIndex(emptyIndex(t))
			for n := range 200_000 {
				r := model.SubjectRef{Entity: "contact", ID: "c-" + strconv.Itoa(n%tc.ids)}
				if _, ok := l.Get(r, at); !ok {
					l.Put(r, nil, Facts{RegistersVersion: 1}, at, l.Gen())
				}
			}
			s := &l.shards[0]
			if len(s.heap) != l.Len() || int(s.slots) > tc.max || cap(s.heap) > 2*tc.max {
				t.Fatalf("heap: len %d cap %d, %d slots for %d entries, at most %d", len(s.heap), cap(s.heap), s.slots, l.Len(), tc.max)
			}
			for k, i := range s.heap {
				if int(s.cold[i].pos) != k {
					t.Fatalf("slot %d at %d of the heap says %d", i, k, s.cold[i].pos)
				}
			}
		})
	}
}

// TestLocalShardsAgreeWithPerShardLRUs: random puts, gets and
// invalidations (subjects of two entities, some sharing an id, some ids
// longer than an entry holds inline, some inheriting from others) on
// caches of 1 and 4 shards, with every id hashed apart or, masked, onto
// a few hashes (collisions in the index); after every step the cache holds
// what the model holds (RecencyModel): per shard, entries in their order
// of use, each one evicted among the window least recently used of its
// shard; the bound the whole cache's; room made in the new entry's shard,
// then, when that one is empty, in the others in turn. Windows of 1 (the
// four shards' share, 2 subjects: exact LRU), 2 and 10.
func TestLocalShardsAgreeWithPerShardLRUs(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name        string
		shards, max int
		mask        uint64
		window      int64
	}{
		{"one shard", 1, 10, math.MaxUint64, 2},
		{"one shard, colliding hashes", 1, 10, 3, 2},
		{"one shard, window 10", 1, 40, math.MaxUint64, 10},
		{"four shards", 4, 10, math.MaxUint64, 1},
		{"four shards, colliding hashes", 4, 10, 3<<62 | 3, 1},
		{"four shards, window 10", 4, 160, math.MaxUint64, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLocal(Options{MaxSubjects: tc.max}.WithDefaults(), tc.shards)
			l.hashMask = tc.mask
			l.SetIndex(emptyIndex(t))
			m := NewRecencyModel(t, l)
			next := lcg(uint64(7))
			ids := tc.max * 12 / 5
			newRef := func() model.SubjectRef {
				id := "c-" + strconv.Itoa(next(ids))
				if next(4) == 0 {
					id += strings.Repeat("-long", 6) // past inlineID
				}
				entity := "contact"
				if next(3) == 0 {
					entity = "phone_number"
				}
				return model.SubjectRef{Entity: entity, ID: id}
			}
			for step := range 20000 {
				r := newRef()
				if w := m.Window(r); w != tc.window {
					t.Fatalf("window %d, want %d", w, tc.window)
				}
				switch op := next(10); {
				case op < 5: // put
					it := ModelItem{Ref: r, Active: uint32(step + 1)}
					if next(4) == 0 {
						pr := newRef()
						it.Parent = &pr
					}
					l.Put(r, it.Parent, Facts{RegistersVersion: 1, State: lifecycle.State{Active: it.Active}}, at, l.Gen())
					m.Put(step, it)
				case op < 9: // get
					f, ok := l.Get(r, at)
					m.Get(step, r, f.State.Active, ok)
				default: // invalidate r and its children
					l.Invalidate(r)
					m.Invalidate(step, r)
				}
			}
			if got, want := l.reserved.Load(), int64(l.Len()); got != want {
				t.Fatalf("reserved %d for %d entries", got, want)
			}
		})
	}
}

// TestLocalHoldsItsBoundWhateverTheShards: a cache sized for a list's
// subjects holds all of them, however unevenly they hash over its shards;
// one more evicts exactly one.
func TestLocalHoldsItsBoundWhateverTheShards(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const size = 2300
	l := NewLocal(Options{MaxSubjects: size})
	if len(l.shards) < 4 {
		t.Fatalf("%d shards for %d subjects, want several", len(l.shards), size)
	}
	l.SetIndex(emptyIndex(t))
	r := func(n int) model.SubjectRef { return model.SubjectRef{Entity: "contact", ID: "c-" + strconv.Itoa(n)} }
	for n := range size {
		l.Put(r(n), nil, Facts{RegistersVersion: 1}, at, l.Gen())
	}
	for n := range size {
		if _, ok := l.Get(r(n), at); !ok {
			t.Fatalf("c-%d evicted from a cache of %d holding %d", n, size, size)
		}
	}
	l.Put(r(size), nil, Facts{RegistersVersion: 1}, at, l.Gen())
	if n := l.Len(); n != size {
		t.Fatalf("Len = %d, want %d", n, size)
	}
}

// TestLocalConcurrentUseKeepsItsBounds (run it with -race): goroutines
// putting, reading and invalidating subjects of a sharded cache with small
// bounds; the entries held never exceed them, the reservations come back
// to the entries held, and no read returns another subject's facts.
func TestLocalConcurrentUseKeepsItsBounds(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const maxSubjects, maxBytes = 40, 40 * 400
	l := newLocal(Options{MaxSubjects: maxSubjects, MaxBytes: maxBytes}.WithDefaults(), 8)
	l.SetIndex(emptyIndex(t))
	var wg sync.WaitGroup
	var stop atomic.Bool
	var failed atomic.Value
	wg.Add(1)
	go func() { // watches the bounds while the others work
		defer wg.Done()
		for !stop.Load() {
			for k := range l.shards {
				s := &l.shards[k]
				s.mu.Lock()
				// Each shard alone; the sum is checked at the end.
				if s.count > maxSubjects || s.bytes > maxBytes {
					failed.Store(fmt.Sprintf("shard %d holds %d entries, %d bytes", k, s.count, s.bytes))
				}
				s.mu.Unlock()
			}
			runtime.Gosched()
		}
	}()
	var workers sync.WaitGroup
	for g := range 8 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			next := lcg(uint64(g + 1))
			for range 3000 {
				n := next(200)
				r := model.SubjectRef{Entity: "contact", ID: "c-" + strconv.Itoa(n)}
				switch op := next(10); {
				case op < 4:
					var parent *model.SubjectRef
					if next(3) == 0 {
						parent = &model.SubjectRef{Entity: "contact", ID: "c-" + strconv.Itoa(next(200))}
					}
					// Ids of every length, so that the byte bound binds too.
					l.Put(r, parent, Facts{RegistersVersion: 1, State: lifecycle.State{Active: uint32(n)}}, at, l.Gen())
				case op < 9:
					if f, ok := l.Get(r, at); ok && f.State.Active != uint32(n) {
						failed.Store(fmt.Sprintf("Get(%v) = facts of c-%d", r, f.State.Active))
					}
				default:
					l.Invalidate(r)
				}
			}
		}()
	}
	workers.Wait()
	stop.Store(true)
	wg.Wait()
	if f := failed.Load(); f != nil {
		t.Fatal(f)
	}
	if n, b := l.Len(), l.Bytes(); n > maxSubjects || b > maxBytes {
		t.Fatalf("%d entries, %d bytes; bounds %d, %d", n, b, maxSubjects, maxBytes)
	}
	if r, n := l.reserved.Load(), l.Len(); r != int64(n) {
		t.Fatalf("reserved %d for %d entries", r, n)
	}
	if r, b := l.reservedBytes.Load(), l.Bytes(); r != b {
		t.Fatalf("reserved %d bytes for %d", r, b)
	}
	withParent := 0
	for k := range l.shards {
		for _, e := range l.shards[k].cold {
			if e.hasParent {
				withParent++
			}
		}
	}
	if got := l.withParent.Load(); got != int64(withParent) {
		t.Fatalf("withParent %d, %d entries have a parent", got, withParent)
	}
}

// TestLocalInvalidationRacingAChildsPutDropsIt: a child's facts read
// before its parent changed, put while the parent's invalidation runs,
// must not stay cached, whichever comes first — the child lives in
// another shard than its parent, and the invalidation skips the shards
// when no entry has a parent.
func TestLocalInvalidationRacingAChildsPutDropsIt(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	l := newLocal(Options{}.WithDefaults(), 8)
	l.SetIndex(emptyIndex(t))
	parent := model.SubjectRef{Entity: "contact", ID: "c-1"}
	var child model.SubjectRef
	for n := 0; ; n++ {
		child = model.SubjectRef{Entity: "phone_number", ID: "+420" + strconv.Itoa(n)}
		if l.hash(child.ID)>>l.shift != l.hash(parent.ID)>>l.shift {
			break
		}
	}
	for i := range 2000 {
		gen := l.Gen() // the child's read starts
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); l.Put(child, &parent, Facts{RegistersVersion: 1}, at, gen) }()
		go func() { defer wg.Done(); l.Invalidate(parent) }()
		wg.Wait()
		if _, ok := l.Get(child, at); ok {
			t.Fatalf("round %d: a child read before its parent's invalidation stayed cached", i)
		}
	}
	if n := l.withParent.Load(); n != 0 {
		t.Fatalf("withParent = %d with no entry", n)
	}
}

// TestSameFactsKnowsEveryField: entries share a value only when their
// facts are equal field for field; a field added to Facts or State that
// sameFacts does not compare would hand one subject another's facts.
func TestSameFactsKnowsEveryField(t *testing.T) {
	// Change one field at a time of a base value; sameFacts must see
	// each change (reflect sets every settable field to a non-zero value).
	base := Facts{State: lifecycle.State{Grants: []lifecycle.Grant{{LegalisationID: "l"}}}}
	var paths [][]int
	var walk func(tp reflect.Type, path []int)
	walk = func(tp reflect.Type, path []int) {
		for i := range tp.NumField() {
			p := append(slices.Clone(path), i)
			if f := tp.Field(i); f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Time{}) {
				walk(f.Type, p)
			} else {
				paths = append(paths, p)
			}
		}
	}
	walk(reflect.TypeOf(Facts{}), nil)
	if len(paths) < 15 {
		t.Fatalf("found %d fields", len(paths))
	}
	for _, p := range paths {
		changed := base
		changed.State.Grants = slices.Clone(base.State.Grants)
		f := reflect.ValueOf(&changed).Elem().FieldByIndex(p)
		switch f.Kind() {
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Uint8, reflect.Uint32, reflect.Uint64:
			f.SetUint(1)
		case reflect.Int64:
			f.SetInt(1)
		case reflect.Slice:
			f.Set(reflect.ValueOf([]lifecycle.Grant{{LegalisationID: "other"}}))
		case reflect.Struct: // time.Time
			f.Set(reflect.ValueOf(time.Unix(1, 0)))
		default:
			t.Fatalf("field %v of kind %v: teach this test (and sameFacts) about it", p, f.Kind())
		}
		if sameFacts(&base, &changed) {
			t.Errorf("sameFacts misses field %v (%s)", p, reflect.TypeOf(Facts{}).FieldByIndex(p).Name)
		}
	}
	same := base
	same.State.Grants = slices.Clone(base.State.Grants)
	if !sameFacts(&base, &same) {
		t.Fatal("equal facts told apart")
	}
}

// TestLocalSharesOnlyEqualValues: subjects put with equal facts at the
// same instant share one value; any difference (facts, instant, entity)
// keeps them apart, and each Get returns exactly what was put for it.
func TestLocalSharesOnlyEqualValues(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	l := newLocal(Options{}.WithDefaults(), 1)
	l.SetIndex(emptyIndex(t))
	grants := func(p string) []lifecycle.Grant { return []lifecycle.Grant{{LegalisationID: "l", ProjectID: p}} }
	type put struct {
		ref model.SubjectRef
		f   Facts
		at  time.Time
	}
	c := func(id string) model.SubjectRef { return model.SubjectRef{Entity: "contact", ID: id} }
	puts := []put{
		{c("a"), Facts{RegistersVersion: 1, Known: true, State: lifecycle.State{Active: 1, Grants: grants("p")}}, at},
		{c("b"), Facts{RegistersVersion: 1, Known: true, State: lifecycle.State{Active: 1, Grants: grants("p")}}, at},
		{c("c"), Facts{RegistersVersion: 1, Known: true, State: lifecycle.State{Active: 1, Grants: grants("q")}}, at},
		{c("d"), Facts{RegistersVersion: 1, Known: true, State: lifecycle.State{Active: 1, Grants: grants("p")}}, at.Add(-time.Second)},
		{model.SubjectRef{Entity: "phone_number", ID: "e"}, Facts{RegistersVersion: 1, Known: true, State: lifecycle.State{Active: 1, Grants: grants("p")}}, at},
		{c("f"), Facts{RegistersVersion: 1, State: lifecycle.State{Active: 1, Grants: grants("p")}}, at},
	}
	for _, p := range puts {
		l.Put(p.ref, nil, p.f, p.at, l.Gen())
	}
	s := &l.shards[0]
	if n := s.nvals; n != int32(len(puts)-1) {
		t.Fatalf("%d values for %d entries of which 2 are equal", n, len(puts))
	}
	for _, p := range puts {
		got, ok := l.Get(p.ref, at)
		if !ok || !sameFacts(&got, &p.f) {
			t.Fatalf("Get(%v) = %+v, %v; want %+v", p.ref, got, ok, p.f)
		}
		if v := s.valueOf(&s.ents.Load().hot[s.find(l.hash(p.ref.ID), p.ref)]); v.at != p.at || v.entity != p.ref.Entity {
			t.Fatalf("%v holds the value of %s at %v", p.ref, v.entity, v.at)
		}
	}
	// The shared value lives while one of its entries does.
	l.Invalidate(c("a"))
	if got, ok := l.Get(c("b"), at); !ok || !sameFacts(&got, &puts[1].f) {
		t.Fatalf("b after a's invalidation = %+v, %v", got, ok)
	}
	l.Invalidate(c("b"))
	live := 0
	for _, r := range s.refs {
		if r > 0 {
			live++
		}
	}
	if live != len(puts)-2 {
		t.Fatalf("%d live values for %d entries", live, len(puts)-2)
	}
}

// TestLocalHitsOfRecentEntriesWriteNothing: a list's subjects, in a cache
// many times their number, read again and again, and in an order of their
// own on another goroutine: once each has been stamped, their hits write
// neither their stamps nor their shard's tick (the lines concurrent hits
// share), while a cache with room for them alone still stamps every use.
func TestLocalHitsOfRecentEntriesWriteNothing(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r := func(n int) model.SubjectRef { return model.SubjectRef{Entity: "contact", ID: "c-" + strconv.Itoa(n)} }
	type snapshot struct{ ticks, stamps []int64 }
	snap := func(l *Local) snapshot {
		var sn snapshot
		for k := range l.shards {
			s := &l.shards[k]
			sn.ticks = append(sn.ticks, s.tick.Load())
			if ents := s.ents.Load(); ents != nil {
				for i := range ents.stamps {
					sn.stamps = append(sn.stamps, ents.stamps[i].Load())
				}
			}
		}
		return sn
	}
	for _, tc := range []struct {
		name      string
		max       int
		quiet     bool
		ids, gets int
	}{{"a list in a large cache", 100_000, true, 2300, 3}, {"a cache the list fills", 2300, false, 2300, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLocal(Options{MaxSubjects: tc.max})
			l.SetIndex(emptyIndex(t))
			for n := range tc.ids {
				l.Put(r(n), nil, Facts{RegistersVersion: 1}, at, l.Gen())
			}
			for n := range tc.ids { // each stamped once more at most
				l.Get(r(n), at)
			}
			before := snap(l)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range tc.gets {
					for n := tc.ids - 1; n >= 0; n-- {
						l.Get(r(n), at)
					}
				}
			}()
			for range tc.gets {
				for n := range tc.ids {
					if _, ok := l.Get(r(n), at); !ok {
						t.Errorf("c-%d missed", n)
					}
				}
			}
			wg.Wait()
			after := snap(l)
			if same := reflect.DeepEqual(before, after); same != tc.quiet {
				t.Fatalf("stamps and ticks unchanged by the hits: %v, want %v", same, tc.quiet)
			}
		})
	}
}

// TestLocalWindowIsAQuarterOfAShardsCapacity: the window is a quarter of
// the shard's share of the subjects, or of the entries its share of the
// bytes holds at their average size when that is fewer; at least 1.
func TestLocalWindowIsAQuarterOfAShardsCapacity(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	size := entrySize(model.SubjectRef{Entity: "contact", ID: "c-00"}, nil, Facts{})
	for _, tc := range []struct {
		name        string
		max, shards int
		bytes       int64
		want        int64
	}{
		{"by subjects, one shard", 100, 1, 0, 25},
		{"by subjects, default cache", 100_000, 32, 0, 781},
		{"by subjects, four shards", 10, 4, 0, 1},
		{"by bytes", 1000, 1, 40 * size, 10},
		{"by bytes, four shards", 1000, 4, 160 * size, 10},
		{"by bytes, tiny", 1000, 1, 2 * size, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLocal(Options{MaxSubjects: tc.max, MaxBytes: tc.bytes}.WithDefaults(), tc.shards)
			l.SetIndex(emptyIndex(t))
			for n := range 100 {
				l.Put(model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("c-%02d", n)}, nil, Facts{RegistersVersion: 1}, at, l.Gen())
			}
			for k := range l.shards {
				if s := &l.shards[k]; s.count > 0 && s.window.Load() != tc.want {
					t.Fatalf("shard %d: window %d, want %d", k, s.window.Load(), tc.want)
				}
			}
		})
	}
}

// TestShardHeadersHaveALineEach: what lock-free hits read of a shard (seq
// to window) lies on one cache line that no other field of it, nor of the
// shard before it, shares, whatever the number of shards (the shards'
// array does not start on a line: Go puts an 8-byte header before an
// object of more than 512 bytes that holds pointers).
func TestShardHeadersHaveALineEach(t *testing.T) {
	line := func(p unsafe.Pointer, off uintptr) uintptr { return (uintptr(p) + off) / 64 }
	for n := 1; n <= maxShards; n *= 2 {
		for range 3 {
			l := newLocal(Options{}.WithDefaults(), n)
			for k := range l.shards {
				s := &l.shards[k]
				first, last := line(unsafe.Pointer(&s.seq), 0), line(unsafe.Pointer(&s.window), 7)
				if first != last || line(unsafe.Pointer(&s.mu), 0) == last {
					t.Fatalf("%d shards: shard %d's header at %#x..%#x, its mutex at %#x", n, k,
						uintptr(unsafe.Pointer(&s.seq)), uintptr(unsafe.Pointer(&s.window))+8, uintptr(unsafe.Pointer(&s.mu)))
				}
				if k > 0 {
					if p := &l.shards[k-1]; line(unsafe.Pointer(&p.heap), unsafe.Sizeof(p.heap)-1) == first {
						t.Fatalf("%d shards: shard %d's header shares a line with shard %d's heap", n, k, k-1)
					}
				}
			}
		}
	}
}
