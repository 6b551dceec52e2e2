package gate

import (
	"reflect"
	"testing"

	"github.com/gdprgate/gdprgate/policy"
)

// TestPlanCarriesEveryFact: a field added to policy.Facts must be added to
// the plan's encoding too, or ext_proc would decide on a zero value.
func TestPlanCarriesEveryFact(t *testing.T) {
	var f policy.Facts
	v := reflect.ValueOf(&f).Elem()
	for i := range v.NumField() {
		switch fv := v.Field(i); fv.Kind() {
		case reflect.String:
			fv.SetString("s" + v.Type().Field(i).Name)
		case reflect.Bool:
			fv.SetBool(true)
		case reflect.Uint32:
			fv.SetUint(uint64(1<<31 | i))
		default:
			t.Fatalf("policy.Facts.%s is a %s: teach appendFacts and planDecoder.facts to carry it", v.Type().Field(i).Name, fv.Kind())
		}
	}
	d := planDecoder{b: appendFacts(nil, &f)}
	var got policy.Facts
	d.facts(&got)
	if d.err || len(d.b) != 0 || got != f {
		t.Fatalf("facts lost in the plan:\n got %+v\nwant %+v", got, f)
	}
	// Each boolean on its own, so that no two share a bit.
	for i := range v.NumField() {
		if v.Field(i).Kind() != reflect.Bool {
			continue
		}
		var one policy.Facts
		reflect.ValueOf(&one).Elem().Field(i).SetBool(true)
		d := planDecoder{b: appendFacts(nil, &one)}
		var back policy.Facts
		d.facts(&back)
		if back != one {
			t.Errorf("boolean %s does not round-trip alone", v.Type().Field(i).Name)
		}
	}
}
