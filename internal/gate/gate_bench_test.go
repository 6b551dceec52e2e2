package gate_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/gate"
)

func newGate(tb testing.TB, sample float64) *gate.Gate {
	tb.Helper()
	return apptest.New(tb, apptest.Options{
		Configure: func(c *config.Config) { c.Decisions.Sample = &sample },
		Logger:    slog.New(slog.NewJSONHandler(io.Discard, nil)),
	}).App.Gate
}

// BenchmarkGateCheck is the server-side cost of a warm request decision
// without gRPC: route match, identity, cached facts, memoised policy, and
// the decision log line (JSON, discarded) or not.
func BenchmarkGateCheck(b *testing.B) {
	for _, tc := range []struct {
		name   string
		sample float64
	}{{"logged", 1}, {"unlogged", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			g := newGate(b, tc.sample)
			hdr := map[string]string{"x-gdpr-roles": "agent"}
			req := &gate.Request{Method: "GET", Path: "/api/contacts/c-1", Header: func(n string) string { return hdr[n] }}
			ctx := context.Background()
			if ex := g.Check(ctx, req); !ex.Verdict.Allow {
				b.Fatal(ex.Verdict.Reason)
			}
			b.ReportAllocs()
			for b.Loop() {
				g.Check(ctx, req)
			}
		})
	}
}
