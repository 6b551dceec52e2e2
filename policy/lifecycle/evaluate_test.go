package lifecycle

import (
	"strings"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/policy/model"
)

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func days(n int) *int { return &n }

func ago(d int) time.Time { return now.AddDate(0, 0, -d) }

func at(t time.Time) *time.Time { return &t }

// scenario builds examples/crm/README.md's registers relative to now.
func scenario(t testing.TB) *model.Index {
	t.Helper()
	r := &model.Registers{
		Sensitivities: []model.Sensitivity{
			{ID: "auxiliary", Bit: 0, Name: "auxiliary", GracePeriod: days(30), ExpirationPeriod: days(365), ObliviationPeriod: days(1095)},
			{ID: "contact", Bit: 1, Name: "contact", GracePeriod: days(30), ArchivationPeriod: days(180), ExpirationPeriod: days(365), ObliviationPeriod: days(730)},
			{ID: "significant", Bit: 2, Name: "significant", GracePeriod: days(0), ObliviationPeriod: days(365)},
			{ID: "health", Bit: 3, Name: "health", Special: true, GracePeriod: days(0)},
		},
		Categories: []model.Category{
			{ID: "contract", Name: "contract", Article: "6.1.b"},
			{ID: "consent", Name: "consent", Article: "6.1.a"},
			{ID: "explicit-consent", Name: "explicit consent", Article: "9.2.a"},
			{ID: "legitimate-interest", Name: "legitimate interest", Article: "6.1.f"},
		},
		Purposes: []model.Purpose{
			{ID: "customer-care", Name: "customer care", ArchivationPeriod: days(365), ExpirationPeriod: days(730), ObliviationPeriod: days(1095), RenewalType: model.RenewalAuto, EvidencePeriodOffset: 30},
			{ID: "marketing", Name: "marketing", ExpirationPeriod: days(365), ObliviationPeriod: days(400), RenewalType: model.RenewalExplicit},
			{ID: "medical-follow-up", Name: "medical follow-up", ExpirationPeriod: days(180), ObliviationPeriod: days(365)},
			{ID: "fixed", Name: "fixed dates", ArchivationTime: at(ago(50)), ArchivationPeriod: days(10), ExpirationTime: at(now.AddDate(0, 0, 100)), ExpirationPeriod: days(500), ObliviationPeriod: days(1000)},
			{ID: "no-renewal", Name: "no renewal", ExpirationPeriod: days(100), ObliviationPeriod: days(200), RenewalType: model.RenewalNone},
			{ID: "fixed-offset", Name: "fixed dates with an evidence offset", ExpirationTime: at(now.AddDate(0, 0, 100)), ExpirationPeriod: days(500), ObliviationTime: at(now.AddDate(0, 0, 200)), ObliviationPeriod: days(1000), EvidencePeriodOffset: 30},
		},
		Legalisations: []model.Legalisation{
			{ID: "contract-care", Name: "contract care", CategoryID: "contract", PurposeID: "customer-care", Coverage: 7, PrivacyPermission: 27, ActiveFrom: at(ago(1000))},
			{ID: "marketing-consent", Name: "marketing consent", CategoryID: "consent", PurposeID: "marketing", Coverage: 3, PrivacyPermission: 36, EvidenceKeyObligatory: true},
			{ID: "health-consent", Name: "health consent", CategoryID: "explicit-consent", PurposeID: "medical-follow-up", Coverage: 8, ReferenceObligatory: true},
			{ID: "old-legit-interest", Name: "old legitimate interest", CategoryID: "legitimate-interest", PurposeID: "customer-care", Coverage: 3, ActiveFrom: at(ago(1000)), RetireFrom: at(ago(10))},
			{ID: "future-program", Name: "future program", CategoryID: "consent", PurposeID: "marketing", Coverage: 3, ActiveFrom: at(now.AddDate(0, 0, 30))},
			{ID: "fixed-care", Name: "fixed", CategoryID: "contract", PurposeID: "fixed", Coverage: 1},
			{ID: "no-renewal", Name: "no renewal", CategoryID: "contract", PurposeID: "no-renewal", Coverage: 1},
			{ID: "fixed-offset-care", Name: "fixed with offset", CategoryID: "contract", PurposeID: "fixed-offset", Coverage: 1},
			{ID: "project-care", Name: "project care", CategoryID: "contract", PurposeID: "customer-care", Coverage: 3, PrivacyPermission: model.PermCampaignOC, ProjectID: "p1", SameProject: true},
		},
	}
	ix, err := model.NewIndex(r, 1)
	if err != nil {
		t.Fatalf("scenario registers: %v", err)
	}
	return ix
}

func made(e model.Evidence, t time.Time) model.Evidence { e.CreatedAt = t; return e }

func ev(leg string, origin time.Time) model.Evidence {
	return model.Evidence{LegalisationID: leg, Origin: origin, Subject: model.SubjectRef{Entity: "contact", ID: "x"}}
}

type masks struct{ active, archived, expired, obliviated uint32 }

func TestEvaluateScenarioContacts(t *testing.T) {
	ix := scenario(t)
	tests := []struct {
		name      string
		origin    time.Time
		evidence  []model.Evidence
		inherited []model.Evidence
		want      masks
		coverage  Coverage
		covered   uint32
	}{
		{"c-1 Alice: all evidence fresh", ago(100),
			[]model.Evidence{ev("contract-care", ago(100)), ev("marketing-consent", ago(100)), ev("health-consent", ago(100))}, nil,
			masks{active: 15}, Blue, 15},
		{"c-2 Bob: contract-care archived after 365d, health obliviated by default", ago(500),
			[]model.Evidence{ev("contract-care", ago(500))}, nil,
			masks{archived: 7, obliviated: 8}, Blue, 7},
		{"c-4 Dan: no evidence, grace keeps 0-1, bit 2 expired, bit 3 obliviated", ago(10),
			nil, nil,
			masks{active: 3, expired: 4, obliviated: 8}, Red, 0},
		// Her only evidence is forgotten: "Red – We have no coverage".
		{"c-5 Eve: everything obliviated", ago(2000),
			[]model.Evidence{made(ev("contract-care", ago(2000)), now)}, nil,
			masks{obliviated: 15}, Red, 7},
		{"no evidence at all, old subject: defaults", ago(400),
			nil, nil,
			// bit0: expired at 365, obliviates at 1095; bit1: expired (365) not yet obliviated (730);
			// bit2: obliviated at 365; bit3: obliviated after grace 0.
			masks{expired: 3, obliviated: 12}, Red, 0},
		{"no evidence, 200 days: bit 1 archived by default, bit 0 active (no default archivation)", ago(200),
			nil, nil,
			masks{active: 1, archived: 2, expired: 4, obliviated: 8}, Red, 0},
		{"inherited evidence colours green", ago(100),
			nil, []model.Evidence{ev("contract-care", ago(100))},
			masks{active: 7, obliviated: 8}, Green, 7},
		{"explicit and inherited colours blue", ago(100),
			[]model.Evidence{ev("marketing-consent", ago(100))}, []model.Evidence{ev("contract-care", ago(100))},
			masks{active: 7, obliviated: 8}, Blue, 7},
		{"most permissive evidence wins: marketing expired, contract still active", ago(500),
			[]model.Evidence{ev("marketing-consent", ago(500)), ev("contract-care", ago(200))}, nil,
			masks{active: 7, obliviated: 8}, Blue, 7},
		{"evidence of a retired legalisation made before retirement still covers", ago(100),
			[]model.Evidence{ev("old-legit-interest", ago(100))}, nil,
			masks{active: 3, expired: 4, obliviated: 8}, Blue, 3},
		{"evidence made after its legalisation retired covers nothing", ago(100),
			[]model.Evidence{ev("old-legit-interest", ago(5))}, nil,
			masks{active: 3, expired: 4, obliviated: 8}, Red, 0},
		{"evidence of a prepared legalisation covers nothing", ago(100),
			[]model.Evidence{ev("future-program", ago(1))}, nil,
			masks{active: 3, expired: 4, obliviated: 8}, Red, 0},
		{"evidence with an origin in the future does not cover yet", ago(100),
			[]model.Evidence{ev("contract-care", now.Add(time.Hour))}, nil,
			masks{active: 3, expired: 4, obliviated: 8}, Red, 0},
		{"unknown legalisation is ignored", ago(100),
			[]model.Evidence{ev("nope", ago(100))}, nil,
			masks{active: 3, expired: 4, obliviated: 8}, Red, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Evaluate(Input{Index: ix, Origin: tc.origin, Evidence: tc.evidence, Inherited: tc.inherited}, now)
			got := masks{s.Active, s.Archived, s.Expired, s.Obliviated}
			if got != tc.want {
				t.Errorf("masks = %+v, want %+v", got, tc.want)
			}
			if s.Coverage != tc.coverage {
				t.Errorf("coverage = %v, want %v", s.Coverage, tc.coverage)
			}
			if s.Covered != tc.covered {
				t.Errorf("covered = %#x, want %#x", s.Covered, tc.covered)
			}
			if all := s.Active | s.Archived | s.Expired | s.Obliviated; all != ix.Defined {
				t.Errorf("masks cover %#x, want every defined bit %#x", all, ix.Defined)
			}
		})
	}
}

func TestEvaluateSpecialSensitivity(t *testing.T) {
	ix := scenario(t)
	// A 6.1 ground that claims bit 3 cannot be registered at all…
	bad := *ix.Registers
	bad.Legalisations = append(append([]model.Legalisation(nil), bad.Legalisations...),
		model.Legalisation{ID: "contract-health", Name: "x", CategoryID: "contract", PurposeID: "customer-care", Coverage: 8})
	if _, err := model.NewIndex(&bad, 2); err == nil {
		t.Fatal("a 6.1 legalisation covering a special sensitivity was accepted")
	}
	// …and if such a legalisation is already stored, its evidence still does
	// not cover the special bit (defence in depth).
	ix.Legalisations["contract-care"].Coverage = 15
	defer func() { ix.Legalisations["contract-care"].Coverage = 7 }()
	s := Evaluate(Input{Index: ix, Origin: ago(100), Evidence: []model.Evidence{ev("contract-care", ago(100))}}, now)
	if s.Bit(3) != Obliviated || s.Covered&8 != 0 {
		t.Errorf("special bit with a 6.1 ground: state %v covered %#x, want obliviated and uncovered", s.Bit(3), s.Covered)
	}
	s = Evaluate(Input{Index: ix, Origin: ago(100), Evidence: []model.Evidence{ev("health-consent", ago(100))}}, now)
	if s.Bit(3) != Active || s.Covered&8 == 0 {
		t.Errorf("special bit with a 9.2 ground: state %v covered %#x, want active and covered", s.Bit(3), s.Covered)
	}
}

func TestEvaluateBoundaries(t *testing.T) {
	ix := scenario(t)
	origin := ago(0)
	cases := []struct {
		name string
		at   time.Time
		ev   []model.Evidence
		bit  int
		want BitState
	}{
		{"grace: one ns before its end the bit is active", origin.AddDate(0, 0, 30).Add(-1), nil, 1, Active},
		{"grace: exactly at its end the default applies (bit 1 not archived before 180d)", origin.AddDate(0, 0, 30), nil, 1, Active},
		{"default archivation exactly at origin+180d", origin.AddDate(0, 0, 180), nil, 1, Archived},
		{"default archivation one ns before", origin.AddDate(0, 0, 180).Add(-1), nil, 1, Active},
		{"default expiration exactly at 365d", origin.AddDate(0, 0, 365), nil, 1, Expired},
		{"default obliviation exactly at 730d", origin.AddDate(0, 0, 730), nil, 1, Obliviated},
		{"zero grace and null periods: obliviated at origin", origin, nil, 3, Obliviated},
		{"null expiration: expired right after grace", origin, nil, 2, Expired},
		{"evidence: archive exactly at origin+365d", origin.AddDate(0, 0, 365), []model.Evidence{ev("contract-care", origin)}, 1, Archived},
		// The manual's EvidencePeriodOffset postpones ExpireAfter and
		// ObliviateAfter "when referring to GdprEvidence (proof)
		// communications and the GdprEvidence record itself" — not the data.
		{"evidence_period_offset does not extend the data: archived one ns before 730d", origin.AddDate(0, 0, 730).Add(-1), []model.Evidence{ev("contract-care", origin)}, 1, Archived},
		{"evidence_period_offset does not extend the data: expired exactly at 730d", origin.AddDate(0, 0, 730), []model.Evidence{ev("contract-care", origin)}, 1, Expired},
		{"evidence_period_offset does not extend the data: obliviated exactly at 1095d", origin.AddDate(0, 0, 1095), []model.Evidence{ev("contract-care", origin)}, 1, Obliviated},
		{"fixed time earlier than origin+period wins (archive)", now, []model.Evidence{ev("fixed-care", ago(45))}, 0, Archived},
		{"fixed expiration earlier than origin+period wins", now.AddDate(0, 0, 100), []model.Evidence{ev("fixed-care", ago(45))}, 0, Expired},
		{"fixed expiration later than origin+period: period wins", now.AddDate(0, 0, 99), []model.Evidence{ev("fixed-care", ago(450))}, 0, Expired},
		// "even past a fixed ExpirationTime": the offset does not move it.
		{"evidence_period_offset does not extend the data past a fixed expiration time: active one ns before", now.AddDate(0, 0, 100).Add(-1), []model.Evidence{ev("fixed-offset-care", ago(45))}, 0, Active},
		{"evidence_period_offset does not extend the data past a fixed expiration time: expired exactly at it", now.AddDate(0, 0, 100), []model.Evidence{ev("fixed-offset-care", ago(45))}, 0, Expired},
		{"evidence_period_offset does not extend the data past a fixed obliviation time", now.AddDate(0, 0, 200), []model.Evidence{ev("fixed-offset-care", ago(45))}, 0, Obliviated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := origin
			if len(tc.ev) > 0 && strings.HasPrefix(tc.ev[0].LegalisationID, "fixed") {
				o = ago(2000) // past every grace period: only the evidence speaks
			}
			s := Evaluate(Input{Index: ix, Origin: o, Evidence: tc.ev}, tc.at)
			if got := s.Bit(tc.bit); got != tc.want {
				t.Errorf("bit %d = %v, want %v", tc.bit, got, tc.want)
			}
		})
	}
}

func TestEvaluateRenewal(t *testing.T) {
	ix := scenario(t)
	renewed := ev("contract-care", ago(800))
	renewed.RenewedAt = at(ago(10))
	s := Evaluate(Input{Index: ix, Origin: ago(800), Evidence: []model.Evidence{renewed}}, now)
	if s.Active&7 != 7 {
		t.Errorf("renewed evidence: active %#x, want bits 0-2 active (origin moved to renewal)", s.Active)
	}
	plain := ev("contract-care", ago(800))
	s = Evaluate(Input{Index: ix, Origin: ago(800), Evidence: []model.Evidence{plain}}, now)
	if s.Expired&7 != 7 {
		t.Errorf("unrenewed evidence: expired %#x, want bits 0-2 expired", s.Expired)
	}
	// A purpose without renewal ignores renewed_at.
	nr := ev("no-renewal", ago(150))
	nr.RenewedAt = at(ago(1))
	s = Evaluate(Input{Index: ix, Origin: ago(150), Evidence: []model.Evidence{nr}}, now)
	if s.Bit(0) != Expired {
		t.Errorf("renewal_type none: bit 0 = %v, want expired (renewed_at ignored)", s.Bit(0))
	}
}

func TestEvaluateNextTransition(t *testing.T) {
	ix := scenario(t)
	cases := []struct {
		name   string
		origin time.Time
		ev     []model.Evidence
		want   time.Time
	}{
		{"Dan: grace of bits 0-1 ends at origin+30d", ago(10), nil, ago(10).AddDate(0, 0, 30)},
		{"Alice: marketing would expire at origin+180 (health) first", ago(100), []model.Evidence{ev("contract-care", ago(100)), ev("health-consent", ago(100))}, ago(100).AddDate(0, 0, 180)},
		{"Eve: nothing left to happen", ago(2000), []model.Evidence{ev("contract-care", ago(2000))}, time.Time{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := Evaluate(Input{Index: ix, Origin: tc.origin, Evidence: tc.ev}, now)
			if !s.Next.Equal(tc.want) {
				t.Errorf("next = %v, want %v", s.Next, tc.want)
			}
			if !s.Next.IsZero() {
				// Nothing changes strictly before Next.
				before := Evaluate(Input{Index: ix, Origin: tc.origin, Evidence: tc.ev}, s.Next.Add(-time.Nanosecond))
				if before.Active != s.Active || before.Archived != s.Archived || before.Expired != s.Expired {
					t.Errorf("state changed before next transition")
				}
			}
		})
	}
}

func TestGrantsAndPermits(t *testing.T) {
	ix := scenario(t)
	alice := Evaluate(Input{Index: ix, Origin: ago(100), Evidence: []model.Evidence{ev("contract-care", ago(100)), ev("marketing-consent", ago(100))}}, now)
	dan := Evaluate(Input{Index: ix, Origin: ago(10)}, now)
	expiredMarketing := Evaluate(Input{Index: ix, Origin: ago(500), Evidence: []model.Evidence{ev("marketing-consent", ago(380))}}, now)
	retired := Evaluate(Input{Index: ix, Origin: ago(100), Evidence: []model.Evidence{ev("old-legit-interest", ago(100))}}, now)
	project := Evaluate(Input{Index: ix, Origin: ago(100), Evidence: []model.Evidence{ev("project-care", ago(100))}}, now)
	cases := []struct {
		name    string
		s       State
		comm    uint32
		project string
		want    bool
	}{
		{"Alice campaign call via marketing consent", alice, model.PermCampaignOC, "", true},
		{"Alice adhoc call via contract", alice, model.PermAdhocOC, "", true},
		{"Alice campaign broadcast message: nobody permits", alice, model.PermCampaignBM, "", false},
		{"Dan: no evidence, no campaign", dan, model.PermCampaignOC, "", false},
		{"expired marketing consent grants nothing", expiredMarketing, model.PermCampaignOC, "", false},
		{"retired legalisation grants nothing", retired, model.PermAdhocOC, "", false},
		{"same_project: own project", project, model.PermCampaignOC, "p1", true},
		{"same_project: other project", project, model.PermCampaignOC, "p2", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.Permits(tc.comm, tc.project); got != tc.want {
				t.Errorf("Permits = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestVisible(t *testing.T) {
	s := State{Active: 1, Archived: 2, Expired: 4, Obliviated: 8}
	cases := []struct {
		name    string
		p       model.Permissions
		archive bool
		want    uint32
	}{
		{"agent sees active only", model.Permissions{SensitivityMask: 7}, false, 1},
		{"archive mode without the permission changes nothing", model.Permissions{SensitivityMask: 7}, true, 1},
		{"supervisor without archive mode", model.Permissions{SensitivityMask: 15, ViewArchived: true}, false, 1},
		{"supervisor in archive mode", model.Permissions{SensitivityMask: 15, ViewArchived: true}, true, 3},
		{"auditor sees expired too", model.Permissions{SensitivityMask: 15, ViewArchived: true, ViewExpired: true}, true, 7},
		{"obliviated never, whatever the mask", model.Permissions{SensitivityMask: 0xffffffff, ViewArchived: true, ViewExpired: true}, true, 7},
		{"mask limits everything", model.Permissions{SensitivityMask: 2, ViewArchived: true, ViewExpired: true}, true, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := s.Visible(tc.p, tc.archive); got != tc.want {
				t.Errorf("Visible = %#x, want %#x", got, tc.want)
			}
		})
	}
}

func BenchmarkLifecycle(b *testing.B) {
	ix := scenario(b)
	in := Input{Index: ix, Origin: ago(300), Evidence: []model.Evidence{
		ev("contract-care", ago(300)), ev("marketing-consent", ago(200)), ev("health-consent", ago(100)),
		ev("old-legit-interest", ago(250)), ev("fixed-care", ago(20)),
	}}
	b.ReportAllocs()
	for b.Loop() {
		_ = Evaluate(in, now)
	}
}

// The manual: EvidencePeriodOffset is "the number of days the ExpireAfter
// expiration action and ObliviateAfter are [postponed] when referring to
// GdprEvidence (proof) communications and the GdprEvidence record itself":
// the record is kept until the data's obliviation plus the offset.
func TestRetentionIsDataObliviationPlusEvidencePeriodOffset(t *testing.T) {
	ix := scenario(t)
	origin := ago(100)
	renewed := ago(10)
	cases := []struct {
		name string
		ev   model.Evidence
		want time.Time
		ok   bool
	}{
		{"customer-care: 1095 days + 30 days offset", ev("contract-care", origin), origin.AddDate(0, 0, 1095+30), true},
		{"marketing: 400 days, no offset", ev("marketing-consent", origin), origin.AddDate(0, 0, 400), true},
		{"fixed obliviation time + offset", ev("fixed-offset-care", origin), now.AddDate(0, 0, 200+30), true},
		{"renewal moves the origin", func() model.Evidence { e := ev("contract-care", origin); e.RenewedAt = &renewed; return e }(), renewed.AddDate(0, 0, 1125), true},
		{"unknown legalisation: kept", ev("gone", origin), time.Time{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Retention(ix, &tc.ev)
			if ok != tc.ok || !got.Equal(tc.want) {
				t.Fatalf("Retention = %s, %v; want %s, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
