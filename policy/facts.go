// Package policy evaluates gdprgate's Rego policies. Go computes facts (the
// caller's permissions, the subject's per-bit states, the route); Rego
// decides. Policies are compiled once; decisions are memoised per distinct
// Facts value so that a warm decision is a map lookup, not an evaluation.
package policy

// Route kinds.
const (
	KindRead     = "read"
	KindList     = "list"
	KindExport   = "export"
	KindWrite    = "write"
	KindOutbound = "outbound"
	// KindCommunication: the request creates a communication record
	// (inbound or outbound call, message, chat): the rules table gives its
	// sensitivity and the evidence gdprgate records once the backend
	// answered 2xx.
	KindCommunication = "communication"
	KindUnmapped      = "unmapped"
)

// Facts is everything the default policy decides on. It is comparable and is
// the memo key: two requests with equal Facts get the same Decision.
type Facts struct {
	RouteKind string
	// CommType is the outbound communication type name ("campaign_oc"), or "".
	CommType string
	Enforced bool

	Authenticated bool
	// Roles is the caller's sorted, comma-joined role names.
	Roles           string
	SensitivityMask uint32
	ViewArchived    bool
	ViewExpired     bool
	ExportEvidence  bool
	EditItems       bool
	// EditEvidence: the manual's EditGdprEvidence permission (the default
	// policy lets evidence be recorded from communications only with it).
	EditEvidence bool
	// GdprPermission: the manual's GdprPermission (the default policy lets
	// a communication renew "explicit" purposes only with it).
	GdprPermission bool
	ArchiveMode    bool

	// SubjectPresent: the request names its subject (false when the subject is
	// only known from the response body, or the route has none).
	SubjectPresent bool
	SubjectKnown   bool
	Restricted     bool
	Active         uint32
	Archived       uint32
	Expired        uint32
	Obliviated     uint32
	// Coverage is "red", "blue" or "green", over every bit.
	Coverage string
	// CoverageExplicit and CoverageInherited are the bits covered by
	// evidence in force now, on the subject itself or inherited: the
	// policy colours per bit and over the caller's bits from them.
	CoverageExplicit  uint32
	CoverageInherited uint32
	// CommPermitted: a grant in force permits CommType (respecting same_project).
	CommPermitted bool
	// WriteMask is the sensitivity bits of the mapped fields a write's
	// body changes (0 on other routes).
	WriteMask uint32
	// Unavailable: the store could not give fresh facts; the policy fails
	// closed unless the operator configured fail-open.
	Unavailable bool
	FailOpen    bool
}

// Decision is the policy's answer for one Facts value.
type Decision struct {
	Allow bool `json:"allow"`
	// Status is the HTTP status of a denial (401, 403, 404, 503).
	Status int `json:"status"`
	// Reason is a stable machine-readable code ("subject_not_found",
	// "export_not_permitted", …); Message is for humans. Neither carries
	// personal data.
	Reason  string `json:"reason"`
	Message string `json:"message"`
	// Headers are added to the upstream request and to the response
	// (x-gdpr-coverage).
	Headers map[string]string `json:"headers"`
	// VisibleMask is the sensitivity bits the response may show for this
	// subject; the rewriter redacts every mapped field of any other bit.
	VisibleMask uint32 `json:"visible_mask"`
	// DeniedMask, on a refused write, is the bits of the changed fields the
	// caller may not write; gdprgate names those fields (never values).
	DeniedMask uint32 `json:"denied_mask"`
	// RecordEvidence: on a communication route, gdprgate may record the
	// evidence the rules table gives (the caller's edit_evidence in the
	// default policy).
	RecordEvidence bool `json:"record_evidence"`
	// RenewExplicit: a communication marked as a renewal may also renew
	// evidence of purposes with renewal_type explicit (the caller's
	// gdpr_permission in the default policy).
	RenewExplicit bool `json:"renew_explicit"`

	// Shape is the form the policy's result had: ShapeGDPR (the object
	// above), ShapeBool (opa-envoy-plugin's boolean) or ShapeEnvoy
	// (opa-envoy-plugin's object).
	Shape string `json:"-"`
	// MaskSet: the result gave visible_mask itself (always so for
	// ShapeGDPR); otherwise the GDPR decision's mask applies.
	MaskSet bool `json:"-"`
	// The opa-envoy-plugin result fields, with the meaning they have there.
	// EnvoyHeaders ("headers") are added to the upstream request when the
	// request is allowed and sent to the client when it is denied.
	EnvoyHeaders           []Header       `json:"-"`
	ResponseHeadersToAdd   []Header       `json:"-"`
	RequestHeadersToRemove []string       `json:"-"`
	Body                   string         `json:"-"`
	DynamicMetadata        map[string]any `json:"-"`
	// Result is the policy's result as it returned it (decision logs).
	Result any `json:"-"`
}

// Result shapes a policy may return.
const (
	ShapeGDPR  = "gdprgate"
	ShapeBool  = "boolean"
	ShapeEnvoy = "envoy"
)

// Header is one header of an opa-envoy-plugin result, in order.
type Header struct{ Key, Value string }
