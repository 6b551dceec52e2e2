package cache_test

import (
	"runtime"
	"strconv"
	"testing"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/policy/lifecycle"
)

// BenchmarkLocalGCFull: one garbage collection with 100,000 subjects
// cached (one grant each), the collector's cost of a full cache, which a
// sidecar pays on every cycle whatever its hit rate.
//
//	go test ./cache/ -run '^$' -bench LocalGCFull -benchtime 20x
func BenchmarkLocalGCFull(b *testing.B) {
	l := cache.NewLocal(cache.Options{MaxSubjects: 100_000, MaxBytes: 1 << 30})
	l.SetIndex(index(b, 1))
	for i := range 100_000 {
		f := cache.Facts{RegistersVersion: 1, Known: true, State: lifecycle.State{Active: 1,
			Grants: []lifecycle.Grant{{LegalisationID: "contract-care", ProjectID: "p-" + strconv.Itoa(i%7), Coverage: 1}}}}
		l.Put(ref("u-"+strconv.Itoa(i)), nil, f, t0, l.Gen())
	}
	runtime.GC()
	b.ResetTimer()
	for b.Loop() {
		runtime.GC()
	}
	b.StopTimer()
	if l.Len() != 100_000 {
		b.Fatalf("cached %d", l.Len())
	}
}
