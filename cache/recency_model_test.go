package cache

import (
	"testing"

	"github.com/gdprgate/gdprgate/policy/model"
)

// RecencyModel is what a Local bounded by subjects must do, step by step:
// per shard, the entries in their exact order of use; an insert makes
// room in the new entry's shard, then, when that one is empty, in the
// others in turn (Local.victim's order); and each entry evicted is one of
// the w least recently used of its shard, w the shard's window at the
// entry's last use (see shard.touch). Which of those the cache picked is
// read from the cache (without a use) and followed. Exported for the
// external tests.
type RecencyModel struct {
	t      testing.TB
	l      *Local
	lists  [][]ModelItem // per shard, most recently used first
	victim uint32
}

// ModelItem is an entry of the model: its subject, the subject it
// inherits from, what its facts hold (State.Active), and the window of its
// shard at its last use.
type ModelItem struct {
	Ref    model.SubjectRef
	Parent *model.SubjectRef
	Active uint32
	window int64
}

// NewRecencyModel is the model of l, empty. Only one goroutine may use l.
func NewRecencyModel(t testing.TB, l *Local) *RecencyModel {
	return &RecencyModel{t: t, l: l, lists: make([][]ModelItem, len(l.shards))}
}

func (m *RecencyModel) shardOf(r model.SubjectRef) int { return int(m.l.hash(r.ID) >> m.l.shift) }

func (m *RecencyModel) find(r model.SubjectRef) (int, int) {
	s := m.shardOf(r)
	for i, it := range m.lists[s] {
		if it.Ref == r {
			return s, i
		}
	}
	return s, -1
}

// Len is the entries the model holds.
func (m *RecencyModel) Len() int {
	n := 0
	for _, list := range m.lists {
		n += len(list)
	}
	return n
}

// holds reports whether l holds r, without using it.
func (l *Local) holds(r model.SubjectRef) bool {
	h := l.hash(r.ID)
	s := l.shardOf(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.find(h, r) != none
}

// Put follows l.Put(it.Ref, it.Parent, facts with it.Active, …), done
// just before with a current generation.
func (m *RecencyModel) Put(step int, it ModelItem) {
	m.t.Helper()
	s, i := m.find(it.Ref)
	if i >= 0 {
		m.lists[s] = append(m.lists[s][:i], m.lists[s][i+1:]...)
	}
	// How many the cache must have evicted, shard by shard.
	need := make([]int, len(m.lists))
	left := make([]int, len(m.lists))
	for k, list := range m.lists {
		left[k] = len(list)
	}
	n := m.Len()
	for ; n >= m.l.maxSubjects && left[s] > 0; n-- {
		left[s]--
		need[s]++
	}
	for n >= m.l.maxSubjects {
		evicted := false
		for range m.lists {
			m.victim++
			k := int(m.victim) & (len(m.lists) - 1)
			if k == s {
				continue
			}
			if left[k] > 0 {
				left[k]--
				need[k]++
				n--
				evicted = true
			}
			if n < m.l.maxSubjects {
				break
			}
		}
		if !evicted {
			m.t.Fatalf("step %d: the model found no room", step)
		}
	}
	for k, list := range m.lists {
		var gone []int
		for j, x := range list {
			if !m.l.holds(x.Ref) {
				gone = append(gone, j)
			}
		}
		if len(gone) != need[k] {
			m.t.Fatalf("step %d: put %v: %d entries evicted from shard %d, want %d", step, it.Ref, len(gone), k, need[k])
		}
		for _, j := range gone {
			// Those less recently used still there (the others evicted
			// now do not count: their order of eviction is not known).
			older := len(list) - 1 - j
			for _, g := range gone {
				if g > j {
					older--
				}
			}
			if x := list[j]; int64(older) >= x.window {
				m.t.Fatalf("step %d: put %v evicted %v, used after %d of its shard's %d entries, window %d",
					step, it.Ref, x.Ref, older, len(list), x.window)
			}
		}
		for g := len(gone) - 1; g >= 0; g-- {
			list = append(list[:gone[g]], list[gone[g]+1:]...)
		}
		m.lists[k] = list
	}
	it.window = m.l.shardOf(m.l.hash(it.Ref.ID)).window.Load()
	m.lists[s] = append([]ModelItem{it}, m.lists[s]...)
	m.check(step)
}

// Get follows l.Get(r, …) = f.State.Active, ok.
func (m *RecencyModel) Get(step int, r model.SubjectRef, active uint32, ok bool) {
	m.t.Helper()
	s, i := m.find(r)
	if ok != (i >= 0) {
		m.t.Fatalf("step %d: Get(%v) hit=%v, want %v", step, r, ok, i >= 0)
	}
	if !ok {
		return
	}
	it := m.lists[s][i]
	if active != it.Active {
		m.t.Fatalf("step %d: Get(%v) = facts of put %d, want %d", step, r, active, it.Active)
	}
	it.window = m.l.shardOf(m.l.hash(r.ID)).window.Load()
	m.lists[s] = append([]ModelItem{it}, append(m.lists[s][:i:i], m.lists[s][i+1:]...)...)
}

// Invalidate follows l.Invalidate(r): r and the entries inheriting from
// it go.
func (m *RecencyModel) Invalidate(step int, r model.SubjectRef) {
	m.t.Helper()
	for s, list := range m.lists {
		kept := list[:0:0]
		for _, it := range list {
			if it.Ref != r && (it.Parent == nil || *it.Parent != r) {
				kept = append(kept, it)
			}
		}
		m.lists[s] = kept
	}
	m.check(step)
}

// check compares what l holds with the model.
func (m *RecencyModel) check(step int) {
	m.t.Helper()
	if got, want := m.l.Len(), m.Len(); got != want {
		m.t.Fatalf("step %d: Len = %d, want %d", step, got, want)
	}
	for _, list := range m.lists {
		for _, it := range list {
			if !m.l.holds(it.Ref) {
				m.t.Fatalf("step %d: %v lost", step, it.Ref)
			}
		}
	}
}

// Window is the window of r's shard now.
func (m *RecencyModel) Window(r model.SubjectRef) int64 {
	return m.l.shardOf(m.l.hash(r.ID)).window.Load()
}
