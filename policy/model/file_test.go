package model

import (
	"errors"
	"strings"
	"testing"
)

func TestRegistersFileErrorsCarryLineColumnAndExplain(t *testing.T) {
	for _, c := range []struct {
		name, src string
		want      []string
	}{
		{"a typo in a field name suggests the field",
			"sensitivities:\n  - {id: a, bit: 0, name: a, grace_perod: 3}\n",
			[]string{`line 2, column 30: sensitivities[0]: unknown field "grace_perod" (did you mean grace_period?)`}},
		{"a bad relative time explains the syntax",
			"subjects:\n  - subject: {entity: contact, id: c-1}\n    origin: now-500x\n",
			[]string{`line 3, column 13: subjects[0].origin: "now-500x" is not a relative time`, "now-100d, now+30d, now-1d12h"}},
		{"a word that is no time says what a time looks like",
			"subjects:\n  - {subject: {entity: contact, id: c-1}, origin: yesterday}\n",
			[]string{`subjects[0].origin: "yesterday" is not a time: write a date (2026-01-31)`}},
		{"a value of the wrong kind says what is wanted",
			"sensitivities:\n  - {id: a, bit: one, name: a}\n",
			[]string{`line 2, column 18: sensitivities[0].bit: want a whole number, got "one"`}},
		{"a key given twice is refused",
			"config:\n  gdpr_enforced: true\n  gdpr_enforced: false\n",
			[]string{`line 3, column 3: config: "gdpr_enforced" is given twice (first at line 2)`}},
		{"a validation error points at the field",
			"categories:\n  - {id: c, name: C, article: 6.1.a}\n  - {id: d, name: D, article: 7.7}\n",
			[]string{`line 3, column 31: categories[1].article: must be a GDPR ground`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseSeed([]byte(c.src), now)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestValidationErrorsFromAFileKeepTheirType(t *testing.T) {
	_, err := ParseSeed([]byte("categories:\n  - {id: d, name: D, article: 7.7}\n"), now)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Errors[0].Line != 2 || ve.Errors[0].Field != "categories[0].article" {
		t.Fatalf("%#v", err)
	}
}

func TestDatesAndTimesAreOnlyReadInTimeFields(t *testing.T) {
	// A name that looks like a date stays a name.
	s, err := ParseSeed([]byte("sensitivities:\n  - {id: a, bit: 0, name: 2026-01-01}\nsubjects:\n  - {subject: {entity: contact, id: c-1}, origin: 2026-01-01}\n"), now)
	if err != nil {
		t.Fatal(err)
	}
	if s.Sensitivities[0].Name != "2026-01-01" || s.Subjects[0].Origin.Format("2006-01-02T15:04:05Z07:00") != "2026-01-01T00:00:00Z" {
		t.Fatalf("%+v %+v", s.Sensitivities[0], s.Subjects[0])
	}
}
