package redact_test

import (
	"fmt"

	"github.com/gdprgate/gdprgate/redact"
)

func Example() {
	m, err := redact.Compile(redact.Spec{
		Fields: []redact.FieldSpec{
			{Path: "data.#.email", Bit: 1, Action: redact.ActMask},
			{Path: "data.#.health_notes", Bit: 3, Action: redact.ActRemove},
		},
		SubjectPath: "data.#.id",
	})
	if err != nil {
		panic(err)
	}
	// The caller's planner: c-1 has bits 0-3 visible, everyone else bit 0.
	planner := redact.PlannerFunc(func(id []byte) (uint32, error) {
		if string(id) == "c-1" {
			return 0b1111, nil
		}
		return 0b0001, nil
	})
	body := []byte(`{"data":[{"id":"c-1","email":"a@x","health_notes":"flu"},{"health_notes":"ok","email":"b@x","id":"c-2"}]}`)
	out, res, err := m.Rewrite(nil, body, planner)
	if err != nil {
		panic(err) // fail closed: never send body
	}
	fmt.Println(string(out))
	fmt.Println(res.Redacted, res.Items)
	// Output:
	// {"data":[{"id":"c-1","email":"a@x","health_notes":"flu"},{"email":"***","id":"c-2"}]}
	// [data.#.email data.#.health_notes] 2
}
