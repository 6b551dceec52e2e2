package cache

import (
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// TestStripedCounterExportsAsAPrometheusCounter: counted from many
// goroutines at once, a striped counter gathers exactly as a
// prometheus.Counter counted alike does — same name, help, type, value
// and a created timestamp — and two caches on one registry count into one.
func TestStripedCounterExportsAsAPrometheusCounter(t *testing.T) {
	const name, help = "gdprgate_cache_facts_hits_total", "Facts served from the local cache."
	plainReg, stripedReg := prometheus.NewRegistry(), prometheus.NewRegistry()
	plain := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	plainReg.MustRegister(plain)
	a := stripedCounterOf(stripedReg, name, help)
	b := stripedCounterOf(stripedReg, name, help)
	if a != b {
		t.Fatal("a second counter of the same name on one registry is not the first")
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 + g {
				plain.Inc()
				if g%2 == 0 {
					a.Inc()
				} else {
					b.Inc()
				}
			}
		}()
	}
	wg.Wait()
	gather := func(reg *prometheus.Registry) *dto.MetricFamily {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil || len(mfs) != 1 {
			t.Fatalf("gathered %v, %v", mfs, err)
		}
		m := mfs[0].GetMetric()[0]
		if m.GetCounter().GetCreatedTimestamp() == nil {
			t.Fatalf("%s: no created timestamp", name)
		}
		m.GetCounter().CreatedTimestamp = nil // the instants differ
		return mfs[0]
	}
	want, got := gather(plainReg), gather(stripedReg)
	if !proto.Equal(want, got) {
		t.Fatalf("striped counter gathers as\n%v\nwant\n%v", got, want)
	}
	if v := got.GetMetric()[0].GetCounter().GetValue(); v != 16*1000+120 {
		t.Fatalf("value %v, want %v", v, 16*1000+120)
	}
}

// TestLocalCountsIntoItsMetrics: each Count* adds one to its own metric.
func TestLocalCountsIntoItsMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := NewLocal(Options{Registerer: reg})
	l.CountHit()
	l.CountHit()
	l.CountMiss()
	l.CountStale()
	l.CountStale()
	l.CountStale()
	l.CountUnavailable()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetType() != dto.MetricType_COUNTER {
			t.Fatalf("%s is a %v", mf.GetName(), mf.GetType())
		}
		got[mf.GetName()] = mf.GetMetric()[0].GetCounter().GetValue()
	}
	want := map[string]float64{
		"gdprgate_cache_facts_hits_total": 2, "gdprgate_cache_facts_misses_total": 1,
		"gdprgate_cache_facts_evictions_total": 0, "gdprgate_cache_facts_stale_total": 3,
		"gdprgate_cache_unavailable_total": 1,
	}
	if len(got) != len(want) {
		t.Fatalf("metrics %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s = %v, want %v", k, got[k], v)
		}
	}
}

// BenchmarkCounterParallel: a count per list item from concurrent
// answers, prometheus.Counter vs stripedCounter.
//
//	go test ./cache/ -run '^$' -bench CounterParallel -cpu 1,2,16
func BenchmarkCounterParallel(b *testing.B) {
	b.Run("prometheus", func(b *testing.B) {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x", Help: "x"})
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.Inc()
			}
		})
	})
	b.Run("striped", func(b *testing.B) {
		c := newStripedCounter("x", "x")
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.Inc()
			}
		})
	})
}
