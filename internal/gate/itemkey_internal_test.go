package gate

import (
	"reflect"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/policy"
)

// TestItemKeyHoldsWhatFillFactsReads: a list item's decision is reused
// for the next item whose itemKey is equal, so a field of cache.Facts
// that fillFacts reads (for an item: no communication) must be in the
// key. Each field, down to State's, is changed alone: when the policy's
// facts change, the key must too.
func TestItemKeyHoldsWhatFillFactsReads(t *testing.T) {
	base := func() cache.Facts {
		var sf cache.Facts
		sf.Known = true
		sf.State.Active, sf.State.Archived, sf.State.Expired, sf.State.Obliviated = 1, 2, 4, 8
		sf.State.CoveredExplicit, sf.State.CoveredInherited, sf.State.Covered = 16, 32, 64
		sf.State.Coverage = 1
		return sf
	}
	fill := func(sf *cache.Facts) policy.Facts {
		f := policy.Facts{RouteKind: policy.KindList, Roles: "agent", SensitivityMask: 7}
		if _, err := fillFacts(&f, sf, nil, 0, ""); err != nil {
			t.Fatal(err)
		}
		return f
	}
	b := base()
	want, wantKey := fill(&b), itemKeyOf(&b)
	fields := 0
	var walk func(path string, v reflect.Value)
	walk = func(path string, v reflect.Value) {
		for i := range v.NumField() {
			fv, name := v.Field(i), path+v.Type().Field(i).Name
			switch {
			case fv.Type() == reflect.TypeFor[time.Time]():
				fv.Set(reflect.ValueOf(time.Unix(1e9, 0)))
			case fv.Kind() == reflect.Struct:
				walk(name+".", fv)
				continue
			case fv.Kind() == reflect.Slice:
				fv.Set(reflect.MakeSlice(fv.Type(), 1, 1))
			case fv.Kind() == reflect.Bool:
				fv.SetBool(!fv.Bool())
			case fv.CanUint():
				fv.SetUint(fv.Uint() ^ 0x80)
			case fv.CanInt():
				fv.SetInt(fv.Int() ^ 0x80)
			default:
				t.Fatalf("cache.Facts.%s is a %s: teach this test to change it", name, fv.Kind())
			}
			fields++
			sf := b // v is b or b.State: one field of b changed
			if f := fill(&sf); f != want && itemKeyOf(&sf) == wantKey {
				t.Errorf("cache.Facts.%s changes the policy's facts but not itemKey: add it to itemKey", name)
			}
			b = base()
			want = fill(&b)
		}
	}
	walk("", reflect.ValueOf(&b).Elem())
	if fields < 10 {
		t.Fatalf("only %d fields changed", fields)
	}
}
