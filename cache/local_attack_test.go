package cache

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
)

// TestLocalConcurrentReadersNeverSeeAnotherSubjectOrAStaleVersion (run it
// with -race): subjects whose ids are empty, one byte, 23 bytes (the
// longest kept inline) differing only in their last byte, longer ones
// differing only past byte 23, and each id under two entities, in a
// cache of small bounds across 8 shards, with the hash as computed and
// with nearly every hash colliding. Readers put the facts of the version
// they read (gen noted first); writers move a subject's (or a parent's)
// version, invalidate it (or everything) and then must never be served an
// older version, nor any reader another subject's facts, whether or not
// the facts are shared with other entries.
func TestLocalConcurrentReadersNeverSeeAnotherSubjectOrAStaleVersion(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	long := strings.Repeat("x", 23)
	ids := []string{"", "a", "b", long[:22] + "0", long[:22] + "1", long + "0", long + "1",
		long + strings.Repeat("y", 10) + "0", long + strings.Repeat("y", 10) + "1", long[:22], long}
	var refs []model.SubjectRef
	for _, id := range ids {
		refs = append(refs, model.SubjectRef{Entity: "contact", ID: id}, model.SubjectRef{Entity: "phone_number", ID: id})
	}
	// refs[i] with i%4 == 1 inherits from refs[i-1]: its facts are of the
	// parent's version.
	parentOf := func(i int) int {
		if i%4 == 1 {
			return i - 1
		}
		return -1
	}
	common := []lifecycle.Grant{{LegalisationID: "l", ProjectID: "p"}}
	facts := func(i int, version uint32) Facts {
		f := Facts{RegistersVersion: 1, State: lifecycle.State{Active: uint32(i), Expired: version}}
		if i%3 == 0 {
			// Equal for every such subject of a version: shared values.
			f.State.Active, f.State.Grants = 1000, common
		}
		return f
	}
	check := func(i int, f Facts) error {
		want := uint32(i)
		if i%3 == 0 {
			want = 1000
		}
		if f.State.Active != want {
			return fmt.Errorf("Get(%q) = facts of subject %d", refs[i], f.State.Active)
		}
		return nil
	}
	for _, mask := range []uint64{^uint64(0), 0xe000_0000_0000_0001} {
		t.Run(fmt.Sprintf("mask %x", mask), func(t *testing.T) {
			l := newLocal(Options{MaxSubjects: 12, MaxBytes: 12 * 400}.WithDefaults(), 8)
			l.hashMask = mask
			l.SetIndex(emptyIndex(t))
			truth := make([]atomic.Uint32, len(refs))
			var failed atomic.Value
			var wg sync.WaitGroup
			for g := range 6 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					next := lcg(uint64(g + 1))
					for range 4000 {
						i := next(len(refs))
						switch op := next(20); {
						case op < 8: // a reader's miss
							gen := l.Gen()
							src := i
							var parent *model.SubjectRef
							if p := parentOf(i); p >= 0 {
								src, parent = p, &refs[p]
							}
							l.Put(refs[i], parent, facts(i, truth[src].Load()), at, gen)
						case op < 17:
							if f, ok := l.Get(refs[i], at); ok {
								if err := check(i, f); err != nil {
									failed.Store(err.Error())
								}
							}
						default: // a write
							v := truth[i].Add(1)
							if op == 19 {
								l.InvalidateAll()
							} else {
								l.Invalidate(refs[i])
							}
							for _, k := range []int{i, i + 1} {
								// A subject's facts are of its own version, a
								// child's of its parent's.
								if k == i && parentOf(i) >= 0 || k != i && (k >= len(refs) || parentOf(k) != i) {
									continue
								}
								if f, ok := l.Get(refs[k], at); ok {
									if err := check(k, f); err != nil {
										failed.Store(err.Error())
									} else if f.State.Expired < v {
										failed.Store(fmt.Sprintf("Get(%q) after version %d's invalidation = version %d", refs[k], v, f.State.Expired))
									}
								}
							}
						}
					}
				}()
			}
			wg.Wait()
			if f := failed.Load(); f != nil {
				t.Fatal(f)
			}
			if n, b := l.Len(), l.Bytes(); n > 12 || b > 12*400 {
				t.Fatalf("%d entries, %d bytes", n, b)
			}
			if r, n := l.reserved.Load(), l.Len(); r != int64(n) {
				t.Fatalf("reserved %d for %d entries", r, n)
			}
			if len(common) != 1 || common[0] != (lifecycle.Grant{LegalisationID: "l", ProjectID: "p"}) {
				t.Fatalf("shared grants changed: %v", common)
			}
		})
	}
}
