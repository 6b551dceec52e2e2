package crm

import (
	"strings"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/policy/model"
)

func TestRegistersYAMLParsesWithScenarioCounts(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	seed, err := model.ParseSeed(RegistersYAML, now)
	if err != nil {
		t.Fatalf("ParseSeed: %v", err)
	}
	counts := []struct {
		what      string
		got, want int
	}{
		{"sensitivities", len(seed.Sensitivities), 4},
		{"categories", len(seed.Categories), 4},
		{"purposes", len(seed.Purposes), 4},
		{"legalisations", len(seed.Legalisations), 6},
		{"roles", len(seed.Roles), 4},
		{"subjects", len(seed.Subjects), len(ContactIDs) + 1},
		{"evidence", len(seed.Evidence), 16},
	}
	for _, c := range counts {
		if c.got != c.want {
			t.Errorf("%s: got %d, want %d", c.what, c.got, c.want)
		}
	}
	if !seed.Config.GdprEnforced || seed.Config.IdentityEntity != "contact" {
		t.Errorf("config = %+v, want gdpr_enforced and identity_entity contact", seed.Config)
	}
}

func TestRegistersYAMLMatchesScenarioRegisters(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	seed, err := model.ParseSeed(RegistersYAML, now)
	if err != nil {
		t.Fatalf("ParseSeed: %v", err)
	}
	ix, err := model.NewIndex(&seed.Registers, 1)
	if err != nil {
		t.Fatalf("NewIndex: %v", err)
	}
	day := 24 * time.Hour
	legs := []struct {
		id         string
		coverage   uint32
		permission uint32
		statusNow  model.LegalisationStatus
	}{
		{"contract-care", 7, 27, model.StatusActive},
		{"marketing-consent", 3, 36, model.StatusActive},
		{"health-consent", 8, 0, model.StatusActive},
		{"old-legit-interest", 3, 0, model.StatusRetired},
		{"future-program", 3, 36, model.StatusPrepared},
	}
	for _, l := range legs {
		got, ok := ix.Legalisations[l.id]
		if !ok {
			t.Errorf("legalisation %s missing", l.id)
			continue
		}
		if got.Coverage != l.coverage || got.PrivacyPermission != l.permission || got.StatusAt(now) != l.statusNow {
			t.Errorf("%s: coverage %d permission %d status %s, want %d %d %s",
				l.id, got.Coverage, got.PrivacyPermission, got.StatusAt(now), l.coverage, l.permission, l.statusNow)
		}
	}
	if f := ix.Legalisations["contract-care"].ActiveFrom; f == nil || !f.Equal(now.Add(-1000*day)) {
		t.Errorf("contract-care active_from = %v, want now-1000d", f)
	}
	masks := map[string]uint32{"agent": 7, "supervisor": 15, "auditor": 15, "marketer": 3}
	for name, m := range masks {
		if r := ix.Roles[name]; r == nil || r.SensitivityMask != m {
			t.Errorf("role %s = %+v, want mask %d", name, r, m)
		}
	}
	if a := ix.Roles["auditor"]; !a.ViewArchived || !a.ViewExpired || !a.ExportEvidence {
		t.Errorf("auditor = %+v, want view_archived, view_expired, export_evidence", a)
	}
	if ix.Special != 8 {
		t.Errorf("special mask = %d, want 8 (health)", ix.Special)
	}
}

// The lifecycle counts grace and default periods from the subject's origin,
// so it must be the CRM's created_at for the same now.
func TestSubjectOriginsMatchCRMCreatedAt(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	seed, err := model.ParseSeed(RegistersYAML, now)
	if err != nil {
		t.Fatalf("ParseSeed: %v", err)
	}
	srv := New(now)
	seen := map[string]bool{}
	for _, sub := range seed.Subjects {
		if sub.Ref.Entity != "contact" {
			continue
		}
		seen[sub.Ref.ID] = true
		c, ok := srv.Contact(sub.Ref.ID)
		if !ok {
			t.Errorf("subject %s has no CRM contact", sub.Ref.ID)
			continue
		}
		created, err := time.Parse(time.RFC3339, c.CreatedAt)
		if err != nil {
			t.Fatalf("%s created_at: %v", c.ID, err)
		}
		if !created.Equal(sub.Origin) {
			t.Errorf("%s: CRM created_at %s, subject origin %s", c.ID, created, sub.Origin)
		}
	}
	for _, id := range ContactIDs {
		if !seen[id] {
			t.Errorf("contact %s has no subject entry", id)
		}
	}
	for _, ev := range seed.Evidence {
		if ev.Subject.Entity == "contact" && !seen[ev.Subject.ID] {
			t.Errorf("evidence %s names unknown contact %s", ev.ID, ev.Subject.ID)
		}
	}
}

// The scenario's obligatory-field and active-legalisation rules must bite on
// this file's registers: each mutation adds one bad evidence row.
func TestRegistersYAMLRefusesInvalidEvidence(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	cases := []struct {
		name, row, wantField string
	}{
		{"marketing consent without evidence key", `{subject: {entity: contact, id: c-4}, legalisation_id: marketing-consent, origin: now-1d}`, "evidence_key"},
		{"health consent without reference", `{subject: {entity: contact, id: c-4}, legalisation_id: health-consent, origin: now-1d}`, "reference"},
		{"prepared legalisation", `{subject: {entity: contact, id: c-4}, legalisation_id: future-program, evidence_key: k, origin: now-1d}`, "legalisation_id"},
		{"retired legalisation", `{subject: {entity: contact, id: c-4}, legalisation_id: old-legit-interest, origin: now-20d, created_at: now-5d}`, "legalisation_id"},
		{"evidence recorded before the legalisation was active", `{subject: {entity: contact, id: c-5}, legalisation_id: contract-care, origin: now-2000d, created_at: now-1500d}`, "legalisation_id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := string(RegistersYAML) + "  - " + tc.row + "\n"
			_, err := model.ParseSeed([]byte(data), now)
			if err == nil || !strings.Contains(err.Error(), "evidence[16]."+tc.wantField) {
				t.Fatalf("ParseSeed error = %v, want one on evidence[16].%s", err, tc.wantField)
			}
		})
	}
}
