package authz_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/gdprgate/gdprgate/authz"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/loadgen"
)

// BenchmarkCheckScenario is the server's own work for gdprgate-load's
// built-in scenario (reads, lists, denials, bodies, a write), one op per
// request: the codec's decoding, the decision and the encoded answer,
// without gRPC's transport.
func BenchmarkCheckScenario(b *testing.B) {
	srv := apptest.New(b, apptest.Options{
		// As gdprgate serve --log-level error: no decision lines.
		Logger: slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError})),
	}).App.Authz
	ctx := context.Background()
	var raws [][]byte
	for _, cr := range loadgen.BuiltinScenario() {
		raw, err := proto.Marshal(cr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := authz.CheckWire(srv, ctx, raw); err != nil {
			b.Fatal(err)
		}
		raws = append(raws, raw)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := authz.CheckWire(srv, ctx, raws[i%len(raws)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
