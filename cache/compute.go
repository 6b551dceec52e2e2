package cache

import (
	"time"

	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
)

// ComputeFacts evaluates a subject's Facts at now from what is stored: its
// record (whose Subject.Origin is the recorded origin, zero when src is
// OriginNone) and the evidence of its parent, passed to the lifecycle as
// inherited. Without a recorded origin the data is taken to originate at
// now: nothing is stored for a subject the backend never answered for.
//
// With gdpr_enforced false the lifecycle is frozen (lifecycle.Freeze).
func ComputeFacts(ix *model.Index, rec SubjectRecord, src OriginSource, inherited []model.Evidence, now time.Time) Facts {
	origin := rec.Subject.Origin
	if origin.IsZero() {
		origin, src = now, OriginNone
	}
	in := lifecycle.Input{
		Index:     ix,
		Origin:    origin,
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
		Origin:           src,
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
