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
	"unsafe"

	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
)

// Local is the read-through cache both Store implementations put in front of
// their data: the current register index and the computed Facts of recently
// asked subjects (bounded in entries and in bytes, least recently used
// evicted — see below for how exactly).
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
// the least recently used of the shard the new one goes to, or, when that
// shard has none left, of the others in turn: an approximate LRU, exact
// for a cache of fewer than 2×minShardSubjects subjects, which has one
// shard.
//
// A warm Get takes one shard's mutex and makes no allocation. The Facts it
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

// shard is one part of the cache, its entries in slices linked by index,
// not as one object each: a full cache is 100,000 entries or more that the
// garbage collector marks on every cycle, and objects and pointers are
// what it pays for (the index and the hot half of the entries hold none).
//
// A warm lookup is dominated by memory: between two answers naming a
// subject, a megabyte of body went through the processor's caches. So
// what a hit reads is kept small and together: one word of the index,
// then the entry's hot half (32 bytes: its id when short, its value, its
// tick), then its value (entity, instant, facts), which entries with equal
// ones share — the subjects of a list, judged at one instant, mostly have
// a handful of distinct facts between them.
type shard struct {
	mu sync.Mutex
	// table is the index, open addressing with linear probing: each
	// word is the top 32 bits of an id's hash and its slot + 1, 0 when
	// empty. Kept at most half full.
	table []uint64
	hot   []hot
	cold  []cold
	free  int32 // first free slot (linked by cold.next), none: -1
	// values are the (entity, instant, facts) of the entries, shared by
	// the entries whose ones are equal (counted by refs); recent finds
	// the value of a new entry among those put last, by a hash of it.
	values     []value
	freeValue  int32 // linked by value.next, none: -1
	recent     [16]int32
	count      int
	withParent int   // entries whose subject inherits evidence
	bytes      int64 // sum of the entries' sizes
	// Recency: hot[i].tick is the instant (a counter) slot i was last
	// used, 0 when free; uses lists (slot, tick) in the order of use,
	// oldest first from usesHead. A use whose tick is no longer its
	// slot's is stale and skipped, so the first live one is the least
	// recently used entry — exact LRU within the shard, yet a hit writes
	// only its own tick and appends one record.
	tick     uint32
	uses     []use
	usesHead int
	// Shards sit side by side: keep one's mutex off its neighbours' cache
	// lines.
	_ [64]byte
}

// inlineID is the longest id kept in its entry's hot half.
const inlineID = 23

// hot is the half of an entry a hit reads.
type hot struct {
	value int32
	tick  uint32
	idLen uint8 // len(ref.ID) when it is at most inlineID, else more
	id    [inlineID]byte
}

// cold is the rest of an entry.
type cold struct {
	hash      uint64
	ref       model.SubjectRef
	parent    model.SubjectRef
	hasParent bool
	size      int64
	next      int32 // next free slot, none: -1
}

// value is what entries may share.
type value struct {
	entity string
	at     time.Time // the instant facts were computed for
	facts  Facts
	hash   uint64 // of the above (see valueHash)
	refs   int32
	next   int32 // next free value, none: -1
}

// use is one use of a slot, at a tick.
type use struct {
	slot int32
	tick uint32
}

const none = -1

const (
	// maxShards bounds the shards: past a few per core the lock is
	// rarely contended, and each shard costs a little memory.
	maxShards = 32
	// minShardSubjects is the fewest subjects a shard is sized for: the
	// fewer per shard, the further the eviction order is from the
	// cache-wide LRU.
	minShardSubjects = 256
)

// shardsFor is the number of shards of a cache of maxSubjects subjects:
// a power of two, 1 for a small cache.
func shardsFor(maxSubjects int) int {
	n := 1
	for n < maxShards && maxSubjects >= 2*n*minShardSubjects {
		n *= 2
	}
	return n
}

// entryOverhead approximates what an entry costs besides the bytes of its
// strings and grants: the struct, its index words and allocator rounding.
const entryOverhead = int64(unsafe.Sizeof(hot{})+unsafe.Sizeof(cold{})+unsafe.Sizeof(value{})) + 96

// entrySize is the memory an entry holds. Subject ids come from requests,
// so their length is the caller's choice: the byte bound is what keeps
// long ids from growing the cache past its budget.
func entrySize(ref model.SubjectRef, parent *model.SubjectRef, f Facts) int64 {
	n := entryOverhead + int64(len(ref.Entity)+len(ref.ID))
	if parent != nil {
		n += int64(len(parent.Entity) + len(parent.ID))
	}
	n += int64(cap(f.State.Grants)) * int64(unsafe.Sizeof(lifecycle.Grant{}))
	for _, g := range f.State.Grants {
		n += int64(len(g.ProjectID)) // legalisation ids are shared with the index
	}
	return n
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
		l.shards[i].free, l.shards[i].freeValue = none, none
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
func (l *Local) Get(ref model.SubjectRef, now time.Time) (Facts, bool) {
	ix := l.index.Load()
	if ix == nil {
		return Facts{}, false
	}
	h := l.hash(ref.ID)
	s := l.shardOf(h)
	s.mu.Lock()
	i := s.find(h, ref)
	if i == none {
		s.mu.Unlock()
		return Facts{}, false
	}
	v := &s.values[s.hot[i].value]
	if now.Before(v.at) {
		// Computed for a later instant (a concurrent decision's): facts
		// hold from their instant to Next, and what held before is not
		// known: an unknown subject's grace, for one, runs from its first
		// reading. A miss; the entry stays for later readers.
		s.mu.Unlock()
		return Facts{}, false
	}
	f := v.facts
	if f.RegistersVersion != ix.Version || (!f.State.Next.IsZero() && !now.Before(f.State.Next)) {
		// Outdated: computed with older registers, or the state may have
		// moved on. Drop it so the next reader recomputes.
		l.remove(s, i)
		s.mu.Unlock()
		return Facts{}, false
	}
	s.used(i)
	s.mu.Unlock()
	return f, true
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
	ne := newEntry{cold: cold{ref: l.cloneRef(ref), size: size}, facts: f, at: at}
	ne.hot.idLen = inlineID + 1
	if len(ref.ID) <= inlineID {
		ne.hot.idLen = uint8(len(ref.ID))
		copy(ne.hot.id[:], ref.ID)
	}
	if parent != nil {
		ne.cold.parent, ne.cold.hasParent = l.cloneRef(*parent), true
		// Counted before gen is read (see withParent).
		l.withParent.Add(1)
	}
	ne.cold.hash = l.hash(ref.ID)
	s := l.shardOf(ne.cold.hash)
	s.mu.Lock()
	if !l.insert(s, &ne, gen) {
		if ne.cold.hasParent {
			l.withParent.Add(-1)
		}
	}
	s.mu.Unlock()
}

// newEntry is an entry on its way in.
type newEntry struct {
	hot   hot
	cold  cold
	facts Facts
	at    time.Time
}

// insert puts ne in s (locked) once there is room, unless gen moved. It
// may unlock s meanwhile, to make room in other shards.
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
		s.mu.Unlock()
		ok := l.evictElsewhere(s)
		s.mu.Lock()
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
	i := s.free
	if i != none {
		s.free = s.cold[i].next
	} else {
		i = int32(len(s.hot))
		s.hot = append(s.hot, hot{})
		s.cold = append(s.cold, cold{})
	}
	ne.cold.next = none
	ne.hot.value = s.share(ne.cold.ref.Entity, &ne.facts, ne.at)
	s.hot[i], s.cold[i] = ne.hot, ne.cold
	if ne.cold.hasParent {
		s.withParent++
	}
	s.count++
	s.bytes += ne.cold.size
	s.index(ne.cold.hash, i)
	s.used(i)
	return true
}

// share returns a value holding (entity, at, f) with one more reference:
// a recent one equal to it, or else a new one.
func (s *shard) share(entity string, f *Facts, at time.Time) int32 {
	h := valueHash(entity, f, at)
	r := &s.recent[h%uint64(len(s.recent))]
	if k := *r - 1; k >= 0 {
		if v := &s.values[k]; v.hash == h && v.entity == entity && v.at == at && sameFacts(&v.facts, f) {
			v.refs++
			return k
		}
	}
	k := s.freeValue
	if k != none {
		s.freeValue = s.values[k].next
	} else {
		k = int32(len(s.values))
		s.values = append(s.values, value{})
	}
	s.values[k] = value{entity: entity, at: at, facts: *f, hash: h, refs: 1, next: none}
	*r = k + 1
	return k
}

// release drops a reference to value k, freeing it with the last.
func (s *shard) release(k int32) {
	v := &s.values[k]
	if v.refs--; v.refs > 0 {
		return
	}
	if r := &s.recent[v.hash%uint64(len(s.recent))]; *r == k+1 {
		*r = 0
	}
	*v = value{next: s.freeValue} // its grants are released at once
	s.freeValue = k
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
			t.mu.Lock()
			if lru := t.oldest(); lru != none {
				l.remove(t, lru)
				l.evictions.Inc()
				evicted = true
			}
			t.mu.Unlock()
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
	s.mu.Lock()
	if i := s.find(h, ref); i != none {
		l.remove(s, i)
	}
	s.mu.Unlock()
	if l.withParent.Load() == 0 {
		return
	}
	for k := range l.shards {
		t := &l.shards[k]
		t.mu.Lock()
		for i := 0; t.withParent > 0 && i < len(t.cold); i++ {
			if e := &t.cold[i]; e.hasParent && e.parent == ref {
				l.remove(t, int32(i))
			}
		}
		t.mu.Unlock()
	}
}

// InvalidateAll drops every cached Facts entry.
func (l *Local) InvalidateAll() {
	l.gen.Add(1)
	for k := range l.shards {
		s := &l.shards[k]
		s.mu.Lock()
		l.reserved.Add(-int64(s.count))
		l.reservedBytes.Add(-s.bytes)
		l.withParent.Add(-int64(s.withParent))
		s.table = nil
		s.hot, s.cold, s.values = nil, nil, nil // the strings and grants go with them
		s.recent = [len(s.recent)]int32{}
		s.uses, s.usesHead = nil, 0
		s.free, s.freeValue, s.count, s.withParent, s.bytes = none, none, 0, 0, 0
		s.mu.Unlock()
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

// find returns ref's slot, none when absent.
func (s *shard) find(h uint64, ref model.SubjectRef) int32 {
	if len(s.table) == 0 {
		return none
	}
	mask := len(s.table) - 1
	tag := h >> 32
	for p := int(h) & mask; ; p = (p + 1) & mask {
		w := s.table[p]
		if w == 0 {
			return none
		}
		if w>>32 != tag {
			continue
		}
		i := int32(uint32(w)) - 1
		if s.matches(i, ref) {
			return i
		}
	}
}

// matches reports whether slot i is ref's entry.
func (s *shard) matches(i int32, ref model.SubjectRef) bool {
	e := &s.hot[i]
	if len(ref.ID) <= inlineID {
		if int(e.idLen) != len(ref.ID) || unsafe.String(&e.id[0], len(ref.ID)) != ref.ID {
			return false
		}
	} else if s.cold[i].ref.ID != ref.ID {
		return false
	}
	return s.values[e.value].entity == ref.Entity
}

// position is the place of slot i, holding hash h, in s's table.
func (s *shard) position(h uint64, i int32) int {
	mask := len(s.table) - 1
	w := h>>32<<32 | uint64(uint32(i+1))
	p := int(h) & mask
	for s.table[p] != w {
		p = (p + 1) & mask
	}
	return p
}

// index records slot i, holding hash h, in s's table, doubling the table
// when it would be more than half full.
func (s *shard) index(h uint64, i int32) {
	if 2*s.count > len(s.table) {
		old := s.table
		s.table = make([]uint64, max(16, 2*len(old)))
		for _, w := range old {
			if w != 0 {
				s.place(s.cold[int32(uint32(w))-1].hash, w)
			}
		}
	}
	s.place(h, h>>32<<32|uint64(uint32(i+1)))
}

// place puts the index word w of hash h in the first empty word from h's
// position.
func (s *shard) place(h, w uint64) {
	mask := len(s.table) - 1
	p := int(h) & mask
	for s.table[p] != 0 {
		p = (p + 1) & mask
	}
	s.table[p] = w
}

// unindex removes the word at position p, moving back the words after it
// that would otherwise no longer be found (no tombstones: a table that
// sees an eviction per miss would fill with them).
func (s *shard) unindex(p int) {
	mask := len(s.table) - 1
	for q := (p + 1) & mask; ; q = (q + 1) & mask {
		w := s.table[q]
		if w == 0 {
			break
		}
		home := int(s.cold[int32(uint32(w))-1].hash) & mask
		// The word at q may move to p unless its home lies cyclically
		// in (p, q].
		if p <= q && (p < home && home <= q) || p > q && (p < home || home <= q) {
			continue
		}
		s.table[p] = w
		p = q
	}
	s.table[p] = 0
}

// remove drops slot i of s from the index and frees it (its strings and
// grants are released at once, not when the slot is reused). Its uses
// become stale: its tick is 0 until it is used again.
func (l *Local) remove(s *shard, i int32) {
	e := &s.cold[i]
	s.unindex(s.position(e.hash, i))
	s.count--
	s.bytes -= e.size
	l.reserved.Add(-1)
	l.reservedBytes.Add(-e.size)
	if e.hasParent {
		s.withParent--
		l.withParent.Add(-1)
	}
	s.release(s.hot[i].value)
	*e = cold{next: s.free}
	s.hot[i] = hot{}
	s.free = i
}

// used marks slot i as the most recently used.
func (s *shard) used(i int32) {
	if s.tick == math.MaxUint32 {
		s.renumber()
	}
	s.tick++
	s.hot[i].tick = s.tick
	if n := len(s.uses) - s.usesHead; n > 2*s.count+64 || len(s.uses) == cap(s.uses) && s.usesHead >= n {
		// Mostly stale uses (each live entry has exactly one live use,
		// its last), or a full slice mostly consumed: keep the live ones
		// rather than grow. Amortised over the uses appended since the
		// last time, a few reads of ticks each.
		s.compact()
	}
	s.uses = append(s.uses, use{slot: i, tick: s.tick})
}

// compact keeps only the live uses, in order.
func (s *shard) compact() {
	n := 0
	for _, u := range s.uses[s.usesHead:] {
		if s.hot[u.slot].tick == u.tick {
			s.uses[n] = u
			n++
		}
	}
	s.uses, s.usesHead = s.uses[:n], 0
}

// renumber gives the live uses the ticks 1, 2, … in their order, when
// the counter is about to wrap (once per 4 billion uses).
func (s *shard) renumber() {
	s.compact()
	for k := range s.uses {
		u := &s.uses[k]
		u.tick = uint32(k + 1)
		s.hot[u.slot].tick = u.tick
	}
	s.tick = uint32(len(s.uses))
}

// oldest returns the least recently used slot (none when the shard is
// empty), dropping the stale uses before it.
func (s *shard) oldest() int32 {
	for s.usesHead < len(s.uses) {
		u := s.uses[s.usesHead]
		if s.hot[u.slot].tick == u.tick {
			return u.slot
		}
		s.usesHead++
	}
	s.uses, s.usesHead = s.uses[:0], 0
	return none
}
