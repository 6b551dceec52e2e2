package cache

import (
	"hash/maphash"
	"math"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gdprgate/gdprgate/policy/model"
)

// Local is the read-through cache both Store implementations put in front of
// their data: the current register index and the computed Facts of recently
// asked subjects (bounded in entries and in bytes, least recently used
// evicted, approximately — see below for how far).
//
// A cached Facts entry is served only while the registers it was computed
// with are current and strictly before its State.Next, so a transition is
// never missed. For a remote store Local also tracks the last successful
// contact: while disconnected, entries are served marked Stale up to
// Options.MaxStaleness after it, then not at all (callers fail closed).
//
// The entries are split into shards by a hash of the subject id, each with
// its own mutex, index and order of use, so that the lookups of concurrent
// answers (a 1 MB list is 2,300 of them) do not queue on one lock. The
// bounds are the whole cache's (a reservation taken before an insert, so
// they hold whatever the concurrency); the entry evicted to make room is
// one of the w least recently used of the shard the new one goes to, or,
// when that shard has none left, of the others in turn, w the shard's
// window (a quarter of its share of the cache, see shard.touch): with a
// window of 1, the least recently used.
//
// A warm Get takes no lock (see shard) and makes no allocation. The Facts it
// returns share their Grants slice with the cache (and with the entries
// whose facts are equal): treat it as read-only.
type Local struct {
	maxSubjects  int
	maxBytes     int64
	maxStaleness time.Duration
	clock        func() time.Time

	index atomic.Pointer[model.Index]
	// gen counts invalidations. A reader notes it before reading the
	// backing store and Put refuses the result when it moved meanwhile, so
	// a slow read can never re-cache what an invalidation just dropped.
	// It moves before the shards are cleared, and Put reads it under its
	// shard's mutex.
	gen atomic.Uint64

	connected   atomic.Bool
	lastContact atomic.Int64 // Clock() unix nanoseconds
	// watchdog marks the store disconnected when no contact was recorded
	// for watchEvery (see ExpectContactEvery); nil when not armed.
	watchMu    sync.Mutex
	watchdog   *time.Timer
	watchEvery time.Duration

	// entityNames holds one copy of each entity name (see cloneRef).
	entityNames sync.Map
	entityCount atomic.Int32

	seed maphash.Seed
	// hashMask is ANDed onto every id's hash: all ones, except in tests
	// that force collisions.
	hashMask uint64
	// shift takes a hash's shard from its top bits (64 with one shard:
	// a shift by the width is 0).
	shift  uint
	shards []shard
	// reserved counts the entries held plus the inserts under way, and
	// reservedBytes their sizes: an insert reserves first and goes ahead
	// only once the reservation is within the bounds, so the entries held
	// never exceed them, whichever shards the concurrent inserts go to.
	reserved      atomic.Int64
	reservedBytes atomic.Int64
	// withParent counts the entries whose subject inherits evidence, plus
	// the inserts of such entries under way (counted before they read
	// gen): Invalidate scans the shards for children only when it is not
	// 0, and cannot miss a child whose insert read gen before it moved.
	withParent atomic.Int64
	// victim is where the search for room in the other shards goes next.
	victim atomic.Uint32

	hits, misses, evictions, stale, unavailable *stripedCounter
}

// NewLocal returns an empty cache, connected as of now. Its metrics are
// registered on opts.Registerer when set (a collector already registered
// under the same name is reused, so several stores may share a registry).
func NewLocal(opts Options) *Local {
	opts = opts.WithDefaults()
	return newLocal(opts, shardsFor(opts.MaxSubjects))
}

// newLocal is NewLocal with n shards (a power of two).
func newLocal(opts Options, n int) *Local {
	l := &Local{
		maxSubjects:  opts.MaxSubjects,
		maxBytes:     opts.MaxBytes,
		maxStaleness: opts.MaxStaleness,
		clock:        opts.Clock,
		seed:         maphash.MakeSeed(),
		hashMask:     math.MaxUint64,
		shift:        uint(64 - bits.TrailingZeros(uint(n))),
		shards:       make([]shard, n),
	}
	for i := range l.shards {
		s := &l.shards[i]
		s.free = none
		s.capSubjects = int64(opts.MaxSubjects / n)
		s.capBytes = opts.MaxBytes / int64(n)
		s.window.Store(max(1, s.capSubjects/4))
	}
	l.hits = stripedCounterOf(opts.Registerer, "gdprgate_cache_facts_hits_total", "Facts served from the local cache.")
	l.misses = stripedCounterOf(opts.Registerer, "gdprgate_cache_facts_misses_total", "Facts computed from the backing store.")
	l.evictions = stripedCounterOf(opts.Registerer, "gdprgate_cache_facts_evictions_total", "Cached Facts evicted to respect MaxSubjects or MaxBytes.")
	l.stale = stripedCounterOf(opts.Registerer, "gdprgate_cache_facts_stale_total", "Facts served stale while the backing store was unreachable.")
	l.unavailable = stripedCounterOf(opts.Registerer, "gdprgate_cache_unavailable_total", "Reads refused because the backing store was unreachable for longer than MaxStaleness.")
	l.MarkContact()
	return l
}

// Index is the cached register index, or nil when none is cached.
func (l *Local) Index() *model.Index { return l.index.Load() }

// SetIndex caches ix. A version different from the cached one drops every
// cached Facts entry, which were computed with the old registers.
func (l *Local) SetIndex(ix *model.Index) {
	old := l.index.Swap(ix)
	if old == nil || ix == nil || old.Version != ix.Version {
		l.InvalidateAll()
	}
}

// DropIndex forgets the cached registers (and with them every Facts entry).
func (l *Local) DropIndex() {
	l.index.Store(nil)
	l.InvalidateAll()
}

// Gen is the invalidation generation to pass to Put.
func (l *Local) Gen() uint64 { return l.gen.Load() }

// MarkContact records a successful exchange with the backing store.
func (l *Local) MarkContact() {
	l.lastContact.Store(l.clock().UnixNano())
	l.connected.Store(true)
	l.watchMu.Lock()
	if l.watchdog != nil {
		l.watchdog.Reset(l.watchEvery)
	}
	l.watchMu.Unlock()
}

// ExpectContactEvery arms a watchdog: when no MarkContact comes for d, the
// store counts as disconnected and cached entries are served Stale (then
// not at all past MaxStaleness). A health loop stuck on a hung server
// therefore cannot keep stale entries looking fresh. StopWatchdog disarms.
func (l *Local) ExpectContactEvery(d time.Duration) {
	l.watchMu.Lock()
	defer l.watchMu.Unlock()
	if l.watchdog != nil {
		l.watchdog.Stop()
	}
	l.watchEvery = d
	l.watchdog = time.AfterFunc(d, l.MarkDisconnected)
}

// StopWatchdog disarms ExpectContactEvery.
func (l *Local) StopWatchdog() {
	l.watchMu.Lock()
	defer l.watchMu.Unlock()
	if l.watchdog != nil {
		l.watchdog.Stop()
		l.watchdog = nil
	}
}

// MarkDisconnected records that the backing store stopped answering. Cached
// entries are then served Stale until MaxStaleness after the last contact.
func (l *Local) MarkDisconnected() { l.connected.Store(false) }

// Connected reports whether the backing store answered last time it was asked.
func (l *Local) Connected() bool { return l.connected.Load() }

// Servable reports whether cached entries may be served now, and whether
// they must then be marked Stale.
func (l *Local) Servable() (ok, stale bool) {
	if l.connected.Load() {
		return true, false
	}
	age := time.Duration(l.clock().UnixNano() - l.lastContact.Load())
	return age < l.maxStaleness, true
}

// hash is ref's id's hash, which picks its shard and its place there.
// The entity is left out (one id under two entities shares a hash, and
// the entry tells them apart): entities are a handful.
func (l *Local) hash(id string) uint64 { return maphash.String(l.seed, id) & l.hashMask }

func (l *Local) shardOf(h uint64) *shard { return &l.shards[h>>l.shift] }

// Get returns the cached Facts of ref valid at now, if any. It does not look
// at connectivity (see Servable) nor count hits: the Store does both.
//
// A hit of an id of at most inlineID bytes writes nothing but, once in a
// window of uses, its entry's recency (see shard.peek and shard.touch):
// concurrent answers reading the same subjects on several cores do not
// pass a lock's cache line between them. Anything
// else (a writer at work in the shard, a long id, an entry to drop) takes
// the shard's mutex.
func (l *Local) Get(ref model.SubjectRef, now time.Time) (Facts, bool) {
	var f Facts
	ok := l.GetTo(ref, now, &f)
	return f, ok
}

// GetTo is Get writing a hit's facts into dst (once: a 104-byte result
// copied at each call level costs a warm list item more than its lookup's
// arithmetic). On a miss dst is unchanged.
func (l *Local) GetTo(ref model.SubjectRef, now time.Time, dst *Facts) bool {
	ix := l.index.Load()
	if ix == nil {
		return false
	}
	h := l.hash(ref.ID)
	s := l.shardOf(h)
	if len(ref.ID) <= inlineID {
		if hit, sure := s.peek(h, ref, now, ix.Version, dst); sure {
			return hit
		}
	}
	s.mu.Lock()
	i := s.find(h, ref)
	if i == none {
		s.mu.Unlock()
		return false
	}
	ents := s.ents.Load()
	v := s.valueOf(&ents.hot[i])
	if now.Before(v.at) {
		// Computed for a later instant (a concurrent decision's): facts
		// hold from their instant to Next, and what held before is not
		// known: an unknown subject's grace, for one, runs from its first
		// reading. A miss; the entry stays for later readers.
		s.mu.Unlock()
		return false
	}
	if outdated(&v.facts, now, ix.Version) {
		// Outdated: computed with older registers, or the state may have
		// moved on. Drop it so the next reader recomputes.
		s.begin()
		l.remove(s, i)
		s.end()
		s.mu.Unlock()
		return false
	}
	*dst = v.facts
	s.touch(&ents.stamps[i])
	s.mu.Unlock()
	return true
}

// outdated reports whether f, cached, no longer holds at now under the
// registers of version: computed with others, or its state may have moved
// on at Next.
func outdated(f *Facts, now time.Time, version int64) bool {
	return f.RegistersVersion != version || (!f.State.Next.IsZero() && !now.Before(f.State.Next))
}

// Put caches f, the facts of ref at the instant at, unless an invalidation
// happened since gen was read. They are served from at until their Next.
// parent is the subject whose evidence ref inherits (nil: none), so that a
// change of the parent drops the child too. The subject strings are copied:
// an entry never pins the request buffer an id was cut from. An entry
// larger than the whole byte budget is not cached.
func (l *Local) Put(ref model.SubjectRef, parent *model.SubjectRef, f Facts, at time.Time, gen uint64) {
	size := entrySize(ref, parent, f)
	if size > l.maxBytes {
		return
	}
	ne := newEntry{cold: cold{ref: l.cloneRef(ref), size: size}, facts: f, at: at, id: idWords(ref.ID)}
	if parent != nil {
		ne.cold.parent, ne.cold.hasParent = l.cloneRef(*parent), true
		// Counted before gen is read (see withParent).
		l.withParent.Add(1)
	}
	ne.cold.hash = l.hash(ref.ID)
	s := l.shardOf(ne.cold.hash)
	s.lock()
	if !l.insert(s, &ne, gen) {
		if ne.cold.hasParent {
			l.withParent.Add(-1)
		}
	}
	s.unlock()
}

// newEntry is an entry on its way in.
type newEntry struct {
	id    [3]uint64 // see idWords
	cold  cold
	facts Facts
	at    time.Time
}

// insert puts ne in s (locked for writing) once there is room, unless gen
// moved. It may unlock s meanwhile, to make room in other shards.
func (l *Local) insert(s *shard, ne *newEntry, gen uint64) bool {
	if l.gen.Load() != gen {
		return false
	}
	if old := s.find(ne.cold.hash, ne.cold.ref); old != none {
		l.remove(s, old)
	}
	n, b := l.reserved.Add(1), l.reservedBytes.Add(ne.cold.size)
	// Make room first: with a cache smaller than the subjects asked for,
	// nearly every miss evicts one, and its slot is the one reused.
	for n > int64(l.maxSubjects) || b > l.maxBytes {
		lru := s.oldest()
		if lru == none {
			break
		}
		l.remove(s, lru)
		l.evictions.Inc()
		n, b = l.reserved.Load(), l.reservedBytes.Load()
	}
	if n > int64(l.maxSubjects) || b > l.maxBytes {
		// This shard is empty; the room is in the others. Never hold
		// two shards' mutexes: another insert may be doing the same.
		s.unlock()
		ok := l.evictElsewhere(s)
		s.lock()
		if ok && l.gen.Load() == gen {
			if old := s.find(ne.cold.hash, ne.cold.ref); old != none {
				l.remove(s, old) // put meanwhile: this one is as recent
			}
		} else {
			l.reserved.Add(-1)
			l.reservedBytes.Add(-ne.cold.size)
			return false
		}
	}
	i := s.slot()
	ne.cold.next = none
	s.cold[i] = ne.cold
	e := &s.ents.Load().hot[i]
	for k, w := range ne.id {
		e.id[k].Store(w)
	}
	e.value.Store(uint32(s.share(ne.cold.ref.Entity, &ne.facts, ne.at)) + 1)
	if ne.cold.hasParent {
		s.withParent++
	}
	s.count++
	s.bytes += ne.cold.size
	s.index(ne.cold.hash, i)
	s.push(i)
	return true
}

// share returns the place of a value holding (entity, at, f) with one
// more reference: a recent one equal to it, or else a new one; locked for
// writing.
func (s *shard) share(entity string, f *Facts, at time.Time) int32 {
	h := valueHash(entity, f, at)
	r := &s.recent[h%uint64(len(s.recent))]
	if k := *r - 1; k >= 0 {
		if v := &s.vals.Load().v[k]; v.hash == h && v.entity == entity && v.at == at && sameFacts(&v.facts, f) {
			s.refs[k]++
			return k
		}
	}
	vals := s.vals.Load()
	if vals == nil || int(s.nvals) == len(vals.v) {
		vals = s.compactValues()
	}
	k := s.nvals
	s.nvals++
	s.liveVals++
	vals.v[k] = value{entity: entity, at: at, facts: *f, hash: h}
	s.refs[k] = 1
	*r = k + 1
	return k
}

// release drops a reference to the value at place k. The last leaves the
// place dead (a lock-free reader may still be reading it) until the
// array is next compacted; locked for writing.
func (s *shard) release(k int32) {
	if s.refs[k]--; s.refs[k] > 0 {
		return
	}
	s.liveVals--
	if r := &s.recent[s.vals.Load().v[k].hash%uint64(len(s.recent))]; *r == k+1 {
		*r = 0
	}
}

// compactValues replaces the values array, full, by one holding only its
// live values with room for as many again (the dead ones' strings and
// grants go with the old array), and moves the entries' value places to
// match; locked for writing.
func (s *shard) compactValues() *valueArray {
	old := s.vals.Load()
	n := max(16, 2*int(s.liveVals))
	next := &valueArray{v: make([]value, n)}
	refs := make([]int32, n)
	var moved []int32 // old place -> new place + 1
	if old != nil {
		moved = make([]int32, s.nvals)
		k := int32(0)
		for i := range s.nvals {
			if s.refs[i] > 0 {
				next.v[k], refs[k], moved[i] = old.v[i], s.refs[i], k+1
				k++
			}
		}
		s.nvals = k
		if ents := s.ents.Load(); ents != nil {
			for i := range s.slots {
				if e := &ents.hot[i]; e.value.Load() != 0 {
					e.value.Store(uint32(moved[e.value.Load()-1]))
				}
			}
		}
		for j, r := range s.recent {
			if r > 0 {
				s.recent[j] = moved[r-1]
			}
		}
	}
	s.refs = refs
	s.vals.Store(next)
	return next
}

// valueHash mixes what tells values apart, cheaply: equal values hash
// alike; sameFacts decides.
func valueHash(entity string, f *Facts, at time.Time) uint64 {
	st := &f.State
	h := uint64(len(entity))<<56 ^ uint64(at.UnixNano()) ^ uint64(f.RegistersVersion)*0x9e3779b97f4a7c15
	for _, x := range [...]uint64{
		uint64(st.Active) | uint64(st.Archived)<<32,
		uint64(st.Expired) | uint64(st.Obliviated)<<32,
		uint64(st.Covered) | uint64(st.CoveredExplicit)<<32,
		uint64(st.CoveredInherited) | uint64(st.Coverage)<<32 | uint64(len(st.Grants))<<40,
		uint64(st.Next.UnixNano()),
	} {
		h = (h ^ x) * 0xbf58476d1ce4e5b9
		h ^= h >> 31
	}
	return h
}

// sameFacts reports whether a and b are equal field for field (times
// compared as values, not instants: a shared value is returned as it was
// put). TestSameFactsKnowsEveryField keeps it up to date.
func sameFacts(a, b *Facts) bool {
	x, y := &a.State, &b.State
	return a.Known == b.Known && a.Restricted == b.Restricted && a.RegistersVersion == b.RegistersVersion &&
		a.Origin == b.Origin && a.Stale == b.Stale &&
		x.Active == y.Active && x.Archived == y.Archived && x.Expired == y.Expired && x.Obliviated == y.Obliviated &&
		x.Covered == y.Covered && x.CoveredExplicit == y.CoveredExplicit && x.CoveredInherited == y.CoveredInherited &&
		x.Coverage == y.Coverage && x.Next == y.Next && slices.Equal(x.Grants, y.Grants)
}

// evictElsewhere evicts the least recently used entries of the shards
// other than own, in turn, until the reservations are within the bounds;
// false when there is nothing left to evict (the inserts under way fill
// the cache).
func (l *Local) evictElsewhere(own *shard) bool {
	for {
		evicted := false
		for range l.shards {
			t := &l.shards[int(l.victim.Add(1))&(len(l.shards)-1)]
			if t == own {
				continue
			}
			t.lock()
			if lru := t.oldest(); lru != none {
				l.remove(t, lru)
				l.evictions.Inc()
				evicted = true
			}
			t.unlock()
			if l.reserved.Load() <= int64(l.maxSubjects) && l.reservedBytes.Load() <= l.maxBytes {
				return true
			}
		}
		if !evicted {
			return false
		}
	}
}

// cloneRef copies r's id and shares its entity name: entity names come
// from the route map, not from requests, so they are few, and one copy of
// each spares an allocation per miss and an object per cached entry (the
// garbage collector marks every object of a large cache on each cycle).
func (l *Local) cloneRef(r model.SubjectRef) model.SubjectRef {
	return model.SubjectRef{Entity: l.entityName(r.Entity), ID: strings.Clone(r.ID)}
}

// maxEntityNames bounds the shared entity names (past it, names are
// copied per entry as before).
const maxEntityNames = 256

func (l *Local) entityName(e string) string {
	if v, ok := l.entityNames.Load(e); ok {
		return v.(string)
	}
	c := strings.Clone(e)
	if l.entityCount.Add(1) > maxEntityNames {
		l.entityCount.Add(-1)
		return c
	}
	v, loaded := l.entityNames.LoadOrStore(c, c)
	if loaded {
		l.entityCount.Add(-1)
	}
	return v.(string)
}

// Invalidate drops ref and every cached subject inheriting from it.
func (l *Local) Invalidate(ref model.SubjectRef) {
	l.gen.Add(1)
	h := l.hash(ref.ID)
	s := l.shardOf(h)
	s.lock()
	if i := s.find(h, ref); i != none {
		l.remove(s, i)
	}
	s.unlock()
	if l.withParent.Load() == 0 {
		return
	}
	for k := range l.shards {
		t := &l.shards[k]
		t.mu.Lock()
		if t.withParent > 0 {
			t.begin()
			for i := 0; t.withParent > 0 && i < len(t.cold); i++ {
				if e := &t.cold[i]; e.hasParent && e.parent == ref {
					l.remove(t, int32(i))
				}
			}
			t.end()
		}
		t.mu.Unlock()
	}
}

// InvalidateAll drops every cached Facts entry.
func (l *Local) InvalidateAll() {
	l.gen.Add(1)
	for k := range l.shards {
		s := &l.shards[k]
		s.lock()
		l.reserved.Add(-int64(s.count))
		l.reservedBytes.Add(-s.bytes)
		l.withParent.Add(-int64(s.withParent))
		s.tab.Store(nil)
		s.ents.Store(nil) // the strings and grants go with them
		s.vals.Store(nil)
		s.cold, s.refs, s.heap = nil, nil, nil
		s.recent = [len(s.recent)]int32{}
		s.free, s.slots, s.nvals, s.liveVals, s.count, s.withParent, s.bytes = none, 0, 0, 0, 0, 0, 0
		s.unlock()
	}
}

// Len is the number of cached subjects.
func (l *Local) Len() int {
	n := 0
	for k := range l.shards {
		s := &l.shards[k]
		s.mu.Lock()
		n += s.count
		s.mu.Unlock()
	}
	return n
}

// Bytes is the estimated memory held by the cached entries.
func (l *Local) Bytes() int64 {
	var n int64
	for k := range l.shards {
		s := &l.shards[k]
		s.mu.Lock()
		n += s.bytes
		s.mu.Unlock()
	}
	return n
}

// CountHit, CountMiss, CountStale and CountUnavailable feed the metrics.
func (l *Local) CountHit()         { l.hits.Inc() }
func (l *Local) CountMiss()        { l.misses.Inc() }
func (l *Local) CountStale()       { l.stale.Inc() }
func (l *Local) CountUnavailable() { l.unavailable.Inc() }
