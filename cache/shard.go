package cache

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
)

// shard is one part of the cache, its entries in slices linked by index,
// not as one object each: a full cache is 100,000 entries or more that the
// garbage collector marks on every cycle, and objects and pointers are
// what it pays for (the index holds none, an entry's hot half one).
//
// A warm lookup is dominated by memory: between two answers naming a
// subject, a megabyte of body went through the processor's caches. So
// what a hit reads is kept small and together: one word of the index,
// then the entry's hot half (32 bytes: its id when short and its value),
// then its value (entity, instant, facts), which entries with equal ones
// share — the subjects of a list, judged at one instant, mostly have a
// handful of distinct facts between them.
//
// Concurrent answers read the same subjects on several cores, so a hit
// writes no line another hit reads: it takes no lock (see peek), and
// stamps its entry again only once in a window of uses (see touch). What a
// lock-free reader reads — the index, the hot halves, the values — is
// read and written with atomic operations only, and changed only by a
// writer holding mu with seq odd; a reader that saw seq change retries
// under mu. Values are never changed once made: an entry gets a new one.
type shard struct {
	// What lock-free readers read, on one cache line of its own: 48
	// bytes and 16 of padding, in shards a multiple of a line long, so
	// every shard's lies at the place in a line where the array starts
	// (Go's allocator puts it 8 bytes after a line's start:
	// TestShardHeadersHaveALineEach). Writers write it; a hit only reads
	// it, but for the rare use that stamps its entry again (see touch).
	//
	// seq is odd while a writer changes the index or the entries, and
	// moves on with every change.
	seq atomic.Uint64
	// tab is the index, open addressing with linear probing: each
	// word is the top 32 bits of an id's hash and its slot + 1, 0 when
	// empty. Kept at most half full. nil when empty.
	tab atomic.Pointer[table]
	// ents are the entries' hot halves and the ticks they were last
	// stamped at, by slot (as many as cold; nil when empty).
	ents atomic.Pointer[entries]
	// vals holds the (entity, instant, facts) of the entries, shared by
	// the entries whose ones are equal (counted by refs, by place); an
	// entry's hot half names its value by place + 1. A place, once
	// filled, is never written again (lock-free readers may be reading
	// it): values are appended, and the array is copied without its
	// dead places when it is full (see compactValues).
	vals atomic.Pointer[valueArray]
	// tick counts the stamps given in the shard: each stamp is the next
	// value (see touch and push).
	tick atomic.Int64
	// window is how many stamps old an entry's stamp may be before a use
	// stamps it again (see touch); at least 1. Set under mu by push.
	window atomic.Int64
	_      [16]byte

	mu    sync.Mutex
	cold  []cold
	slots int32 // slots handed out (len(cold))
	free  int32 // first free slot (linked by cold.next), none: -1
	// recent finds the value of a new entry among those put last, by a
	// hash of it.
	nvals      int32 // places filled
	liveVals   int32
	refs       []int32 // by place, as long as vals' array
	recent     [16]int32
	count      int
	withParent int   // entries whose subject inherits evidence
	bytes      int64 // sum of the entries' sizes
	// capSubjects and capBytes are the shard's share of the cache's
	// bounds, which window is a quarter of (see push).
	capSubjects, capBytes int64
	// Recency: ents.stamps[i] is the tick slot i was last stamped at,
	// which a hit stores without a lock. heap orders the slots by the
	// stamp cold[i].used they had when last placed there (never later
	// than their current one but in a race): the entry with the oldest
	// stamp is found by taking the top, placing it again when its stamp
	// moved on, until one's did not. With a window of w, that entry is
	// one of the w least recently used of the shard (see touch).
	heap []int32
	_    [56]byte // to a multiple of a cache line
}

// table is a shard's index.
type table struct{ words []atomic.Uint64 }

// entries are a shard's hot halves and use ticks, by slot.
type entries struct {
	hot    []hot
	stamps []atomic.Int64
}

// inlineID is the longest id kept in its entry's hot half.
const inlineID = 23

// hot is the half of an entry a hit reads.
type hot struct {
	value atomic.Uint32    // place + 1 of its value in vals, 0 when free
	id    [3]atomic.Uint64 // see idWords
}

// valueArray is a shard's values, by place; see shard.vals.
type valueArray struct{ v []value }

// idWords is how an entry's hot half holds its id: the length (inlineID+1
// when longer) in the first byte, then the id's bytes when it is at most
// inlineID long, zeros after.
func idWords(id string) [3]uint64 {
	var b [24]byte
	if len(id) <= inlineID {
		b[0] = byte(len(id))
		copy(b[1:], id)
	} else {
		b[0] = inlineID + 1
	}
	return [3]uint64{binary.LittleEndian.Uint64(b[0:]), binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[16:])}
}

// cold is the rest of an entry.
type cold struct {
	hash      uint64
	ref       model.SubjectRef
	parent    model.SubjectRef
	hasParent bool
	size      int64
	used      int64 // the stamp it is placed by in heap
	pos       int32 // its place in heap
	next      int32 // next free slot, none: -1
}

// value is what entries may share; never changed once in vals.
type value struct {
	entity string
	at     time.Time // the instant facts were computed for
	facts  Facts
	hash   uint64 // of the above (see valueHash)
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
// strings and grants: the structs, its index words and allocator
// rounding. It is the figure the byte bound was set with (hot, cold and
// value structs of 32, 96 and 160 bytes, plus 96), kept so that a
// MaxBytes holds as many entries as before.
const entryOverhead = 384

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

// lock takes s for writing: lock-free readers that overlap see seq move.
func (s *shard) lock() {
	s.mu.Lock()
	s.begin()
}

func (s *shard) unlock() {
	s.end()
	s.mu.Unlock()
}

// begin and end bracket a change of what lock-free readers read, under mu.
func (s *shard) begin() { s.seq.Add(1) }
func (s *shard) end()   { s.seq.Add(1) }

// touch records a use of the entry whose stamp is st. It stamps it again
// (the next tick) only when its stamp is window or more ticks old: the
// uses of a list's subjects, a few thousand spread over the shards of a
// larger cache, then write nothing, so the cores serving them share the
// shard's lines and the entries' stamps without passing them to and fro.
//
// What that costs the order of use: an entry x whose last use found its
// stamp s fewer than w ticks old (w the window then, T the tick) was not
// stamped again, so it may be taken for less recent than entries used
// before that use. But those entries hold stamps in (s, T] — a stamp is
// given to one entry, and an entry used before x's last use was last
// stamped no later than T — which are fewer than w. So the entry evicted,
// the one with the oldest stamp, is one of the w least recently used of
// its shard, w its window at its last use (with a window of 1, the least
// recently used).
//
// The proof needs the tick to move only forward and each stamp to go to
// one use: a re-stamp takes the next tick by compare-and-swap (a plain
// load and store let a use delayed between the two turn the tick back
// past stamps already given, TestLocalConcurrentHitsNeverTurnTheTickBack),
// and an entry's stamp only moves forward (a use delayed before its store
// does not undo a later one's). Only a re-stamp, once in a window of uses,
// writes the tick, so uses still do not queue on it.
func (s *shard) touch(st *atomic.Int64) {
	for {
		t := s.tick.Load()
		old := st.Load()
		if t-old < s.window.Load() {
			return
		}
		if s.tick.CompareAndSwap(t, t+1) {
			raiseStamp(st, t+1)
			return
		}
	}
}

// raiseStamp sets *st to t unless it already holds a later stamp.
func raiseStamp(st *atomic.Int64, t int64) {
	for old := st.Load(); old < t && !st.CompareAndSwap(old, t); old = st.Load() {
	}
}

// peek is GetTo's lock-free hit: sure reports whether hit is the answer
// (the facts written into dst when it is one), else (a writer at work, an
// entry to drop, anything unusual) the caller asks again under mu, dst
// unchanged. ref.ID is at most inlineID bytes long.
//
// Every word it reads may be changing under it, so it reads them
// atomically and believes what it found only if seq did not move
// meanwhile: then no writer changed anything it read (a writer makes seq
// odd before its first change and moves it again after its last). The
// value it returns is an immutable object, whole whatever happened.
func (s *shard) peek(h uint64, ref model.SubjectRef, now time.Time, version int64, dst *Facts) (hit, sure bool) {
	seq := s.seq.Load()
	if seq&1 != 0 {
		return false, false
	}
	// vals before the entries' value places: an array no older than
	// them is written only in places filled before they were (or never).
	tab, vals, ents := s.tab.Load(), s.vals.Load(), s.ents.Load()
	var v *value
	slot := -1
	if tab != nil && ents != nil && vals != nil {
		key := idWords(ref.ID)
		words := tab.words
		mask := len(words) - 1
		tag := h >> 32
		p, n := int(h)&mask, 0
		for ; n < len(words); p, n = (p+1)&mask, n+1 {
			w := words[p].Load()
			if w == 0 {
				break
			}
			if w>>32 != tag {
				continue
			}
			i := int(uint32(w)) - 1
			if i < 0 || i >= len(ents.hot) {
				return false, false
			}
			e := &ents.hot[i]
			if e.id[0].Load() != key[0] || e.id[1].Load() != key[1] || e.id[2].Load() != key[2] {
				continue
			}
			k := int(e.value.Load()) - 1
			if k < 0 || k >= len(vals.v) {
				return false, false
			}
			if c := &vals.v[k]; c.entity == ref.Entity {
				v, slot = c, i
				break
			}
		}
		if n == len(words) {
			return false, false // no empty word: never so
		}
	}
	if s.seq.Load() != seq {
		return false, false
	}
	if v == nil || now.Before(v.at) {
		// Absent, or computed for a later instant (see GetTo).
		return false, true
	}
	if outdated(&v.facts, now, version) {
		return false, false // dropped under mu
	}
	*dst = v.facts
	// The slot may have been reused since seq was checked: then a fresh
	// entry is marked used now, which it just was.
	s.touch(&ents.stamps[slot])
	return true, true
}

// find returns ref's slot, none when absent; under mu.
func (s *shard) find(h uint64, ref model.SubjectRef) int32 {
	tab := s.tab.Load()
	if tab == nil {
		return none
	}
	mask := len(tab.words) - 1
	tag := h >> 32
	var key [3]uint64
	if len(ref.ID) <= inlineID {
		key = idWords(ref.ID)
	}
	for p := int(h) & mask; ; p = (p + 1) & mask {
		w := tab.words[p].Load()
		if w == 0 {
			return none
		}
		if w>>32 != tag {
			continue
		}
		i := int32(uint32(w)) - 1
		if s.matches(i, ref, &key) {
			return i
		}
	}
}

// matches reports whether slot i is ref's entry (key: ref's idWords when
// its id is inline); under mu.
func (s *shard) matches(i int32, ref model.SubjectRef, key *[3]uint64) bool {
	e := &s.ents.Load().hot[i]
	if len(ref.ID) <= inlineID {
		if e.id[0].Load() != key[0] || e.id[1].Load() != key[1] || e.id[2].Load() != key[2] {
			return false
		}
	} else if s.cold[i].ref.ID != ref.ID {
		return false
	}
	return s.valueOf(e).entity == ref.Entity
}

// valueOf is e's value; under mu.
func (s *shard) valueOf(e *hot) *value { return &s.vals.Load().v[e.value.Load()-1] }

// slot returns a free slot, growing the entries when none is; locked for
// writing.
func (s *shard) slot() int32 {
	if i := s.free; i != none {
		s.free = s.cold[i].next
		return i
	}
	i := s.slots
	s.slots++
	s.cold = append(s.cold, cold{})
	old := s.ents.Load()
	if old == nil || int(i) == len(old.hot) {
		n := 16
		if old != nil {
			n = 2 * len(old.hot)
		}
		ents := &entries{hot: make([]hot, n), stamps: make([]atomic.Int64, n)}
		if old != nil {
			for k := range old.hot {
				o, e := &old.hot[k], &ents.hot[k]
				e.value.Store(o.value.Load())
				for j := range o.id {
					e.id[j].Store(o.id[j].Load())
				}
				ents.stamps[k].Store(old.stamps[k].Load())
			}
		}
		s.ents.Store(ents)
	}
	return i
}

// position is the place of slot i, holding hash h, in s's table.
func (s *shard) position(h uint64, i int32) int {
	words := s.tab.Load().words
	mask := len(words) - 1
	w := h>>32<<32 | uint64(uint32(i+1))
	p := int(h) & mask
	for words[p].Load() != w {
		p = (p + 1) & mask
	}
	return p
}

// index records slot i, holding hash h, in s's table, doubling the table
// when it would be more than half full; locked for writing.
func (s *shard) index(h uint64, i int32) {
	tab := s.tab.Load()
	if tab == nil || 2*s.count > len(tab.words) {
		n := 16
		if tab != nil {
			n = max(16, 2*len(tab.words))
		}
		grown := &table{words: make([]atomic.Uint64, n)}
		if tab != nil {
			for k := range tab.words {
				if w := tab.words[k].Load(); w != 0 {
					place(grown, s.cold[int32(uint32(w))-1].hash, w)
				}
			}
		}
		s.tab.Store(grown)
		tab = grown
	}
	place(tab, h, h>>32<<32|uint64(uint32(i+1)))
}

// place puts the index word w of hash h in the first empty word from h's
// position.
func place(tab *table, h, w uint64) {
	mask := len(tab.words) - 1
	p := int(h) & mask
	for tab.words[p].Load() != 0 {
		p = (p + 1) & mask
	}
	tab.words[p].Store(w)
}

// unindex removes the word at position p, moving back the words after it
// that would otherwise no longer be found (no tombstones: a table that
// sees an eviction per miss would fill with them); locked for writing.
func (s *shard) unindex(p int) {
	words := s.tab.Load().words
	mask := len(words) - 1
	for q := (p + 1) & mask; ; q = (q + 1) & mask {
		w := words[q].Load()
		if w == 0 {
			break
		}
		home := int(s.cold[int32(uint32(w))-1].hash) & mask
		// The word at q may move to p unless its home lies cyclically
		// in (p, q].
		if p <= q && (p < home && home <= q) || p > q && (p < home || home <= q) {
			continue
		}
		words[p].Store(w)
		p = q
	}
	words[p].Store(0)
}

// remove drops slot i of s from the index and frees it (its strings and
// grants are released at once, not when the slot is reused); locked for
// writing.
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
	s.unheap(i)
	h := &s.ents.Load().hot[i]
	s.release(int32(h.value.Load()) - 1)
	h.value.Store(0)
	for k := range h.id {
		h.id[k].Store(0)
	}
	*e = cold{next: s.free}
	s.free = i
}

// push marks the new entry in slot i as the most recently used, and sets
// the window to a quarter of the entries the shard holds when the cache is
// full: its share of the subjects, or fewer when its share of the bytes
// holds fewer entries of its average size; locked for writing.
func (s *shard) push(i int32) {
	c := s.capSubjects
	if s.count > 0 {
		c = min(c, s.capBytes/(s.bytes/int64(s.count)))
	}
	if w := max(1, c/4); w != s.window.Load() {
		s.window.Store(w)
	}
	t := s.tick.Add(1) // lock-free re-stamps move it too (see touch)
	s.ents.Load().stamps[i].Store(t)
	s.cold[i].used = t
	s.cold[i].pos = int32(len(s.heap))
	s.heap = append(s.heap, i)
	s.up(len(s.heap) - 1)
}

// unheap takes slot i out of the heap.
func (s *shard) unheap(i int32) {
	p := int(s.cold[i].pos)
	n := len(s.heap) - 1
	if p != n {
		s.swap(p, n)
	}
	s.heap = s.heap[:n]
	if p != n {
		s.down(p)
		s.up(p)
	}
}

// oldest returns the least recently used slot, none when the shard is
// empty; under mu. Lock-free hits may go on stamping meanwhile: it gives
// up placing again after as many tries as there are entries.
func (s *shard) oldest() int32 {
	if len(s.heap) == 0 {
		return none
	}
	stamps := s.ents.Load().stamps
	for range len(s.heap) {
		i := s.heap[0]
		t := stamps[i].Load()
		if t == s.cold[i].used {
			return i
		}
		s.cold[i].used = t
		s.down(0)
	}
	return s.heap[0]
}

func (s *shard) less(a, b int) bool { return s.cold[s.heap[a]].used < s.cold[s.heap[b]].used }

func (s *shard) swap(a, b int) {
	h := s.heap
	h[a], h[b] = h[b], h[a]
	s.cold[h[a]].pos, s.cold[h[b]].pos = int32(a), int32(b)
}

func (s *shard) up(j int) {
	for j > 0 {
		p := (j - 1) / 2
		if !s.less(j, p) {
			break
		}
		s.swap(j, p)
		j = p
	}
}

func (s *shard) down(j int) {
	n := len(s.heap)
	for {
		c := 2*j + 1
		if c >= n {
			return
		}
		if c+1 < n && s.less(c+1, c) {
			c++
		}
		if !s.less(c, j) {
			return
		}
		s.swap(j, c)
		j = c
	}
}
