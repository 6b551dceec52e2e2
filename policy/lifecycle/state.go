// Package lifecycle computes, for one data subject at one instant, the state of
// each sensitivity bit (active → archived → expired → obliviated), the instant
// of the next transition, the coverage colour and the legal grounds in force.
//
// It is a pure function of the registers, the subject's origin, its evidence
// and the clock: the store calls it whenever a cached subject state is built
// and caches the result until State.Next.
package lifecycle

import (
	"time"

	"github.com/gdprgate/gdprgate/policy/model"
)

// BitState is the lifecycle state of one sensitivity bit. The order is from
// most to least permissive.
type BitState uint8

// The states of a sensitivity bit, in lifecycle order.
const (
	Active BitState = iota
	Archived
	Expired
	Obliviated
)

var bitStateNames = [...]string{"active", "archived", "expired", "obliviated"}

func (s BitState) String() string {
	if int(s) < len(bitStateNames) {
		return bitStateNames[s]
	}
	return "unknown"
}

// Coverage is the subject's GDPR colour in the manual's editors.
type Coverage uint8

// Coverage colours, the manual's: "Red – We have no coverage. Blue – We
// have coverage - at least one explicit. Green – We have at least one
// inherited coverage." Only evidence that grants something now counts (see
// State.CoveredExplicit); when there is both, explicit (blue) wins.
const (
	Red Coverage = iota
	Blue
	Green
)

var coverageNames = [...]string{"red", "blue", "green"}

func (c Coverage) String() string {
	if int(c) < len(coverageNames) {
		return coverageNames[c]
	}
	return "unknown"
}

// Grant is a legal ground in force for the subject now: an active
// legalisation with evidence whose covered bits are still active. Outbound
// communication is allowed only through a grant permitting its type.
type Grant struct {
	LegalisationID    string
	PrivacyPermission uint32
	ProjectID         string
	SameProject       bool
	SameProjectGroup  bool
	Coverage          uint32
	Inherited         bool
}

// State is a subject's computed visibility state. The four masks are disjoint
// and together equal the registers' defined bits.
type State struct {
	Active, Archived, Expired, Obliviated uint32
	// Covered is the mask of bits with covering evidence: their state
	// comes from the evidence, not from the sensitivity's defaults.
	Covered uint32
	// CoveredExplicit and CoveredInherited are the bits covered by evidence
	// that grants something now (its state is active or archived), on the
	// subject itself or inherited from its parent: the coverage colour.
	CoveredExplicit, CoveredInherited uint32
	// Coverage is the colour over every bit (CoverageOf all bits).
	Coverage Coverage
	// Next is the earliest instant after which the state may differ (zero:
	// never). A cached state must not be served at or past Next.
	Next   time.Time
	Grants []Grant
}

// Input is what Evaluate needs to know of a subject.
type Input struct {
	Index  *model.Index
	Origin time.Time
	// Evidence is the subject's own (explicit) evidence.
	Evidence []model.Evidence
	// Inherited is evidence of the subject's parent (a phone number's contact).
	Inherited []model.Evidence
}

// Bit is the state of bit b; bits without a sensitivity are reported
// Obliviated (there is nothing lawful to show).
func (s *State) Bit(b int) BitState {
	m := uint32(1) << uint(b)
	switch {
	case s.Active&m != 0:
		return Active
	case s.Archived&m != 0:
		return Archived
	case s.Expired&m != 0:
		return Expired
	default:
		return Obliviated
	}
}

// Visible is the mask of bits a caller with permissions p sees: bits in its
// sensitivity mask that are active, archived when it may view archived and
// asked for archive mode, or expired when it may view expired. Obliviated bits
// are never visible.
func (s *State) Visible(p model.Permissions, archiveMode bool) uint32 {
	v := s.Active
	if p.ViewArchived && archiveMode {
		v |= s.Archived
	}
	if p.ViewExpired {
		v |= s.Expired
	}
	return v & p.SensitivityMask
}

// Gone reports whether every defined bit is obliviated: the subject's data
// must be treated as deleted.
func (s *State) Gone() bool {
	return s.Active|s.Archived|s.Expired == 0
}

// CoverageOf is the colour over the bits of mask: blue when one of them has
// explicit evidence in force, else green when one has inherited evidence in
// force, else red.
func (s *State) CoverageOf(mask uint32) Coverage {
	switch {
	case s.CoveredExplicit&mask != 0:
		return Blue
	case s.CoveredInherited&mask != 0:
		return Green
	}
	return Red
}

// BitCoverage is the colour of bit b alone.
func (s *State) BitCoverage(b int) Coverage { return s.CoverageOf(uint32(1) << uint(b)) }

// Permits reports whether a grant in force allows outbound communication of
// type comm (a model.Perm* flag) for a communication in project (empty when
// the request names none). A same_project grant only serves its own project.
func (s *State) Permits(comm uint32, project string) bool {
	for i := range s.Grants {
		g := &s.Grants[i]
		if g.PrivacyPermission&comm == 0 {
			continue
		}
		if (g.SameProject || g.SameProjectGroup) && g.ProjectID != project {
			continue
		}
		return true
	}
	return false
}
