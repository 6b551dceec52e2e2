package lifecycle

import (
	"testing"

	"github.com/gdprgate/gdprgate/policy/model"
)

// The manual's editor colours: "Red – We have no coverage. Blue – We have
// coverage - at least one explicit. Green – We have at least one inherited
// coverage." Coverage is evidence that grants something now: evidence whose
// purpose has expired or forgotten the data covers nothing any more.
func TestCoverageColourCountsOnlyEvidenceThatGrantsSomethingNow(t *testing.T) {
	ix := scenario(t)
	cases := []struct {
		name      string
		origin    int
		evidence  []model.Evidence
		inherited []model.Evidence
		overall   Coverage
		bits      [4]Coverage
	}{
		{"Alice: fresh evidence for every bit is blue everywhere", 100,
			[]model.Evidence{ev("contract-care", ago(100)), ev("marketing-consent", ago(100)), ev("health-consent", ago(100))}, nil,
			Blue, [4]Coverage{Blue, Blue, Blue, Blue}},
		{"Bob: archived evidence still keeps the data lawfully: blue", 500,
			[]model.Evidence{ev("contract-care", ago(500))}, nil,
			Blue, [4]Coverage{Blue, Blue, Blue, Red}},
		{"Carol: expired marketing consent is no coverage: red", 380,
			[]model.Evidence{ev("marketing-consent", ago(380))}, nil,
			Red, [4]Coverage{Red, Red, Red, Red}},
		{"forgotten evidence is no coverage: red", 2000,
			[]model.Evidence{made(ev("contract-care", ago(2000)), ago(999))}, nil,
			Red, [4]Coverage{Red, Red, Red, Red}},
		{"a phone number inheriting its contact's evidence in force: green", 100,
			nil, []model.Evidence{ev("contract-care", ago(100))},
			Green, [4]Coverage{Green, Green, Green, Red}},
		{"expired own evidence, inherited in force: green", 400,
			[]model.Evidence{ev("marketing-consent", ago(400))}, []model.Evidence{ev("contract-care", ago(100))},
			Green, [4]Coverage{Green, Green, Green, Red}},
		{"explicit and inherited in force: blue wins per bit", 100,
			[]model.Evidence{ev("health-consent", ago(100))}, []model.Evidence{ev("contract-care", ago(100))},
			Blue, [4]Coverage{Green, Green, Green, Blue}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := Evaluate(Input{Index: ix, Origin: ago(tc.origin), Evidence: tc.evidence, Inherited: tc.inherited}, now)
			if s.Coverage != tc.overall {
				t.Errorf("overall colour %v, want %v", s.Coverage, tc.overall)
			}
			for b, want := range tc.bits {
				if got := s.BitCoverage(b); got != want {
					t.Errorf("bit %d colour %v, want %v", b, got, want)
				}
			}
		})
	}
	// A caller sees the colour of the bits it may see only: an Art. 9
	// consent must not turn an agent's button blue.
	mallory := Evaluate(Input{Index: ix, Origin: ago(20), Evidence: []model.Evidence{ev("health-consent", ago(20))}}, now)
	if got := mallory.CoverageOf(0b0111); got != Red {
		t.Errorf("colour over bits 0-2 with only a health consent: %v, want red", got)
	}
}
