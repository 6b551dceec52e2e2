package authz

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/gdprgate/gdprgate/internal/loadgen"
)

// BenchmarkDecodeCheckIn is the fast reading of gdprgate-load's scenario
// (validation and the fields Check uses), one request per op.
func BenchmarkDecodeCheckIn(b *testing.B) {
	var raws [][]byte
	for _, cr := range loadgen.BuiltinScenario() {
		raw, err := proto.Marshal(cr)
		if err != nil {
			b.Fatal(err)
		}
		raws = append(raws, raw)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		var in checkIn
		if err := decodeCheckIn(raws[i%len(raws)], &in); err != nil || !in.fast {
			b.Fatal(err, in.fast)
		}
		i++
	}
}
