package cache

import (
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/policy/model"
)

// TestLocalUsesStayBounded: every hit appends a use; hits on a cache that
// never evicts must not grow the record of uses without bound, nor must
// evictions leave a consumed prefix growing behind it.
func TestLocalUsesStayBounded(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		max, ids int
	}{{"hits without evictions", 100, 10}, {"evictions on every put", 10, 1000}} {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLocal(Options{MaxSubjects: tc.max})
			ix, err := model.NewIndex(&model.Registers{}, 1)
			if err != nil {
				t.Fatal(err)
			}
			l.SetIndex(ix)
			for n := range 200_000 {
				r := model.SubjectRef{Entity: "contact", ID: "c-" + strconv.Itoa(n%tc.ids)}
				if _, ok := l.Get(r, at); !ok {
					l.Put(r, nil, Facts{RegistersVersion: 1}, at, l.Gen())
				}
			}
			if bound := 4 * (2*l.Len() + 65); cap(l.uses) > bound {
				t.Fatalf("uses: len %d cap %d for %d entries, want cap <= %d", len(l.uses), cap(l.uses), l.Len(), bound)
			}
		})
	}
}

// TestLocalRecencySurvivesTheTickWrapping: the use counter is renumbered
// before it wraps, keeping the order of use: the least recently used
// entry is still the one evicted.
func TestLocalRecencySurvivesTheTickWrapping(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	l := NewLocal(Options{MaxSubjects: 3})
	ix, err := model.NewIndex(&model.Registers{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	l.SetIndex(ix)
	r := func(id string) model.SubjectRef { return model.SubjectRef{Entity: "contact", ID: id} }
	for _, id := range []string{"a", "b", "c"} {
		l.Put(r(id), nil, Facts{RegistersVersion: 1}, at, l.Gen())
	}
	l.tick = math.MaxUint32 - 2
	// Order of use: b, c, a (oldest first), crossing the wrap.
	for _, id := range []string{"b", "c", "a", "c", "a"} {
		if _, ok := l.Get(r(id), at); !ok {
			t.Fatalf("%s missing", id)
		}
	}
	if l.tick > 10 {
		t.Fatalf("tick %d: not renumbered", l.tick)
	}
	l.Put(r("d"), nil, Facts{RegistersVersion: 1}, at, l.Gen())
	if _, ok := l.Get(r("b"), at); ok {
		t.Fatal("b, least recently used, was not evicted")
	}
	for _, id := range []string{"a", "c", "d"} {
		if _, ok := l.Get(r(id), at); !ok {
			t.Fatalf("%s evicted", id)
		}
	}
}
