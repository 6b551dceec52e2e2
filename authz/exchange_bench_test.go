package authz_test

import (
	"context"
	"testing"

	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/loadgen"
)

// BenchmarkExtProcExchange measures whole ext_proc exchanges as Envoy makes
// them (request headers with ext_authz's metadata, response headers, the
// buffered contact list) against the scenario over loopback gRPC, client
// and server in one process: go test -bench ExtProcExchange -cpuprofile
// shows where an exchange's time goes. cmd/gdprgate-load --mode extproc is
// the same exchange against a separate server process.
func BenchmarkExtProcExchange(b *testing.B) {
	sc := apptest.New(b, apptest.Options{})
	conn := sc.GRPC(b)
	for _, size := range []struct {
		name  string
		bytes int
	}{{"10KB", 10_000}, {"1MB", 1_000_000}} {
		body := loadgen.ListBody(size.bytes)
		b.Run(size.name, func(b *testing.B) {
			cfg := loadgen.ExtProcConfig{Conn: conn, Concurrency: 4, Requests: 50, Body: body, AuthzMetadata: true}
			if _, err := loadgen.RunExtProc(context.Background(), cfg); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			cfg.Requests, cfg.Warmup = b.N, 0
			rep, err := loadgen.RunExtProc(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			if rep.Errors > 0 {
				b.Fatalf("errors: %v", rep.ErrorSamples)
			}
		})
	}
}
