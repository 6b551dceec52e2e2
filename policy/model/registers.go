package model

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Registers is the whole register set: what an admin edits and what every
// decision reads. It is versioned as one document by the store.
type Registers struct {
	Sensitivities []Sensitivity  `json:"sensitivities"`
	Categories    []Category     `json:"categories"`
	Purposes      []Purpose      `json:"purposes"`
	Legalisations []Legalisation `json:"legalisations"`
	Rules         []Rule         `json:"rules"`
	Roles         []Role         `json:"roles"`
	Config        Config         `json:"config"`
}

// FieldError names the offending field (a JSON path such as
// "legalisations[2].purpose_id") and why it is refused; read from a file,
// also where the field is.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
}

func (e FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d, column %d: %s: %s", e.Line, e.Column, e.Field, e.Reason)
	}
	return e.Field + ": " + e.Reason
}

// ValidationError lists every problem found, not only the first.
type ValidationError struct {
	Errors []FieldError `json:"errors"`
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		parts[i] = fe.Error()
	}
	return fmt.Sprintf("%d validation error(s): %s", len(e.Errors), strings.Join(parts, "; "))
}

type errs struct{ list []FieldError }

func (e *errs) add(field, format string, args ...any) {
	e.list = append(e.list, FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

func (e *errs) err() error {
	if len(e.list) == 0 {
		return nil
	}
	return &ValidationError{Errors: e.list}
}

var (
	idPattern      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)
	articlePattern = regexp.MustCompile(`^(6\.1\.[a-f]|9\.2\.[a-j])$`)
)

func checkID(e *errs, field, id string) {
	if !idPattern.MatchString(id) {
		e.add(field, "must be 1-128 characters of letters, digits, '_', '.', ':' or '-', starting with a letter or digit (got %q)", id)
	}
}

func checkDays(e *errs, field string, d *int) {
	if d != nil && (*d < 0 || *d > 36500) {
		e.add(field, "must be null or 0..36500 days (got %d)", *d)
	}
}

// Validate checks every register on its own and against the others (a
// legalisation's category and purpose exist, coverage only of defined bits,
// rules name existing sensitivities and legalisations, role names unique). It
// returns a *ValidationError listing all problems, or nil.
func (r *Registers) Validate() error {
	var e errs
	var defined uint32
	sensByID := map[string]bool{}
	for i, s := range r.Sensitivities {
		f := fmt.Sprintf("sensitivities[%d]", i)
		checkID(&e, f+".id", s.ID)
		if sensByID[s.ID] {
			e.add(f+".id", "duplicate id %q", s.ID)
		}
		sensByID[s.ID] = true
		if s.Bit < 0 || s.Bit > MaxBit {
			e.add(f+".bit", "must be 0..%d (got %d)", MaxBit, s.Bit)
		} else if defined&s.Mask() != 0 {
			e.add(f+".bit", "bit %d is already used by another sensitivity", s.Bit)
		} else {
			defined |= s.Mask()
		}
		if strings.TrimSpace(s.Name) == "" {
			e.add(f+".name", "is required")
		}
		checkDays(&e, f+".grace_period", s.GracePeriod)
		checkDays(&e, f+".archivation_period", s.ArchivationPeriod)
		checkDays(&e, f+".expiration_period", s.ExpirationPeriod)
		checkDays(&e, f+".obliviation_period", s.ObliviationPeriod)
	}

	cats := map[string]Category{}
	for i, c := range r.Categories {
		f := fmt.Sprintf("categories[%d]", i)
		checkID(&e, f+".id", c.ID)
		if _, dup := cats[c.ID]; dup {
			e.add(f+".id", "duplicate id %q", c.ID)
		}
		cats[c.ID] = c
		if strings.TrimSpace(c.Name) == "" {
			e.add(f+".name", "is required")
		}
		if !articlePattern.MatchString(c.Article) {
			e.add(f+".article", "must be a GDPR ground 6.1.a-6.1.f or 9.2.a-9.2.j (got %q)", c.Article)
		}
	}

	purposes := map[string]bool{}
	for i, p := range r.Purposes {
		f := fmt.Sprintf("purposes[%d]", i)
		checkID(&e, f+".id", p.ID)
		if purposes[p.ID] {
			e.add(f+".id", "duplicate id %q", p.ID)
		}
		purposes[p.ID] = true
		if strings.TrimSpace(p.Name) == "" {
			e.add(f+".name", "is required")
		}
		checkDays(&e, f+".archivation_period", p.ArchivationPeriod)
		checkDays(&e, f+".expiration_period", p.ExpirationPeriod)
		checkDays(&e, f+".obliviation_period", p.ObliviationPeriod)
		switch p.RenewalType {
		case "", RenewalNone, RenewalExplicit, RenewalImplicit, RenewalAuto:
		default:
			e.add(f+".renewal_type", "must be none, explicit, implicit or auto (got %q)", p.RenewalType)
		}
		if p.EvidencePeriodOffset < 0 || p.EvidencePeriodOffset > 36500 {
			e.add(f+".evidence_period_offset", "must be 0..36500 days (got %d)", p.EvidencePeriodOffset)
		}
	}

	legs := map[string]bool{}
	legalKeys := map[string]bool{}
	for i, l := range r.Legalisations {
		f := fmt.Sprintf("legalisations[%d]", i)
		checkID(&e, f+".id", l.ID)
		if legs[l.ID] {
			e.add(f+".id", "duplicate id %q", l.ID)
		}
		legs[l.ID] = true
		if strings.TrimSpace(l.Name) == "" {
			e.add(f+".name", "is required")
		}
		cat, ok := cats[l.CategoryID]
		if !ok {
			e.add(f+".category_id", "names no existing category (%q)", l.CategoryID)
		}
		if !purposes[l.PurposeID] {
			e.add(f+".purpose_id", "names no existing purpose (%q)", l.PurposeID)
		}
		if l.Coverage == 0 {
			e.add(f+".coverage", "must cover at least one sensitivity bit")
		} else if extra := l.Coverage &^ defined; extra != 0 {
			e.add(f+".coverage", "covers bits with no sensitivity defined (mask %#x)", extra)
		}
		if ok && !cat.Special() {
			for _, s := range r.Sensitivities {
				if s.Special && l.Coverage&s.Mask() != 0 && s.Bit >= 0 && s.Bit <= MaxBit {
					e.add(f+".coverage", "covers special sensitivity %q (bit %d) but category %q is not an Art. 9.2 ground", s.ID, s.Bit, cat.ID)
				}
			}
		}
		if l.PrivacyPermission&^permAll != 0 {
			e.add(f+".privacy_permission", "has unknown flags (allowed: 1..256, mask %#x)", permAll)
		}
		if l.ActiveFrom != nil && l.RetireFrom != nil && !l.RetireFrom.After(*l.ActiveFrom) {
			e.add(f+".retire_from", "must be after active_from")
		}
		if (l.SameProject || l.SameProjectGroup) && l.ProjectID == "" {
			e.add(f+".project_id", "is required when same_project or same_project_group is set")
		}
		if l.LegalKey != "" {
			if legalKeys[l.LegalKey] {
				e.add(f+".legal_key", "duplicate legal_key %q", l.LegalKey)
			}
			legalKeys[l.LegalKey] = true
		}
	}

	rules := map[string]bool{}
	for i, ru := range r.Rules {
		f := fmt.Sprintf("rules[%d]", i)
		checkID(&e, f+".id", ru.ID)
		if rules[ru.ID] {
			e.add(f+".id", "duplicate id %q", ru.ID)
		}
		rules[ru.ID] = true
		if !sensByID[ru.SensitivityID] {
			e.add(f+".sensitivity_id", "names no existing sensitivity (%q)", ru.SensitivityID)
		}
		if ru.LegalisationID != nil && !legs[*ru.LegalisationID] {
			e.add(f+".legalisation_id", "names no existing legalisation (%q)", *ru.LegalisationID)
		}
	}

	roles := map[string]bool{}
	for i, ro := range r.Roles {
		f := fmt.Sprintf("roles[%d]", i)
		checkID(&e, f+".name", ro.Name)
		if roles[ro.Name] {
			e.add(f+".name", "duplicate role %q", ro.Name)
		}
		roles[ro.Name] = true
		if extra := ro.SensitivityMask &^ defined; extra != 0 && len(r.Sensitivities) > 0 {
			e.add(f+".sensitivity_mask", "names bits with no sensitivity defined (mask %#x)", extra)
		}
	}

	switch r.Config.IdentityEntity {
	case "", "contact", "phone_number":
	default:
		e.add("config.identity_entity", "must be contact or phone_number (got %q)", r.Config.IdentityEntity)
	}
	if extra := r.Config.DefaultSensitivity &^ defined; extra != 0 {
		e.add("config.default_sensitivity", "names bits with no sensitivity defined (mask %#x)", extra)
	}
	if extra := r.Config.PhoneNumberSensitivity &^ defined; extra != 0 {
		e.add("config.phone_number_sensitivity", "names bits with no sensitivity defined (mask %#x)", extra)
	} else if m := r.Config.PhoneNumberSensitivity; m&(m-1) != 0 {
		// The manual: "the value from the table Sensitivity > List,
		// column Bit mask" — one sensitivity's mask (0: GDPR not used).
		e.add("config.phone_number_sensitivity", "must be the bit mask of one sensitivity, or 0 (got %d)", m)
	}
	return e.err()
}

// SortRules orders rules by rank, then id, the order they are evaluated in.
func SortRules(rules []Rule) {
	sort.SliceStable(rules, func(i, j int) bool {
		if rules[i].Rank != rules[j].Rank {
			return rules[i].Rank < rules[j].Rank
		}
		return rules[i].ID < rules[j].ID
	})
}

// ValidateEvidence checks one evidence record against the registers: the
// legalisation exists, is active when the evidence is made (CreatedAt, or the
// wall clock when unset), and the fields it makes obligatory are filled. It
// lists every problem.
func (ix *Index) ValidateEvidence(ev *Evidence) error {
	var e errs
	if ev.ID != "" {
		checkID(&e, "id", ev.ID)
	}
	if strings.TrimSpace(ev.Subject.Entity) == "" {
		e.add("subject.entity", "is required")
	} else {
		checkID(&e, "subject.entity", ev.Subject.Entity)
	}
	if strings.TrimSpace(ev.Subject.ID) == "" {
		e.add("subject.id", "is required")
	} else if len(ev.Subject.ID) > 256 {
		e.add("subject.id", "is longer than 256 bytes")
	}
	if ev.Origin.IsZero() {
		e.add("origin", "is required")
	}
	l, ok := ix.Legalisations[ev.LegalisationID]
	if !ok {
		e.add("legalisation_id", "names no existing legalisation (%q)", ev.LegalisationID)
		return e.err()
	}
	made := ev.CreatedAt
	if made.IsZero() {
		made = time.Now()
	}
	if st := l.StatusAt(made); st != StatusActive {
		e.add("legalisation_id", "legalisation %q is %s: evidence cannot be made under it (at %s)", l.ID, st, made.UTC().Format(time.RFC3339))
	}
	if !ev.Origin.IsZero() && ev.Origin.After(made.Add(24*time.Hour)) {
		e.add("origin", "is in the future (more than a day after the evidence is made)")
	}
	if l.EvidenceKeyObligatory && strings.TrimSpace(ev.EvidenceKey) == "" {
		e.add("evidence_key", "is obligatory for legalisation %q", l.ID)
	}
	if l.ReferenceObligatory && strings.TrimSpace(ev.Reference) == "" {
		e.add("reference", "is obligatory for legalisation %q", l.ID)
	}
	if l.CommIDObligatory && len(ev.CommIDs) == 0 {
		e.add("comm_ids", "at least one communication is obligatory for legalisation %q", l.ID)
	}
	if l.ContactObligatory && strings.TrimSpace(ev.ContactID) == "" {
		e.add("contact_id", "is obligatory for legalisation %q", l.ID)
	}
	if ev.RenewedAt != nil && ev.RenewedAt.Before(ev.Origin) {
		e.add("renewed_at", "is before origin")
	}
	if ev.SubjectOrigin != nil && ev.SubjectOrigin.After(made) {
		e.add("subject_origin", "is in the future (after the evidence is made)")
	}
	return e.err()
}
