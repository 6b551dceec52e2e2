package lifecycle

import (
	"math"
	"time"

	"github.com/gdprgate/gdprgate/policy/model"
)

const (
	day   = int64(24 * time.Hour)
	never = int64(math.MaxInt64)
)

// evInfo is one evidence record reduced to what every bit needs: the bits it
// covers and the instants (unix ns) its purpose archives, expires and
// forgets the data.
type evInfo struct {
	covers                     uint32
	archive, expire, obliviate int64
	inherited                  bool
	leg                        *model.Legalisation
}

// grants reports whether the evidence is a legal ground in force at now: its
// legalisation permits some communication, is active now, and the purpose
// has not yet archived the data.
func (e *evInfo) grants(now time.Time, t int64) bool {
	return e.leg.PrivacyPermission != 0 && e.leg.StatusAt(now) == model.StatusActive &&
		stateAt(t, e.archive, e.expire, e.obliviate) == Active
}

// stateAt is the state an evidence (or the defaults) gives at t.
func stateAt(t, archive, expire, obliviate int64) BitState {
	switch {
	case t >= obliviate:
		return Obliviated
	case t >= expire:
		return Expired
	case t >= archive:
		return Archived
	}
	return Active
}

// earliest is the earlier of a fixed time and origin + period days; never
// when both are unset.
func earliest(fixed *time.Time, origin int64, period *int) int64 {
	v := never
	if fixed != nil {
		v = fixed.UnixNano()
	}
	if period != nil {
		if p := addDays(origin, *period); p < v {
			v = p
		}
	}
	return v
}

func addDays(t int64, days int) int64 {
	if t == never {
		return never
	}
	return t + int64(days)*day
}

// nextAfter lowers *next to v when v is a future instant.
func nextAfter(next *int64, now, v int64) {
	if v > now && v < *next {
		*next = v
	}
}

// Evaluate computes the subject's state at now, following DESIGN.md §2:
//
//  1. inside a sensitivity's grace period the bit is active whatever the
//     evidence;
//  2. with evidence whose legalisation covers the bit (and was active at the
//     evidence's origin; for special bits, an Art. 9.2 ground) the most
//     permissive state any such evidence gives wins;
//  3. otherwise the sensitivity's default periods apply.
//
// Every transition instant is "at or after": at exactly origin + period the
// new state holds. Next is a safe lower bound: the state may stay the same at
// Next, but never changes before it.
func Evaluate(in Input, now time.Time) State {
	var s State
	ix := in.Index
	if ix == nil {
		return s
	}
	t := now.UnixNano()
	origin := in.Origin.UnixNano()
	next := never

	var buf [16]evInfo
	evs := buf[:0]
	evs = collect(evs, ix, in.Evidence, false, t, &next)
	evs = collect(evs, ix, in.Inherited, true, t, &next)

	for b := 0; b <= model.MaxBit; b++ {
		sens := ix.ByBit[b]
		if sens == nil {
			continue
		}
		m := uint32(1) << uint(b)
		graceEnd := origin
		if sens.GracePeriod != nil {
			graceEnd = addDays(origin, *sens.GracePeriod)
		}
		nextAfter(&next, t, graceEnd)

		st := Obliviated
		covered := false
		for i := range evs {
			e := &evs[i]
			if e.covers&m == 0 {
				continue
			}
			covered = true
			es := stateAt(t, e.archive, e.expire, e.obliviate)
			if es < st {
				st = es
			}
			// The colour counts only evidence that grants something now:
			// the data is still lawfully kept (active or archived) under
			// it. Expired or forgotten evidence is no coverage.
			if es <= Archived {
				if e.inherited {
					s.CoveredInherited |= m
				} else {
					s.CoveredExplicit |= m
				}
			}
			nextAfter(&next, t, e.archive)
			nextAfter(&next, t, e.expire)
			nextAfter(&next, t, e.obliviate)
		}
		if !covered {
			archive := never
			if sens.ArchivationPeriod != nil {
				archive = addDays(origin, *sens.ArchivationPeriod)
			}
			expire, obliviate := graceEnd, graceEnd
			if sens.ExpirationPeriod != nil {
				expire = addDays(origin, *sens.ExpirationPeriod)
			}
			if sens.ObliviationPeriod != nil {
				obliviate = addDays(origin, *sens.ObliviationPeriod)
			}
			st = stateAt(t, archive, expire, obliviate)
			nextAfter(&next, t, archive)
			nextAfter(&next, t, expire)
			nextAfter(&next, t, obliviate)
		} else {
			s.Covered |= m
		}
		if t < graceEnd {
			st = Active
		}
		switch st {
		case Active:
			s.Active |= m
		case Archived:
			s.Archived |= m
		case Expired:
			s.Expired |= m
		default:
			s.Obliviated |= m
		}
	}
	s.Coverage = s.CoverageOf(^uint32(0))

	// Grants: legal grounds in force now, for outbound communication. Counted
	// first so the slice is allocated once, at its final size.
	n := 0
	for i := range evs {
		if evs[i].grants(now, t) {
			n++
		}
	}
	if n > 0 {
		s.Grants = make([]Grant, 0, n)
		for i := range evs {
			e := &evs[i]
			if !e.grants(now, t) {
				continue
			}
			s.Grants = append(s.Grants, Grant{
				LegalisationID:    e.leg.ID,
				PrivacyPermission: e.leg.PrivacyPermission,
				ProjectID:         e.leg.ProjectID,
				SameProject:       e.leg.SameProject,
				SameProjectGroup:  e.leg.SameProjectGroup,
				Coverage:          e.covers,
				Inherited:         e.inherited,
			})
		}
	}
	if next != never {
		s.Next = time.Unix(0, next).UTC()
	}
	return s
}

// collect reduces evidence records to evInfo, skipping those that cannot
// cover anything: unknown legalisation, purpose or category, a legalisation
// not active when the evidence was made, or an origin still in the future.
func collect(dst []evInfo, ix *model.Index, list []model.Evidence, inherited bool, t int64, next *int64) []evInfo {
	for i := range list {
		ev := &list[i]
		leg := ix.Legalisations[ev.LegalisationID]
		if leg == nil {
			continue
		}
		p := ix.Purposes[leg.PurposeID]
		cat := ix.Categories[leg.CategoryID]
		made := ev.CreatedAt
		if made.IsZero() {
			made = ev.Origin
		}
		if p == nil || cat == nil || leg.StatusAt(made) != model.StatusActive {
			continue
		}
		o := ev.Origin.UnixNano()
		if o > t {
			nextAfter(next, t, o)
			continue
		}
		if ev.RenewedAt != nil && p.RenewalType != "" && p.RenewalType != model.RenewalNone && ev.RenewedAt.UnixNano() > o {
			o = ev.RenewedAt.UnixNano()
		}
		covers := leg.Coverage & ix.Defined
		if !cat.Special() {
			covers &^= ix.Special
		}
		if covers == 0 {
			continue
		}
		// Grants end when the legalisation retires.
		if leg.RetireFrom != nil {
			nextAfter(next, t, leg.RetireFrom.UnixNano())
		}
		if leg.ActiveFrom != nil {
			nextAfter(next, t, leg.ActiveFrom.UnixNano())
		}
		e := evInfo{
			covers:    covers,
			archive:   earliest(p.ArchivationTime, o, p.ArchivationPeriod),
			expire:    earliest(p.ExpirationTime, o, p.ExpirationPeriod),
			obliviate: earliest(p.ObliviationTime, o, p.ObliviationPeriod),
			inherited: inherited,
			leg:       leg,
		}
		// evidence_period_offset does not extend the data: it is how much
		// longer the evidence record itself is kept (see Retention).
		dst = append(dst, e)
	}
	return dst
}

// Retention is the instant from which an evidence record, and the proof
// communications it names, may be purged: when its purpose forgets the data
// the evidence covers (the earlier of the fixed obliviation time and the
// evidence's origin, moved by renewal, plus the obliviation period), plus
// the purpose's evidence_period_offset days. The manual: the offset is "the
// number of days the ExpireAfter expiration action and ObliviateAfter are
// [postponed] when referring to GdprEvidence (proof) communications and the
// GdprEvidence record itself". ok is false when the record is kept: its
// purpose never forgets, or the registers no longer know its legalisation or
// purpose.
func Retention(ix *model.Index, ev *model.Evidence) (time.Time, bool) {
	if ix == nil {
		return time.Time{}, false
	}
	leg := ix.Legalisations[ev.LegalisationID]
	if leg == nil {
		return time.Time{}, false
	}
	p := ix.Purposes[leg.PurposeID]
	if p == nil {
		return time.Time{}, false
	}
	o := ev.Origin.UnixNano()
	if ev.RenewedAt != nil && p.RenewalType != "" && p.RenewalType != model.RenewalNone && ev.RenewedAt.UnixNano() > o {
		o = ev.RenewedAt.UnixNano()
	}
	end := addDays(earliest(p.ObliviationTime, o, p.ObliviationPeriod), p.EvidencePeriodOffset)
	if end == never {
		return time.Time{}, false
	}
	return time.Unix(0, end).UTC(), true
}
