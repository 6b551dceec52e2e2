// Package model defines gdprgate's GDPR registers — sensitivities, legal
// categories, purposes, legalisations, rules, roles, configuration — and the
// evidence that proves a legal ground for a data subject. The vocabulary is
// contact-centre GDPR practice's, explained in the README ("The model in one
// page"); JSON field names are the admin API's contract.
//
// Types here carry data and validation only. The lifecycle engine
// (policy/lifecycle) turns them into per-bit states; Rego turns states into
// decisions.
package model

import (
	"strings"
	"time"
)

// MaxBit is the highest sensitivity bit: masks are uint32.
const MaxBit = 31

// Sensitivity is one degree of personal-data sensitivity, identified by a bit
// of the sensitivity mask. Periods are days; nil has the meaning the manual
// gives each period (see the field comments).
type Sensitivity struct {
	ID          string `json:"id"`
	Bit         int    `json:"bit"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Special marks Art. 9 data: only an Art. 9.2 ground covers it.
	Special bool `json:"special"`
	// GracePeriod: days the data is kept whatever the evidence (nil = 0).
	GracePeriod *int `json:"grace_period"`
	// ArchivationPeriod: without evidence, archived after this many days
	// (nil = never archived by default).
	ArchivationPeriod *int `json:"archivation_period"`
	// ExpirationPeriod: without evidence, inaccessible after this many days
	// (nil = right after the grace period).
	ExpirationPeriod *int `json:"expiration_period"`
	// ObliviationPeriod: without evidence, deleted after this many days
	// (nil = right after the grace period).
	ObliviationPeriod *int `json:"obliviation_period"`
}

// Mask is the sensitivity's bit as a mask.
func (s Sensitivity) Mask() uint32 { return 1 << uint(s.Bit) }

// Category is a legal ground: GDPR Art. 6.1(a–f) or Art. 9.2(a–j).
type Category struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Article is "6.1.a" … "6.1.f" or "9.2.a" … "9.2.j".
	Article string `json:"article"`
}

// Special reports whether the category is an Art. 9.2 ground, the only kind
// that may cover special (Art. 9) sensitivities.
func (c Category) Special() bool { return strings.HasPrefix(c.Article, "9.2.") }

// RenewalType says how an evidence's origin moves for self-extending purposes.
type RenewalType string

// Renewal types of the manual.
const (
	RenewalNone     RenewalType = "none"
	RenewalExplicit RenewalType = "explicit"
	RenewalImplicit RenewalType = "implicit"
	RenewalAuto     RenewalType = "auto"
)

// Purpose is why data is processed; it fixes when evidence-backed data is
// archived, expires and is forgotten. For each step the earlier of the fixed
// time and origin + period wins; both nil means never.
type Purpose struct {
	ID                   string      `json:"id"`
	Name                 string      `json:"name"`
	Description          string      `json:"description,omitempty"`
	GroupName            string      `json:"group_name,omitempty"`
	ArchivationTime      *time.Time  `json:"archivation_time"`
	ArchivationPeriod    *int        `json:"archivation_period"`
	ExpirationTime       *time.Time  `json:"expiration_time"`
	ExpirationPeriod     *int        `json:"expiration_period"`
	ObliviationTime      *time.Time  `json:"obliviation_time"`
	ObliviationPeriod    *int        `json:"obliviation_period"`
	RenewalType          RenewalType `json:"renewal_type"`
	EvidencePeriodOffset int         `json:"evidence_period_offset"`
}

// Privacy permission flags: which outbound communication a legalisation allows.
const (
	PermAdhocOC    uint32 = 1
	PermCallbackOC uint32 = 2
	PermCampaignOC uint32 = 4
	PermAdhocM     uint32 = 8
	PermAnswerM    uint32 = 16
	PermCampaignM  uint32 = 32
	PermAdhocCH    uint32 = 64
	PermReturnCH   uint32 = 128
	PermCampaignBM uint32 = 256
	permAll               = 511
)

// CommTypes maps the communication type names used in configs and Rego to
// their privacy_permission flag.
var CommTypes = map[string]uint32{
	"adhoc_oc": PermAdhocOC, "callback_oc": PermCallbackOC, "campaign_oc": PermCampaignOC,
	"adhoc_m": PermAdhocM, "answer_m": PermAnswerM, "campaign_m": PermCampaignM,
	"adhoc_ch": PermAdhocCH, "return_ch": PermReturnCH, "campaign_bm": PermCampaignBM,
}

// Legalisation combines a category and a purpose into a usable legal ground
// covering some sensitivities.
type Legalisation struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	CategoryID string `json:"category_id"`
	PurposeID  string `json:"purpose_id"`
	// Coverage is a mask of sensitivity bits.
	Coverage              uint32 `json:"coverage"`
	EvidenceKeyObligatory bool   `json:"evidence_key_obligatory"`
	ReferenceObligatory   bool   `json:"reference_obligatory"`
	CommIDObligatory      bool   `json:"comm_id_obligatory"`
	ContactObligatory     bool   `json:"contact_obligatory"`
	// PrivacyPermission is a set of Perm* flags.
	PrivacyPermission uint32     `json:"privacy_permission"`
	ProjectID         string     `json:"project_id,omitempty"`
	SameProject       bool       `json:"same_project"`
	SameProjectGroup  bool       `json:"same_project_group"`
	ActiveFrom        *time.Time `json:"active_from"`
	RetireFrom        *time.Time `json:"retire_from"`
	// LegalKey identifies the legalisation in evidence imports.
	LegalKey string `json:"legal_key,omitempty"`
}

// LegalisationStatus is derived from active_from / retire_from.
type LegalisationStatus string

// Legalisation statuses of the manual.
const (
	StatusPrepared LegalisationStatus = "prepared"
	StatusActive   LegalisationStatus = "active"
	StatusRetired  LegalisationStatus = "retired"
)

// StatusAt is the legalisation's status at t: prepared while t < active_from,
// retired from retire_from on, active in between (nil bounds are open).
func (l Legalisation) StatusAt(t time.Time) LegalisationStatus {
	if l.RetireFrom != nil && !t.Before(*l.RetireFrom) {
		return StatusRetired
	}
	if l.ActiveFrom != nil && t.Before(*l.ActiveFrom) {
		return StatusPrepared
	}
	return StatusActive
}

// Rule is one row of the scenario table: for a communication matching its
// conditions (nil = not checked) it adds a sensitivity and, optionally, the
// evidence of a legalisation. Rules are evaluated by rank; a terminating rule
// stops the evaluation.
type Rule struct {
	ID             string  `json:"id"`
	Name           string  `json:"name"`
	Rank           int     `json:"rank"`
	SensitivityID  string  `json:"sensitivity_id"`
	LegalisationID *string `json:"legalisation_id"`
	Terminate      bool    `json:"terminate"`
	Channel        *string `json:"channel"`
	ProjectID      *string `json:"project_id"`
	LanguageID     *string `json:"language_id"`
	PhonebookID    *string `json:"phonebook_id"`
	OutboundListID *string `json:"outbound_list_id"`
	TopicID        *string `json:"topic_id"`
	SubtopicID     *string `json:"subtopic_id"`
}

// Role is a named set of GDPR permissions; a caller's permissions are the
// union of its roles.
type Role struct {
	Name string `json:"name"`
	// SensitivityMask: the sensitivity bits the role may see at all.
	SensitivityMask uint32 `json:"sensitivity_mask"`
	ViewArchived    bool   `json:"view_archived"`
	ViewExpired     bool   `json:"view_expired"`
	EditEvidence    bool   `json:"edit_evidence"`
	EditItems       bool   `json:"edit_items"`
	ExportEvidence  bool   `json:"export_evidence"`
	GdprPermission  bool   `json:"gdpr_permission"`
}

// Config holds the manual's system settings.
type Config struct {
	// GdprEnforced false: "the corresponding processes of archiving,
	// expiration and forgetting in data processing are not running". The
	// lifecycle is frozen (see lifecycle.Freeze); role masks, permissions,
	// restrictions and wipes still apply.
	GdprEnforced bool `json:"gdpr_enforced"`
	// EnforcementStoppedAt is when gdpr_enforced last went from true to
	// false; what was obliviated then stays obliviated. The admin API sets
	// it (a client's value is ignored); nil while enforced, or when GDPR
	// was never enforced.
	EnforcementStoppedAt *time.Time `json:"enforcement_stopped_at,omitempty"`
	// DefaultSensitivity is a mask given to new communications before an
	// agent sets one.
	DefaultSensitivity uint32 `json:"default_sensitivity"`
	// IdentityEntity is "contact" or "phone_number".
	IdentityEntity         string `json:"identity_entity"`
	PhoneNumberSensitivity uint32 `json:"phone_number_sensitivity"`
	SuspendWipes           bool   `json:"suspend_wipes"`
	SuspendWipeIssue       bool   `json:"suspend_wipe_issue"`
}

// SubjectRef names a data subject: an entity type and its id in the backend.
type SubjectRef struct {
	Entity string `json:"entity"`
	ID     string `json:"id"`
}

// String is "entity/id". It contains personal identifiers: never log it.
func (r SubjectRef) String() string { return r.Entity + "/" + r.ID }

// Evidence proves that a legal ground (a legalisation) exists for a subject.
type Evidence struct {
	ID             string     `json:"id"`
	Subject        SubjectRef `json:"subject"`
	LegalisationID string     `json:"legalisation_id"`
	EvidenceKey    string     `json:"evidence_key,omitempty"`
	Reference      string     `json:"reference,omitempty"`
	CommIDs        []string   `json:"comm_ids,omitempty"`
	ContactID      string     `json:"contact_id,omitempty"`
	ProjectID      string     `json:"project_id,omitempty"`
	// Origin is when the evidence (and the legal ground) came into being.
	Origin time.Time `json:"origin"`
	// RenewedAt moves the origin for purposes that renew.
	RenewedAt *time.Time `json:"renewed_at,omitempty"`
	// CreatedAt is when the evidence was made (recorded). Its legalisation
	// must be active then; an evidence may document a legal ground whose
	// origin is older than the legalisation's record. Zero means "now" when
	// the evidence is validated, and Origin when an old record is evaluated.
	CreatedAt time.Time `json:"created_at,omitempty"`
	CreatedBy string    `json:"created_by,omitempty"`
	// SubjectOrigin, on input only, states when the subject's personal data
	// originated (an import from the system that created it). The store
	// records it as the subject's origin unless an operator set one; it is
	// not kept in the evidence record.
	SubjectOrigin *time.Time `json:"subject_origin,omitempty"`
}

// Subject is what the store knows of a data subject besides its evidence.
type Subject struct {
	Ref SubjectRef `json:"subject"`
	// Origin is when the subject's personal data originated (grace and the
	// sensitivities' default periods count from here).
	Origin time.Time `json:"origin"`
	// Parent, when set, is the subject whose evidence this one inherits (a
	// phone number inheriting its contact's evidence).
	Parent *SubjectRef `json:"parent,omitempty"`
}

// TrackEnforcement sets c.EnforcementStoppedAt for a configuration replacing
// prev at now: the instant enforcement stops is recorded, kept while it stays
// off, and cleared when it is on. Whatever a client sent is overwritten: the
// instant decides which data never comes back.
func (c *Config) TrackEnforcement(prev Config, now time.Time) {
	switch {
	case c.GdprEnforced:
		c.EnforcementStoppedAt = nil
	case prev.GdprEnforced:
		t := now.UTC()
		c.EnforcementStoppedAt = &t
	default:
		c.EnforcementStoppedAt = prev.EnforcementStoppedAt
	}
}
