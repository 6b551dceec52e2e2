package redisstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/policy/model"
)

// BenchmarkImportBuild is the client's share of an import without Redis:
// a 10,000-record batch of new subjects taken for absent, its parts built
// and turned into script calls (ns/op and allocs per record: divide by
// 10,000). The rest of the client's cost is go-redis sending the calls.
//
//	go test ./cache/redisstore/ -run '^$' -bench ImportBuild -benchmem
func BenchmarkImportBuild(b *testing.B) {
	const n = 10000
	s := &Store{buckets: 51}
	s.opts.Clock = time.Now
	sym := &symTab{byName: map[symName]uint64{{symEntity, "contact"}: 1, {symLegalisation, "contract-care"}: 2},
		byCode: map[uint64]symName{1: {symEntity, "contact"}, 2: {symLegalisation, "contract-care"}}}
	in := make([]model.Evidence, n)
	refs := make([]model.SubjectRef, n)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range in {
		refs[i] = model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("c-%08d", i)}
		in[i] = model.Evidence{ID: cache.NewID("ev-"), Subject: refs[i], LegalisationID: "contract-care", Origin: t0}
	}
	entry := audit.Entry{Actor: "bench", Action: "evidence.import"}
	deadline := time.Now().Add(time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		sc := getScratch()
		recs := s.absent(refs, sym, sc)
		parts, _ := s.applyEvidence(recs, in, in, nil, t0, entry, sc)
		for _, p := range parts {
			if _, err := s.partCall(sym, p, deadline); err != nil {
				b.Fatal(err)
			}
		}
		sc.release()
	}
}
