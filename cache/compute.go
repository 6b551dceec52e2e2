package cache

import (
	"time"

	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
)

// ComputeFacts evaluates a subject's Facts at now from what is stored: its
// record (whose Subject.Origin is the first-seen time when it is not Known)
// and the evidence of its parent, passed to the lifecycle as inherited.
//
// With gdpr_enforced false the lifecycle is frozen (lifecycle.Freeze).
func ComputeFacts(ix *model.Index, rec SubjectRecord, inherited []model.Evidence, now time.Time) Facts {
	in := lifecycle.Input{
		Index:     ix,
		Origin:    rec.Subject.Origin,
		Evidence:  rec.Evidence,
		Inherited: inherited,
	}
	st := lifecycle.Evaluate(in, now)
	if ix.Registers != nil && !ix.Registers.Config.GdprEnforced {
		st = lifecycle.Freeze(st, in, ix.Registers.Config.EnforcementStoppedAt, now)
	}
	return Facts{
		State:            st,
		Known:            rec.Known,
		Restricted:       rec.Restriction != "",
		RegistersVersion: ix.Version,
	}
}

// EmptyIndex is the register index of a new store: no registers, version 0.
func EmptyIndex() *model.Index {
	ix, err := model.NewIndex(&model.Registers{}, 0)
	if err != nil {
		// An empty register set is valid by construction.
		panic("cache: empty registers do not validate: " + err.Error())
	}
	return ix
}
