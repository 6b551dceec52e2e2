package policy

import (
	"math/rand/v2"
	"sync"
)

const memoShards = 16

// memo is one generation of memoised decisions. It is never cleared in
// place: Invalidate and Reload swap in a fresh one, so an evaluation that
// started under an old policy can only store into the old, discarded memo.
//
// Keys are a cheap hash of Facts computed once per lookup, with collisions
// resolved by comparing Facts: a Go map keyed by Facts itself would hash its
// four strings with the runtime's generic struct hash, which costs more than
// the rest of a memo hit together.
type memo struct {
	seed     uint64
	perShard int
	shards   [memoShards]memoShard
}

type memoEntry struct {
	facts    Facts
	decision Decision
}

type memoShard struct {
	mu sync.RWMutex
	m  map[uint64][]memoEntry
	n  int
	// pad keeps shards on separate cache lines under concurrent reads.
	_ [40]byte
}

func newMemo(size int) *memo {
	m := &memo{seed: rand.Uint64(), perShard: max(size/memoShards, 1)}
	for i := range m.shards {
		m.shards[i].m = make(map[uint64][]memoEntry)
	}
	return m
}

const (
	fnvPrime = 0x100000001b3
	mixMul   = 0x9e3779b97f4a7c15
)

func hashString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime
	}
	return (h ^ uint64(len(s))) * fnvPrime
}

func mix(h, x uint64) uint64 {
	h = (h ^ x) * mixMul
	return h ^ h>>29
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// hash covers every field of Facts; the strings are short (route kind,
// roles, coverage), so a byte loop beats a general-purpose string hash.
func (m *memo) hash(f *Facts) uint64 {
	h := m.seed
	h = hashString(h, f.RouteKind)
	h = hashString(h, f.CommType)
	h = hashString(h, f.Roles)
	h = hashString(h, f.Coverage)
	flags := b2u(f.Enforced) | b2u(f.Authenticated)<<1 | b2u(f.ViewArchived)<<2 |
		b2u(f.ViewExpired)<<3 | b2u(f.ExportEvidence)<<4 | b2u(f.EditItems)<<5 |
		b2u(f.ArchiveMode)<<6 | b2u(f.SubjectPresent)<<7 | b2u(f.SubjectKnown)<<8 |
		b2u(f.Restricted)<<9 | b2u(f.CommPermitted)<<10 | b2u(f.Unavailable)<<11 |
		b2u(f.FailOpen)<<12 | b2u(f.EditEvidence)<<13 | b2u(f.GdprPermission)<<14
	h = mix(h, uint64(f.SensitivityMask)<<32|uint64(f.Active))
	h = mix(h, uint64(f.Archived)<<32|uint64(f.Expired))
	h = mix(h, uint64(f.Obliviated)<<32|flags)
	h = mix(h, uint64(f.CoverageExplicit)<<32|uint64(f.CoverageInherited))
	h = mix(h, uint64(f.WriteMask))
	return h
}

func (m *memo) shard(h uint64) *memoShard { return &m.shards[h>>60%memoShards] }

func (m *memo) get(f *Facts) (Decision, bool) {
	h := m.hash(f)
	s := m.shard(h)
	s.mu.RLock()
	bucket := s.m[h]
	for i := range bucket {
		if e := &bucket[i]; e.facts == *f {
			d := e.decision
			s.mu.RUnlock()
			return d, true
		}
	}
	s.mu.RUnlock()
	return Decision{}, false
}

// put stores d. A full shard is emptied first: the memo stays bounded, and
// the few distinct Facts values in use refill it at one evaluation each.
func (m *memo) put(f *Facts, d Decision) {
	h := m.hash(f)
	s := m.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.m[h] {
		if e.facts == *f {
			return // a concurrent miss stored it already
		}
	}
	if s.n >= m.perShard {
		clear(s.m)
		s.n = 0
	}
	s.m[h] = append(s.m[h], memoEntry{facts: *f, decision: d})
	s.n++
}

// len is the number of memoised decisions.
func (m *memo) len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		n += s.n
		s.mu.RUnlock()
	}
	return n
}
