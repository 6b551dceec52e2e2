package adminapi

import (
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
)

// bitTransition is one change of a bit's state.
type bitTransition struct {
	At   time.Time `json:"at"`
	From string    `json:"from"`
	To   string    `json:"to"`
}

// bitEvidence is one evidence record whose legalisation covers a bit: the
// state that record alone gives the bit now, and whether it counts for the
// bit's colour (it grants something now: active or archived).
type bitEvidence struct {
	ID             string `json:"id"`
	LegalisationID string `json:"legalisation_id"`
	Inherited      bool   `json:"inherited,omitempty"`
	State          string `json:"state"`
	Counts         bool   `json:"counts"`
}

// idleEvidence is an evidence record that covers no bit now, and why.
type idleEvidence struct {
	ID             string `json:"id"`
	LegalisationID string `json:"legalisation_id"`
	Inherited      bool   `json:"inherited,omitempty"`
	Reason         string `json:"reason"`
}

// maxTimelineSteps bounds the instants followed for a subject's timeline
// (each is one evaluation of the pure lifecycle function).
const maxTimelineSteps = 64

// timeline walks a subject's lifecycle from its data origin with the current
// registers and evidence: the state at from, then every instant the state
// may change (State.Next), evaluated exactly as the gate evaluates it
// (cache.ComputeFacts, frozen while GDPR is not enforced). It returns each
// defined bit's transitions in time order. Past transitions are what the
// lifecycle gives today, not a history of past register versions.
func timeline(ix *model.Index, rec cache.SubjectRecord, src cache.OriginSource, inherited []model.Evidence, from time.Time) map[int][]bitTransition {
	out := map[int][]bitTransition{}
	prev := cache.ComputeFacts(ix, rec, src, inherited, from).State
	for n := 0; n < maxTimelineSteps && !prev.Next.IsZero(); n++ {
		at := prev.Next
		next := cache.ComputeFacts(ix, rec, src, inherited, at).State
		for b := 0; b <= model.MaxBit; b++ {
			if ix.ByBit[b] == nil {
				continue
			}
			if f, t := prev.Bit(b), next.Bit(b); f != t {
				out[b] = append(out[b], bitTransition{At: at.UTC(), From: f.String(), To: t.String()})
			}
		}
		prev = next
	}
	return out
}

// evidenceBehind says, per bit, which evidence records cover it and what
// each gives it now, and lists the records that cover nothing. Each record
// is evaluated alone with the lifecycle function, so "covers" means exactly
// what the gate's evaluation means (legalisation known and active when the
// record was made, origin not in the future, special bits only for Art. 9.2
// grounds).
func evidenceBehind(ix *model.Index, origin time.Time, own, inherited []model.Evidence, now time.Time) (map[int][]bitEvidence, []idleEvidence) {
	per := map[int][]bitEvidence{}
	var idle []idleEvidence
	one := func(ev model.Evidence, inh bool) {
		in := lifecycle.Input{Index: ix, Origin: origin}
		if inh {
			in.Inherited = []model.Evidence{ev}
		} else {
			in.Evidence = []model.Evidence{ev}
		}
		st := lifecycle.Evaluate(in, now)
		if st.Covered == 0 {
			idle = append(idle, idleEvidence{ID: ev.ID, LegalisationID: ev.LegalisationID, Inherited: inh, Reason: idleReason(ix, ev, now)})
			return
		}
		for b := 0; b <= model.MaxBit; b++ {
			m := uint32(1) << uint(b)
			if st.Covered&m == 0 {
				continue
			}
			per[b] = append(per[b], bitEvidence{
				ID: ev.ID, LegalisationID: ev.LegalisationID, Inherited: inh,
				State:  st.Bit(b).String(),
				Counts: (st.CoveredExplicit|st.CoveredInherited)&m != 0,
			})
		}
	}
	for _, ev := range own {
		one(ev, false)
	}
	for _, ev := range inherited {
		one(ev, true)
	}
	return per, idle
}

// idleReason explains why an evidence record covers no bit.
func idleReason(ix *model.Index, ev model.Evidence, now time.Time) string {
	leg := ix.Legalisations[ev.LegalisationID]
	switch {
	case leg == nil:
		return "its legalisation is not in the registers"
	case ix.Purposes[leg.PurposeID] == nil || ix.Categories[leg.CategoryID] == nil:
		return "its legalisation's purpose or category is not in the registers"
	case ev.Origin.After(now):
		return "its origin is in the future"
	}
	made := ev.CreatedAt
	if made.IsZero() {
		made = ev.Origin
	}
	if leg.StatusAt(made) != model.StatusActive {
		return "its legalisation was " + string(leg.StatusAt(made)) + " when the record was made"
	}
	return "its legalisation covers no defined sensitivity it may cover (special ones need an Art. 9.2 ground)"
}
