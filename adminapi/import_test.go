package adminapi

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/gdprgate/gdprgate/policy/model"
)

// TestReimportingRecordsWithoutAKeyStoresThemOnce checks that records with
// neither id nor evidence_key are keyed by their content: the same file
// imported twice, and the same record naming its legalisation by id or by
// legal key, leave one record each; a record that differs is its own.
func TestReimportingRecordsWithoutAKeyStoresThemOnce(t *testing.T) {
	e := newEnv(t)
	body := `{"subject":{"entity":"contact","id":"k-1"},"legal_key":"CC","origin":"2026-05-01T00:00:00Z"}
{"subject":{"entity":"contact","id":"k-1"},"legal_key":"CC","origin":"2026-05-02T00:00:00Z"}
{"subject":{"entity":"contact","id":"k-2"},"legalisation_id":"health-consent","reference":"form 7","origin":"2026-05-01T00:00:00Z"}
`
	for round := 1; round <= 2; round++ {
		r := e.do("POST", "/v1/evidence:import", ScopeEditEvidence, body, "Content-Type: application/x-ndjson")
		if r.status != http.StatusOK {
			t.Fatalf("round %d: %d %s", round, r.status, r.body)
		}
	}
	// The first line again, naming the legalisation by id and with another actor.
	r := e.do("POST", "/v1/evidence:import", ScopeAdmin, `{"subject":{"entity":"contact","id":"k-1"},"legalisation_id":"contract-care","origin":"2026-05-01T00:00:00Z"}`, "Content-Type: application/x-ndjson")
	if r.status != http.StatusOK {
		t.Fatalf("same record by id: %d %s", r.status, r.body)
	}
	for id, want := range map[string]int{"k-1": 2, "k-2": 1} {
		rec, err := e.store.Subject(context.Background(), model.SubjectRef{Entity: "contact", ID: id})
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.Evidence) != want {
			t.Errorf("%s has %d evidence records, want %d: %+v", id, len(rec.Evidence), want, rec.Evidence)
		}
	}
}

func TestImportLimitsAreAnnounced(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxImport, o.MaxImportBytes, o.ImportBatch = 7, 4096, 3 })
	r := e.do("GET", "/v1/evidence:import", ScopeEditEvidence, "")
	var got importLimits
	if r.status != 200 || json.Unmarshal(r.body, &got) != nil || got != (importLimits{MaxRecords: 7, MaxBytes: 4096, Batch: 3}) {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v1/evidence:import", ScopeAuditRead, ""); r.status != http.StatusForbidden {
		t.Fatalf("another scope: %d", r.status)
	}
}
