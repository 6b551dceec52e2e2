// Package rules evaluates the GDPR scenario table: for a communication with
// given attributes, the rules in rank order decide which sensitivity it gets
// and whose evidence applies.
package rules

import "github.com/gdprgate/gdprgate/policy/model"

// Communication holds the attributes a rule can test. Empty means unknown:
// a rule with a condition on that attribute does not match.
type Communication struct {
	Channel        string
	ProjectID      string
	LanguageID     string
	PhonebookID    string
	OutboundListID string
	TopicID        string
	SubtopicID     string
}

// Result is what the matching rules add.
type Result struct {
	// Sensitivity is the mask of the sensitivities the matching rules add.
	Sensitivity uint32
	// Legalisations are the ids whose evidence the matching rules add, in
	// rule order, without duplicates.
	Legalisations []string
	// Matched are the ids of the matching rules, in rank order.
	Matched []string
}

func cond(want *string, got string) bool { return want == nil || *want == got }

// Matches reports whether every non-null condition of r equals c's attribute.
func Matches(r *model.Rule, c *Communication) bool {
	return cond(r.Channel, c.Channel) && cond(r.ProjectID, c.ProjectID) &&
		cond(r.LanguageID, c.LanguageID) && cond(r.PhonebookID, c.PhonebookID) &&
		cond(r.OutboundListID, c.OutboundListID) && cond(r.TopicID, c.TopicID) &&
		cond(r.SubtopicID, c.SubtopicID)
}

// Evaluate walks ix's rules by rank; every matching rule adds its sensitivity
// and legalisation, and a matching terminating rule stops the walk.
func Evaluate(ix *model.Index, c Communication) Result {
	var res Result
	for i := range ix.RulesByRank {
		r := &ix.RulesByRank[i]
		if !Matches(r, &c) {
			continue
		}
		res.Matched = append(res.Matched, r.ID)
		if s := ix.Sensitivities[r.SensitivityID]; s != nil {
			res.Sensitivity |= s.Mask()
		}
		if r.LegalisationID != nil && !contains(res.Legalisations, *r.LegalisationID) {
			res.Legalisations = append(res.Legalisations, *r.LegalisationID)
		}
		if r.Terminate {
			break
		}
	}
	return res
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
