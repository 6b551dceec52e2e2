package rules

import (
	"reflect"
	"testing"

	"github.com/gdprgate/gdprgate/policy/model"
)

func str(s string) *string { return &s }

func TestEvaluate(t *testing.T) {
	regs := &model.Registers{
		Sensitivities: []model.Sensitivity{
			{ID: "aux", Bit: 0, Name: "aux"}, {ID: "contact", Bit: 1, Name: "contact"}, {ID: "health", Bit: 3, Name: "health", Special: true},
		},
		Categories:    []model.Category{{ID: "consent", Name: "c", Article: "6.1.a"}},
		Purposes:      []model.Purpose{{ID: "m", Name: "m"}},
		Legalisations: []model.Legalisation{{ID: "mc", Name: "mc", CategoryID: "consent", PurposeID: "m", Coverage: 3}},
		Rules: []model.Rule{
			// Deliberately out of rank order: evaluation must sort.
			{ID: "health-topic", Rank: 20, SensitivityID: "health", TopicID: str("medical"), Terminate: true},
			{ID: "base", Rank: 10, SensitivityID: "aux"},
			{ID: "campaign", Rank: 30, SensitivityID: "contact", LegalisationID: str("mc"), Channel: str("OutboundCall"), OutboundListID: str("spring")},
			{ID: "email", Rank: 40, SensitivityID: "contact", Channel: str("Email"), LanguageID: str("en")},
			{ID: "campaign-again", Rank: 50, SensitivityID: "contact", LegalisationID: str("mc"), Channel: str("OutboundCall")},
		},
	}
	ix, err := model.NewIndex(regs, 1)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		c    Communication
		want Result
	}{
		{"no conditions match only the unconditional rule", Communication{}, Result{Sensitivity: 1, Matched: []string{"base"}}},
		{"terminating rule stops evaluation", Communication{TopicID: "medical", Channel: "OutboundCall", OutboundListID: "spring"},
			Result{Sensitivity: 9, Matched: []string{"base", "health-topic"}}},
		{"every condition must hold", Communication{Channel: "OutboundCall", OutboundListID: "autumn"},
			Result{Sensitivity: 3, Legalisations: []string{"mc"}, Matched: []string{"base", "campaign-again"}}},
		{"legalisations are not repeated", Communication{Channel: "OutboundCall", OutboundListID: "spring"},
			Result{Sensitivity: 3, Legalisations: []string{"mc"}, Matched: []string{"base", "campaign", "campaign-again"}}},
		{"language condition", Communication{Channel: "Email", LanguageID: "de"}, Result{Sensitivity: 1, Matched: []string{"base"}}},
		{"language condition met", Communication{Channel: "Email", LanguageID: "en"}, Result{Sensitivity: 3, Matched: []string{"base", "email"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Evaluate(ix, tc.c); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
