package redact_test

import (
	"slices"
	"testing"

	"github.com/gdprgate/gdprgate/redact"
)

// Subjects gives a list's subject ids in the order, and with the repeats,
// the rewrite's planner sees them, so that a caller can read them all
// before rewriting; it refuses what Rewrite refuses.
func TestSubjectsAreTheIdsThePlannerSees(t *testing.T) {
	m, err := redact.Compile(redact.Spec{
		SubjectPath: "#.id",
		Fields:      []redact.FieldSpec{{Path: "#.phone", Bit: 1, Action: redact.ActRemove}},
	})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`[{"id":"c-1","phone":"1"},{"phone":"2","id":"c-2"},{"id":"c-1"},{"phone":"3"},{"id":7,"phone":"4"},{"id":"c-\u0033"}]`)
	var planned []string
	if _, _, err := m.Rewrite(nil, body, redact.PlannerFunc(func(id []byte) (uint32, error) {
		planned = append(planned, string(id))
		return 0, nil
	})); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := m.Subjects(body, func(id []byte) { got = append(got, string(id)) }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, planned) || len(got) != 5 {
		t.Fatalf("Subjects = %q, the planner saw %q", got, planned)
	}
	if err := m.Subjects([]byte(`[{"id":"c-1"},`), func([]byte) {}); err == nil {
		t.Error("Subjects accepted invalid JSON")
	}
	single, _ := redact.Compile(redact.Spec{SubjectPath: "id"})
	if err := single.Subjects([]byte(`{"id":"c-1"}`), func([]byte) {}); err == nil {
		t.Error("Subjects of a single-subject spec")
	}
}
