package cache

import (
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gdprgate/gdprgate/internal/observe"
	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
)

// Local is the read-through cache both Store implementations put in front of
// their data: the current register index and the computed Facts of recently
// asked subjects (bounded in entries and in bytes, least recently used
// evicted).
//
// A cached Facts entry is served only while the registers it was computed
// with are current and strictly before its State.Next, so a transition is
// never missed. For a remote store Local also tracks the last successful
// contact: while disconnected, entries are served marked Stale up to
// Options.MaxStaleness after it, then not at all (callers fail closed).
//
// A warm Get takes one mutex and makes no allocation. The Facts it returns
// share their Grants slice with the cache: treat it as read-only.
type Local struct {
	maxSubjects  int
	maxBytes     int64
	maxStaleness time.Duration
	clock        func() time.Time

	index atomic.Pointer[model.Index]
	// gen counts invalidations. A reader notes it before reading the
	// backing store and Put refuses the result when it moved meanwhile, so
	// a slow read can never re-cache what an invalidation just dropped.
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

	mu sync.Mutex
	// ids maps an entity name, then a subject id, to the subject's slot
	// in slots. Two levels, not one map keyed by SubjectRef: entities are
	// a handful (found by comparing names, usually the same string), and
	// a lookup then hashes and compares the id alone.
	// The entries live in one slice, linked by index, not as one object
	// each: a full cache is 100,000 entries or more that the garbage
	// collector marks on every cycle, and objects and pointers are what
	// it pays for.
	ids        []entityIDs
	count      int
	slots      []entry
	free       int32 // first free slot (linked by next), none: -1
	withParent int   // entries whose subject inherits evidence
	bytes      int64 // sum of the entries' sizes
	// Recency: ticks[i] is the instant (a counter) slot i was last used,
	// 0 when free; uses lists (slot, tick) in the order of use, oldest
	// first from usesHead. A use whose tick is no longer its slot's is
	// stale and skipped, so the first live one is the least recently used
	// entry — exact LRU, yet a hit writes only its own tick and appends
	// one record, where a linked list rewrote two neighbours (cold memory
	// for a big cache: the misses were most of a hit's cost).
	tick     uint32
	ticks    []uint32
	uses     []use
	usesHead int

	hits, misses, evictions, stale, unavailable prometheus.Counter
}

type entry struct {
	facts     Facts
	at        time.Time // the instant facts were computed for
	ref       model.SubjectRef
	parent    model.SubjectRef
	hasParent bool
	size      int64
	next      int32 // next free slot, none: -1
}

// use is one use of a slot, at a tick.
type use struct {
	slot int32
	tick uint32
}

const none = -1

// entryOverhead approximates what an entry costs besides the bytes of its
// strings and grants: the struct, its map slot and allocator rounding.
const entryOverhead = int64(unsafe.Sizeof(entry{})) + 96

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
	l := &Local{
		maxSubjects:  opts.MaxSubjects,
		maxBytes:     opts.MaxBytes,
		maxStaleness: opts.MaxStaleness,
		clock:        opts.Clock,
		free:         none,
	}
	l.hits = counter(opts.Registerer, "gdprgate_cache_facts_hits_total", "Facts served from the local cache.")
	l.misses = counter(opts.Registerer, "gdprgate_cache_facts_misses_total", "Facts computed from the backing store.")
	l.evictions = counter(opts.Registerer, "gdprgate_cache_facts_evictions_total", "Cached Facts evicted to respect MaxSubjects or MaxBytes.")
	l.stale = counter(opts.Registerer, "gdprgate_cache_facts_stale_total", "Facts served stale while the backing store was unreachable.")
	l.unavailable = counter(opts.Registerer, "gdprgate_cache_unavailable_total", "Reads refused because the backing store was unreachable for longer than MaxStaleness.")
	l.MarkContact()
	return l
}

func counter(reg prometheus.Registerer, name, help string) prometheus.Counter {
	return observe.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
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

// Get returns the cached Facts of ref valid at now, if any. It does not look
// at connectivity (see Servable) nor count hits: the Store does both.
func (l *Local) Get(ref model.SubjectRef, now time.Time) (Facts, bool) {
	ix := l.index.Load()
	if ix == nil {
		return Facts{}, false
	}
	l.mu.Lock()
	i, ok := l.slot(ref)
	if !ok {
		l.mu.Unlock()
		return Facts{}, false
	}
	e := &l.slots[i]
	f := e.facts
	if now.Before(e.at) {
		// Computed for a later instant (a concurrent decision's): facts
		// hold from their instant to Next, and what held before is not
		// known: an unknown subject's grace, for one, runs from its first
		// reading. A miss; the entry stays for later readers.
		l.mu.Unlock()
		return Facts{}, false
	}
	if f.RegistersVersion != ix.Version || (!f.State.Next.IsZero() && !now.Before(f.State.Next)) {
		// Outdated: computed with older registers, or the state may have
		// moved on. Drop it so the next reader recomputes.
		l.remove(i)
		l.mu.Unlock()
		return Facts{}, false
	}
	l.used(i)
	l.mu.Unlock()
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
	ne := entry{ref: l.cloneRef(ref), facts: f, at: at, size: size}
	if parent != nil {
		ne.parent, ne.hasParent = l.cloneRef(*parent), true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gen.Load() != gen {
		return
	}
	if old, ok := l.slot(ref); ok {
		l.remove(old)
	}
	// Make room first: with a cache smaller than the subjects asked for,
	// nearly every miss evicts one, and its slot is the one reused.
	for l.count >= l.maxSubjects || l.bytes+size > l.maxBytes {
		lru := l.oldest()
		if lru == none {
			break
		}
		l.remove(lru)
		l.evictions.Inc()
	}
	i := l.free
	if i != none {
		l.free = l.slots[i].next
	} else {
		i = int32(len(l.slots))
		l.slots = append(l.slots, entry{})
		l.ticks = append(l.ticks, 0)
	}
	l.slots[i] = ne
	if ne.hasParent {
		l.withParent++
	}
	l.byID(ne.ref.Entity)[ne.ref.ID] = i
	l.count++
	l.bytes += ne.size
	l.used(i)
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
	l.mu.Lock()
	l.gen.Add(1)
	if i, ok := l.slot(ref); ok {
		l.remove(i)
	}
	if l.withParent > 0 {
		for i := range l.slots {
			if e := &l.slots[i]; e.hasParent && e.parent == ref {
				l.remove(int32(i))
			}
		}
	}
	l.mu.Unlock()
}

// InvalidateAll drops every cached Facts entry.
func (l *Local) InvalidateAll() {
	l.mu.Lock()
	l.gen.Add(1)
	l.ids = nil
	l.slots, l.ticks = nil, nil // the slots' strings and grants go with them
	l.uses, l.usesHead = nil, 0
	l.free, l.count, l.withParent, l.bytes = none, 0, 0, 0
	l.mu.Unlock()
}

// Len is the number of cached subjects.
func (l *Local) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count
}

// Bytes is the estimated memory held by the cached entries.
func (l *Local) Bytes() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bytes
}

// CountHit, CountMiss, CountStale and CountUnavailable feed the metrics.
func (l *Local) CountHit()         { l.hits.Inc() }
func (l *Local) CountMiss()        { l.misses.Inc() }
func (l *Local) CountStale()       { l.stale.Inc() }
func (l *Local) CountUnavailable() { l.unavailable.Inc() }

// entityIDs are the slots of one entity's subjects, by id.
type entityIDs struct {
	entity string
	ids    map[string]int32
}

// slot finds ref's slot.
func (l *Local) slot(ref model.SubjectRef) (int32, bool) {
	for k := range l.ids {
		if e := &l.ids[k]; e.entity == ref.Entity {
			i, ok := e.ids[ref.ID]
			return i, ok
		}
	}
	return none, false
}

// byID is the map of entity's slots by id, added when there is none.
func (l *Local) byID(entity string) map[string]int32 {
	for k := range l.ids {
		if e := &l.ids[k]; e.entity == entity {
			return e.ids
		}
	}
	m := make(map[string]int32)
	l.ids = append(l.ids, entityIDs{entity: l.entityName(entity), ids: m})
	return m
}

// remove drops slot i from the map and frees it (its strings and grants
// are released at once, not when the slot is reused). Its uses become
// stale: its tick is 0 until it is used again.
func (l *Local) remove(i int32) {
	e := &l.slots[i]
	for k := range l.ids {
		if ei := &l.ids[k]; ei.entity == e.ref.Entity {
			delete(ei.ids, e.ref.ID)
			if len(ei.ids) == 0 {
				// Entities come from the route map, so they are few;
				// none is kept empty, so they stay few.
				last := len(l.ids) - 1
				l.ids[k] = l.ids[last]
				l.ids[last] = entityIDs{}
				l.ids = l.ids[:last]
			}
			break
		}
	}
	l.count--
	l.bytes -= e.size
	if e.hasParent {
		l.withParent--
	}
	*e = entry{next: l.free}
	l.ticks[i] = 0
	l.free = i
}

// used marks slot i as the most recently used.
func (l *Local) used(i int32) {
	if l.tick == math.MaxUint32 {
		l.renumber()
	}
	l.tick++
	l.ticks[i] = l.tick
	if n := len(l.uses) - l.usesHead; n > 2*l.count+64 || len(l.uses) == cap(l.uses) && l.usesHead >= n {
		// Mostly stale uses (each live entry has exactly one live use,
		// its last), or a full slice mostly consumed: keep the live ones
		// rather than grow. Amortised over the uses appended since the
		// last time, a few reads of ticks each.
		l.compact()
	}
	l.uses = append(l.uses, use{slot: i, tick: l.tick})
}

// compact keeps only the live uses, in order.
func (l *Local) compact() {
	n := 0
	for _, u := range l.uses[l.usesHead:] {
		if l.ticks[u.slot] == u.tick {
			l.uses[n] = u
			n++
		}
	}
	l.uses, l.usesHead = l.uses[:n], 0
}

// renumber gives the live uses the ticks 1, 2, … in their order, when
// the counter is about to wrap (once per 4 billion uses).
func (l *Local) renumber() {
	l.compact()
	for k := range l.uses {
		u := &l.uses[k]
		u.tick = uint32(k + 1)
		l.ticks[u.slot] = u.tick
	}
	l.tick = uint32(len(l.uses))
}

// oldest returns the least recently used slot (none when the cache is
// empty), dropping the stale uses before it.
func (l *Local) oldest() int32 {
	for l.usesHead < len(l.uses) {
		u := l.uses[l.usesHead]
		if l.ticks[u.slot] == u.tick {
			return u.slot
		}
		l.usesHead++
	}
	l.uses, l.usesHead = l.uses[:0], 0
	return none
}
