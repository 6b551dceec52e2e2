package cache

import (
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/policy/model"
)

// TestLocalConcurrentHitsNeverTurnTheTickBack: hits that stamp their
// entries again on several cores at once (a small cache, window 1: every
// hit of an entry not the last stamped re-stamps it) leave the shard's
// tick at or past every stamp it gave. A tick turned back by a stale
// store hands later entries stamps older than those of entries used
// before them, so the eviction order's bound (shard.touch) fails.
func TestLocalConcurrentHitsNeverTurnTheTickBack(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r := func(n int) model.SubjectRef { return model.SubjectRef{Entity: "contact", ID: "c-" + strconv.Itoa(n)} }
	const ids = 6
	l := NewLocal(Options{MaxSubjects: ids})
	l.SetIndex(emptyIndex(t))
	for n := range ids {
		l.Put(r(n), nil, Facts{RegistersVersion: 1}, at, l.Gen())
	}
	s := &l.shards[0]
	if w := s.window.Load(); w != 1 {
		t.Fatalf("window %d, want 1", w)
	}
	workers := max(4, 2*runtime.GOMAXPROCS(0))
	for round := range 200 {
		var wg sync.WaitGroup
		for g := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range 2000 {
					l.Get(r((g+k)%ids), at)
				}
			}()
		}
		wg.Wait()
		tick := s.tick.Load()
		ents := s.ents.Load()
		for i := range ents.stamps {
			if st := ents.stamps[i].Load(); st > tick {
				t.Fatalf("round %d: slot %d stamped %d, past the shard's tick %d", round, i, st, tick)
			}
		}
	}
}
