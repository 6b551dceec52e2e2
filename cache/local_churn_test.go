package cache_test

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
)

// churnSubject is one subject of TestLocalChurnReadersSeeOnlyWhatCouldBeStored.
type churnSubject struct {
	ref    model.SubjectRef
	parent *model.SubjectRef
	// kids are the subjects whose parent this one is.
	kids []int
	// key is what its facts are made of: its own number, or a number it
	// shares with others (so that equal facts share one value).
	key int
	// ver is the last version handed out; floor the lowest version a
	// reader that starts now may be served (raised after invalidations).
	ver, floor atomic.Uint32
}

var churnBase = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// churnAt is the instant version v of a subject is computed for.
func churnAt(v uint32) time.Time { return churnBase.Add(time.Duration(v%3) * time.Minute) }

// churnFacts are the facts of version v computed with registers reg:
// every field follows from (key, v, reg), so a torn read, another
// subject's facts or a version read back from before an invalidation
// shows. Their Next lies 1 to 6 minutes after their instant, or nowhere.
func churnFacts(key int, v uint32, reg int64) cache.Facts {
	k := uint32(key)*100_000 + v
	f := cache.Facts{Known: key%2 == 0, Restricted: v%5 == 0, RegistersVersion: reg, State: lifecycle.State{
		Active: uint32(key), Expired: v, Archived: k, Obliviated: ^k, Covered: uint32(reg),
		Coverage: lifecycle.Coverage(key % 3), Grants: make([]lifecycle.Grant, key%3+1),
	}}
	if v%4 != 0 {
		f.State.Next = churnAt(v).Add(time.Duration(v%6+1) * time.Minute)
	}
	for g := range f.State.Grants {
		f.State.Grants[g] = lifecycle.Grant{LegalisationID: "l-" + strconv.Itoa(key), ProjectID: strconv.Itoa(int(k))}
	}
	return f
}

func sameChurnFacts(a, b cache.Facts) bool {
	if len(a.State.Grants) != len(b.State.Grants) {
		return false
	}
	for i := range a.State.Grants {
		if a.State.Grants[i] != b.State.Grants[i] {
			return false
		}
	}
	x, y := a.State, b.State
	return a.Known == b.Known && a.Restricted == b.Restricted && a.RegistersVersion == b.RegistersVersion &&
		a.Origin == b.Origin && a.Stale == b.Stale && x.Active == y.Active && x.Archived == y.Archived &&
		x.Expired == y.Expired && x.Obliviated == y.Obliviated && x.Covered == y.Covered &&
		x.CoveredExplicit == y.CoveredExplicit && x.CoveredInherited == y.CoveredInherited &&
		x.Coverage == y.Coverage && x.Next.Equal(y.Next)
}

// TestLocalChurnReadersSeeOnlyWhatCouldBeStored: readers Get subjects at
// instants before, inside and past their facts' validity while writers
// put new versions (with and without a parent; caches small enough that
// most puts evict), invalidate subjects, parents (hence their children)
// and everything, and move the registers on. Every hit must be whole facts
// of the very subject asked, of a version no older than the last
// invalidation finished before the read started, computed with the
// registers of that read, for an instant at or before the read's and
// with a Next after it. Run it with -race too.
func TestLocalChurnReadersSeeOnlyWhatCouldBeStored(t *testing.T) {
	ops := 30_000
	if testing.Short() || churnRace {
		ops = 3_000
	}
	for _, tc := range []struct {
		name     string
		subjects int
		opts     cache.Options
	}{
		{"one shard, evicting", 40, cache.Options{MaxSubjects: 8}},
		{"byte bound", 40, cache.Options{MaxSubjects: 1000, MaxBytes: 6 * 1024}},
		{"two shards, evicting", 1500, cache.Options{MaxSubjects: 1100}},
		{"thirty-two shards, room for all", 300, cache.Options{MaxSubjects: 20_000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := cache.NewLocal(tc.opts.WithDefaults())
			var reg atomic.Int64 // the registers' version, moved under indexMu
			var indexMu sync.Mutex
			reg.Store(1)
			setIndex := func(v int64) {
				ix, err := model.NewIndex(&model.Registers{}, v)
				if err != nil {
					t.Error(err)
					return
				}
				l.SetIndex(ix)
			}
			setIndex(1)
			subs := make([]*churnSubject, tc.subjects)
			long := strings.Repeat("x", 30)
			for i := range subs {
				s := &churnSubject{key: i}
				if i%4 == 3 {
					s.key = 100_000 + i%2 // shares its facts with others
				}
				id := "c-" + strconv.Itoa(i)
				switch i % 5 {
				case 1:
					id = long[:23-len(id)] + id // exactly inline
				case 2:
					id = long + id // out of line
				}
				s.ref = model.SubjectRef{Entity: "contact", ID: id}
				if i == 7 {
					// The same id under another entity.
					s.ref = model.SubjectRef{Entity: "phone_number", ID: subs[6].ref.ID}
				}
				if i%3 == 2 && i >= 3 {
					s.ref.Entity = "phone_number"
					p := subs[i/3].ref
					s.parent = &p
					subs[i/3].kids = append(subs[i/3].kids, i)
				}
				subs[i] = s
			}

			var failed atomic.Value
			fail := func(format string, args ...any) { failed.CompareAndSwap(nil, fmt.Sprintf(format, args...)) }
			var hits atomic.Int64
			var wg sync.WaitGroup
			for g := range 6 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					next := cache.LCG(uint64(g)*0x9e3779b97f4a7c15 + 1)
					writer := g >= 4
					for range ops {
						if failed.Load() != nil {
							return
						}
						i := next(len(subs))
						s := subs[i]
						op := next(1000)
						switch {
						case !writer || op < 300:
							floor := s.floor.Load()
							rv := l.Index().Version
							now := churnBase.Add(time.Duration(next(9*60)) * time.Second)
							f, ok := l.Get(s.ref, now)
							if !ok {
								continue
							}
							hits.Add(1)
							v := f.State.Expired
							if want := churnFacts(s.key, v, f.RegistersVersion); !sameChurnFacts(f, want) {
								fail("Get(%v) = %+v: not version %d of subject %d, %+v", s.ref, f, v, i, want)
							}
							if v < floor {
								fail("Get(%v) = version %d after the invalidation of versions below %d", s.ref, v, floor)
							}
							if f.RegistersVersion < rv || f.RegistersVersion > l.Index().Version {
								fail("Get(%v) = facts of registers %d, read with %d..%d", s.ref, f.RegistersVersion, rv, l.Index().Version)
							}
							if now.Before(churnAt(v)) {
								fail("Get(%v) at %v = facts computed for %v", s.ref, now, churnAt(v))
							}
							if !f.State.Next.IsZero() && !now.Before(f.State.Next) {
								fail("Get(%v) at %v = facts whose Next is %v", s.ref, now, f.State.Next)
							}
						case op < 900:
							gen := l.Gen()
							// What a store computes after reading gen: a
							// version no invalidation before gen concerns.
							v := s.ver.Add(1)
							l.Put(s.ref, s.parent, churnFacts(s.key, v, reg.Load()), churnAt(v), gen)
						case op < 960:
							fl := s.ver.Load() + 1
							kid := make([]uint32, len(s.kids))
							for k, c := range s.kids {
								kid[k] = subs[c].ver.Load() + 1
							}
							l.Invalidate(s.ref)
							raise(&s.floor, fl)
							for k, c := range s.kids {
								raise(&subs[c].floor, kid[k])
							}
						case op < 990:
							indexMu.Lock()
							setIndex(reg.Load() + 1)
							reg.Add(1)
							indexMu.Unlock()
						default:
							fls := make([]uint32, len(subs))
							for k, o := range subs {
								fls[k] = o.ver.Load() + 1
							}
							l.InvalidateAll()
							for k, o := range subs {
								raise(&o.floor, fls[k])
							}
						}
					}
				}()
			}
			wg.Wait()
			if f := failed.Load(); f != nil {
				t.Fatal(f)
			}
			if hits.Load() == 0 {
				t.Fatal("no hit: the test reads nothing")
			}
			t.Logf("%d hits", hits.Load())
		})
	}
}

// raise sets a to v unless it is already higher.
func raise(a *atomic.Uint32, v uint32) {
	for {
		o := a.Load()
		if o >= v || a.CompareAndSwap(o, v) {
			return
		}
	}
}
