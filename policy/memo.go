package policy

import (
	"hash/maphash"
	"sync"
)

const memoShards = 16

// memo is one generation of memoised decisions. It is never cleared in
// place: Invalidate and Reload swap in a fresh one, so an evaluation that
// started under an old policy can only store into the old, discarded memo.
type memo struct {
	seed     maphash.Seed
	perShard int
	shards   [memoShards]memoShard
}

type memoShard struct {
	mu sync.RWMutex
	m  map[Facts]Decision
	// pad keeps shards on separate cache lines under concurrent reads.
	_ [40]byte
}

func newMemo(size int) *memo {
	m := &memo{seed: maphash.MakeSeed(), perShard: max(size/memoShards, 1)}
	for i := range m.shards {
		m.shards[i].m = make(map[Facts]Decision)
	}
	return m
}

// shard picks a shard from the fields that vary most between subjects and
// callers; it need not be a good hash, only spread the load.
func (m *memo) shard(f *Facts) *memoShard {
	h := maphash.String(m.seed, f.Roles)
	h ^= uint64(f.Active)*0x9e3779b97f4a7c15 ^ uint64(f.Archived)<<7 ^ uint64(f.Expired)<<13 ^
		uint64(f.Obliviated)<<19 ^ uint64(len(f.RouteKind))<<29
	if f.Restricted {
		h ^= 0x5bd1e995
	}
	h ^= h >> 33
	return &m.shards[h%memoShards]
}

func (m *memo) get(f *Facts) (Decision, bool) {
	s := m.shard(f)
	s.mu.RLock()
	d, ok := s.m[*f]
	s.mu.RUnlock()
	return d, ok
}

// put stores d. A full shard is emptied first: the memo stays bounded, and
// the few distinct Facts values in use refill it at one evaluation each.
func (m *memo) put(f *Facts, d Decision) {
	s := m.shard(f)
	s.mu.Lock()
	if len(s.m) >= m.perShard {
		clear(s.m)
	}
	s.m[*f] = d
	s.mu.Unlock()
}
