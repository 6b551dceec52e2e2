package model

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func TestValidateReportsEveryError(t *testing.T) {
	data, err := os.ReadFile("testdata/bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ParseSeed(data, now)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a ValidationError, got %v", err)
	}
	want := map[string]string{
		"sensitivities[1].bit":         "already used",
		"sensitivities[2].bit":         "must be 0..31",
		"categories[1].article":        "6.1.a-6.1.f or 9.2.a-9.2.j",
		"purposes[0].renewal_type":     "none, explicit, implicit or auto",
		"legalisations[0].purpose_id":  "no existing purpose",
		"legalisations[1].category_id": "no existing category",
		"legalisations[1].coverage":    "no sensitivity defined",
		"roles[1].name":                "duplicate role",
	}
	got := map[string]string{}
	for _, fe := range ve.Errors {
		got[fe.Field] = fe.Reason
	}
	for field, reason := range want {
		if !strings.Contains(got[field], reason) {
			t.Errorf("%s: reason %q, want it to mention %q", field, got[field], reason)
		}
	}
}

func TestParseSeedRejectsUnknownFields(t *testing.T) {
	_, err := ParseSeed([]byte("sensitivities:\n  - {id: a, bit: 0, name: a, colour: red}\n"), now)
	if err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("unknown field accepted or not named: %v", err)
	}
}

func TestResolveTime(t *testing.T) {
	cases := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"now", now, true},
		{"now-100d", now.Add(-100 * 24 * time.Hour), true},
		{"now+30d", now.Add(30 * 24 * time.Hour), true},
		{"now-1d12h", now.Add(-36 * time.Hour), true},
		{"yesterday", time.Time{}, false},
		{"now-10y", time.Time{}, false},
	}
	for _, tc := range cases {
		got, ok := ResolveTime(tc.in, now)
		if ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("ResolveTime(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

const goodSeed = `
sensitivities:
  - {id: aux, bit: 0, name: auxiliary, grace_period: 30}
  - {id: health, bit: 3, name: health, special: true}
categories:
  - {id: contract, name: contract, article: "6.1.b"}
  - {id: explicit, name: explicit consent, article: "9.2.a"}
purposes:
  - {id: care, name: care, expiration_time: "2030-01-01", expiration_period: 730}
legalisations:
  - {id: care, name: care, category_id: contract, purpose_id: care, coverage: 1, active_from: now-1000d, evidence_key_obligatory: true}
  - {id: retired, name: retired, category_id: contract, purpose_id: care, coverage: 1, retire_from: now-10d}
  - {id: health, name: health, category_id: explicit, purpose_id: care, coverage: 8, reference_obligatory: true}
roles:
  - {name: agent, sensitivity_mask: 1}
subjects:
  - {subject: {entity: contact, id: c-1}, origin: now-100d}
evidence:
  - {subject: {entity: contact, id: c-1}, legalisation_id: care, evidence_key: k1, origin: now-100d}
`

func TestParseSeed(t *testing.T) {
	s, err := ParseSeed([]byte(goodSeed), now)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Subjects[0].Origin; !got.Equal(now.AddDate(0, 0, -100)) {
		t.Errorf("subject origin %v", got)
	}
	if got := *s.Purposes[0].ExpirationTime; !got.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("date-only time parsed as %v", got)
	}
	if s.Evidence[0].ID == "" || !s.Evidence[0].CreatedAt.Equal(now) {
		t.Errorf("evidence defaults: id %q created_at %v", s.Evidence[0].ID, s.Evidence[0].CreatedAt)
	}
	if s.Config.IdentityEntity != "contact" {
		t.Errorf("identity entity default %q", s.Config.IdentityEntity)
	}
}

func TestValidateEvidence(t *testing.T) {
	s, err := ParseSeed([]byte(goodSeed), now)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := NewIndex(&s.Registers, 1)
	if err != nil {
		t.Fatal(err)
	}
	sub := SubjectRef{Entity: "contact", ID: "c-9"}
	cases := []struct {
		name  string
		ev    Evidence
		field string // "" = valid
	}{
		{"valid", Evidence{Subject: sub, LegalisationID: "care", EvidenceKey: "k", Origin: now, CreatedAt: now}, ""},
		{"origin older than the legalisation is fine", Evidence{Subject: sub, LegalisationID: "care", EvidenceKey: "k", Origin: now.AddDate(-10, 0, 0), CreatedAt: now}, ""},
		{"missing obligatory evidence key", Evidence{Subject: sub, LegalisationID: "care", Origin: now, CreatedAt: now}, "evidence_key"},
		{"missing obligatory reference", Evidence{Subject: sub, LegalisationID: "health", Origin: now, CreatedAt: now}, "reference"},
		{"retired legalisation", Evidence{Subject: sub, LegalisationID: "retired", Origin: now, CreatedAt: now}, "legalisation_id"},
		{"unknown legalisation", Evidence{Subject: sub, LegalisationID: "nope", Origin: now, CreatedAt: now}, "legalisation_id"},
		{"missing subject", Evidence{LegalisationID: "care", EvidenceKey: "k", Origin: now, CreatedAt: now}, "subject.entity"},
		{"missing origin", Evidence{Subject: sub, LegalisationID: "care", EvidenceKey: "k", CreatedAt: now}, "origin"},
		{"origin in the future", Evidence{Subject: sub, LegalisationID: "care", EvidenceKey: "k", Origin: now.AddDate(0, 0, 3), CreatedAt: now}, "origin"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ix.ValidateEvidence(&tc.ev)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want ValidationError naming %s, got %v", tc.field, err)
			}
			for _, fe := range ve.Errors {
				if fe.Field == tc.field {
					return
				}
			}
			t.Errorf("errors %v do not name %s", ve.Errors, tc.field)
		})
	}
}

func TestLegalisationStatus(t *testing.T) {
	from, to := now.AddDate(0, 0, -10), now.AddDate(0, 0, 10)
	l := Legalisation{ActiveFrom: &from, RetireFrom: &to}
	cases := []struct {
		at   time.Time
		want LegalisationStatus
	}{
		{from.Add(-1), StatusPrepared}, {from, StatusActive}, {to.Add(-1), StatusActive}, {to, StatusRetired},
	}
	for _, tc := range cases {
		if got := l.StatusAt(tc.at); got != tc.want {
			t.Errorf("StatusAt(%v) = %s, want %s", tc.at, got, tc.want)
		}
	}
	if got := (Legalisation{}).StatusAt(now); got != StatusActive {
		t.Errorf("open bounds: %s", got)
	}
}

func TestPermissionsUnion(t *testing.T) {
	ix, err := NewIndex(&Registers{
		Sensitivities: []Sensitivity{{ID: "a", Bit: 0, Name: "a"}, {ID: "b", Bit: 1, Name: "b"}},
		Roles:         []Role{{Name: "agent", SensitivityMask: 1}, {Name: "sup", SensitivityMask: 2, ViewArchived: true}},
	}, 1)
	if err != nil {
		t.Fatal(err)
	}
	p := ix.Permissions([]string{"agent", "sup", "ghost"})
	if p.SensitivityMask != 3 || !p.ViewArchived || p.ViewExpired {
		t.Errorf("union = %+v", p)
	}
}
