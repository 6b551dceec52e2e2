package cache

import (
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gdprgate/gdprgate/internal/observe"
)

// counterStripes is how many slots a stripedCounter spreads its counts
// over.
const (
	stripeBits     = 5
	counterStripes = 1 << stripeBits
)

// stripedCounter is a Prometheus counter for counts taken once per list
// item (hits): a plain counter is one word that every core increments, so
// concurrent answers on two cores pass its cache line back and forth on
// every item. This one keeps its count in slots of a cache line each,
// chosen by the counting goroutine's stack, and sums them when scraped.
// It is exported exactly as prometheus.NewCounter would be (name, help,
// type, value, created timestamp).
type stripedCounter struct {
	desc    *prometheus.Desc
	created time.Time
	slots   [counterStripes]struct {
		n atomic.Uint64
		_ [56]byte
	}
}

func newStripedCounter(name, help string) *stripedCounter {
	return &stripedCounter{desc: prometheus.NewDesc(name, help, nil, nil), created: time.Now()}
}

// stripedCounterOf returns the counter registered on reg under name (a
// new one when none is, or reg is nil), so several caches on one registry
// count together as they did with one prometheus.Counter.
func stripedCounterOf(reg prometheus.Registerer, name, help string) *stripedCounter {
	return observe.Register(reg, newStripedCounter(name, help))
}

// Inc adds one in the slot of the calling goroutine.
func (c *stripedCounter) Inc() {
	c.slots[stripe()].n.Add(1)
}

// stripe picks a slot from the address of the caller's stack: goroutines'
// stacks lie apart, so concurrent counters mostly write their own slot,
// which stays in the cache of the core running them. Any slot is correct:
// only locality depends on it.
func stripe() int {
	var b byte
	p := uint64(uintptr(unsafe.Pointer(&b))) >> 11
	return int((p * 0x9e3779b97f4a7c15) >> (64 - stripeBits))
}

// Value is the sum of the slots.
func (c *stripedCounter) Value() uint64 {
	var n uint64
	for i := range c.slots {
		n += c.slots[i].n.Load()
	}
	return n
}

// Describe implements prometheus.Collector.
func (c *stripedCounter) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *stripedCounter) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetricWithCreatedTimestamp(c.desc, prometheus.CounterValue, float64(c.Value()), c.created)
}
