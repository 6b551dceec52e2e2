package adminapi

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkImport100k streams 100k NDJSON evidence records through
// POST /v1/evidence:import over a real listener into memstore (batches of
// 1000) and reports records/s.
func BenchmarkImport100k(b *testing.B) {
	const n = 100000
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, `{"subject":{"entity":"contact","id":"b-%d"},"legal_key":"MK","evidence_key":"k-%d","reference":"r","origin":"2026-05-01T00:00:00Z"}`+"\n", i, i)
	}
	body := sb.String()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		e := newEnv(b)
		b.StartTimer()
		req, _ := http.NewRequest("POST", e.http.URL+"/v1/evidence:import", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+ScopeEditEvidence)
		req.Header.Set("Content-Type", "application/x-ndjson")
		res, err := e.http.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var sum struct {
			Summary importSummary `json:"summary"`
		}
		if err := decodeJSON(res, &sum); err != nil || res.StatusCode != 200 || sum.Summary.Stored != n {
			b.Fatalf("import: %d %+v %v", res.StatusCode, sum.Summary, err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
