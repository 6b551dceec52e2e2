package model

// Index is a validated register set with lookups by id, built once per
// register version and shared read-only by every decision.
type Index struct {
	Registers *Registers
	// Version is the store's register version the index was built from.
	Version int64

	Sensitivities map[string]*Sensitivity
	ByBit         [MaxBit + 1]*Sensitivity
	Defined       uint32 // mask of defined sensitivity bits
	Special       uint32 // mask of special (Art. 9) bits
	Categories    map[string]*Category
	Purposes      map[string]*Purpose
	Legalisations map[string]*Legalisation
	ByLegalKey    map[string]*Legalisation
	Roles         map[string]*Role
	RulesByRank   []Rule
}

// NewIndex validates r and indexes it. The index keeps r; do not modify it
// afterwards.
func NewIndex(r *Registers, version int64) (*Index, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	ix := &Index{
		Registers:     r,
		Version:       version,
		Sensitivities: make(map[string]*Sensitivity, len(r.Sensitivities)),
		Categories:    make(map[string]*Category, len(r.Categories)),
		Purposes:      make(map[string]*Purpose, len(r.Purposes)),
		Legalisations: make(map[string]*Legalisation, len(r.Legalisations)),
		ByLegalKey:    make(map[string]*Legalisation),
		Roles:         make(map[string]*Role, len(r.Roles)),
	}
	for i := range r.Sensitivities {
		s := &r.Sensitivities[i]
		ix.Sensitivities[s.ID] = s
		ix.ByBit[s.Bit] = s
		ix.Defined |= s.Mask()
		if s.Special {
			ix.Special |= s.Mask()
		}
	}
	for i := range r.Categories {
		ix.Categories[r.Categories[i].ID] = &r.Categories[i]
	}
	for i := range r.Purposes {
		ix.Purposes[r.Purposes[i].ID] = &r.Purposes[i]
	}
	for i := range r.Legalisations {
		l := &r.Legalisations[i]
		ix.Legalisations[l.ID] = l
		if l.LegalKey != "" {
			ix.ByLegalKey[l.LegalKey] = l
		}
	}
	for i := range r.Roles {
		ix.Roles[r.Roles[i].Name] = &r.Roles[i]
	}
	ix.RulesByRank = append([]Rule(nil), r.Rules...)
	SortRules(ix.RulesByRank)
	return ix, nil
}

// Permissions is the union of a caller's roles.
type Permissions struct {
	Roles           []string
	SensitivityMask uint32
	ViewArchived    bool
	ViewExpired     bool
	EditEvidence    bool
	EditItems       bool
	ExportEvidence  bool
	GdprPermission  bool
}

// Permissions unions the named roles; unknown role names grant nothing.
func (ix *Index) Permissions(roles []string) Permissions {
	p := Permissions{Roles: roles}
	for _, name := range roles {
		r, ok := ix.Roles[name]
		if !ok {
			continue
		}
		p.SensitivityMask |= r.SensitivityMask
		p.ViewArchived = p.ViewArchived || r.ViewArchived
		p.ViewExpired = p.ViewExpired || r.ViewExpired
		p.EditEvidence = p.EditEvidence || r.EditEvidence
		p.EditItems = p.EditItems || r.EditItems
		p.ExportEvidence = p.ExportEvidence || r.ExportEvidence
		p.GdprPermission = p.GdprPermission || r.GdprPermission
	}
	return p
}
