package cache_test

import (
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
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

// BenchmarkLocalGet: one hit, the subjects of a 1 MB list's worth (2,300)
// read in turn with a megabyte of other memory touched between rounds, as
// a list's rewrite does between answers, in a cache of 2,300 and of
// 100,000 subjects, and in the default cache (100,000) holding only the
// list (a proxy serving one list: "2300in100000"); "/items" also writes the 900 bytes an item's rewrite
// reads and writes between two hits (that time included: compare builds).
//
//	go test ./cache/ -run '^$' -bench LocalGet
//
// fullLocal is a cache of size subjects (c-0, c-1, ...), all of them in it.
func fullLocal(b *testing.B, size int) (*cache.Local, []model.SubjectRef) {
	return localOf(b, size, size)
}

// localOf is a cache of max subjects holding size of them (c-0, c-1, ...).
func localOf(b *testing.B, size, max int) (*cache.Local, []model.SubjectRef) {
	l := cache.NewLocal(cache.Options{MaxSubjects: max, MaxBytes: 1 << 30})
	l.SetIndex(index(b, 1))
	refs := make([]model.SubjectRef, size)
	for i := range refs {
		refs[i] = ref("c-" + strconv.Itoa(i))
		l.Put(refs[i], nil, cache.Facts{RegistersVersion: 1, Known: true, State: lifecycle.State{Active: 1}}, t0, l.Gen())
	}
	return l, refs
}

func BenchmarkLocalGet(b *testing.B) {
	for _, tc := range []struct {
		size, max int
		items     bool
	}{{2_300, 2_300, false}, {100_000, 100_000, false}, {2_300, 2_300, true}, {2_300, 100_000, true}} {
		size := tc.size
		name := strconv.Itoa(size)
		if tc.max != size {
			name += "in" + strconv.Itoa(tc.max)
		}
		if tc.items {
			name += "/items"
		}
		b.Run(name, func(b *testing.B) {
			l, refs := localOf(b, size, tc.max)
			other := make([]byte, 2<<20)
			list := refs[:2300]
			if size > len(list) {
				// A list's subjects are spread over the cache.
				list = make([]model.SubjectRef, 2300)
				for i := range list {
					list[i] = refs[(i*7919)%size]
				}
			}
			var cpu int64
			b.ResetTimer()
			for n := 0; n < b.N; {
				b.StopTimer()
				clear(other)
				b.StartTimer()
				cpu0 := processCPU()
				for k, r := range list {
					if tc.items {
						clear(other[k*450 : k*450+900])
					}
					if _, ok := l.Get(r, t0); !ok {
						b.Fatal("miss")
					}
					if n++; n == b.N {
						break
					}
				}
				cpu += processCPU() - cpu0
			}
			// CPU time, not wall time: on a shared machine it is what
			// stays comparable between runs.
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the process's user+system CPU time so far, in ns.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkLocalGetParallel: warm hits from concurrent answers, as a
// proxy serving lists at concurrency 16 makes them: each goroutine reads
// a 1 MB list's subjects (2,300) in turn, from its own place in the list,
// in a cache of 2,300 and of 100,000 subjects, and in the default cache
// holding only the list (2300in100000).
//
//	go test ./cache/ -run '^$' -bench LocalGetParallel -cpu 1,2,16
func BenchmarkLocalGetParallel(b *testing.B) {
	for _, tc := range []struct{ size, max int }{{2_300, 2_300}, {100_000, 100_000}, {2_300, 100_000}} {
		size, name := tc.size, strconv.Itoa(tc.size)
		if tc.max != size {
			name += "in" + strconv.Itoa(tc.max)
		}
		b.Run(name, func(b *testing.B) {
			l, refs := localOf(b, size, tc.max)
			list := make([]model.SubjectRef, 2300)
			for i := range list {
				list[i] = refs[(i*7919)%size]
			}
			var start atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			b.RunParallel(func(pb *testing.PB) {
				k := int(start.Add(997)) % len(list)
				for pb.Next() {
					if _, ok := l.Get(list[k], t0); !ok {
						b.Error("miss")
						return
					}
					if k++; k == len(list) {
						k = 0
					}
				}
			})
			// CPU time, not wall time: on a shared machine it is what
			// stays comparable between runs (spinning on a lock counts).
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
