// Package apptest builds gdprgate for tests: the example CRM's config and
// seed in the embedded store (or Redis), on a fixed clock, with its gRPC
// servers on loopback. Every test that needs "gdprgate in front of the
// reference scenario" starts from here, so they all run the same wiring.
package apptest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/app"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/policy/model"
)

// Options adjust the scenario.
type Options struct {
	// ConfigYAML replaces the example CRM's gdprgate.yaml.
	ConfigYAML []byte
	// Configure edits the parsed config before gdprgate is built.
	Configure func(*config.Config)
	// Logger defaults to a discarding one.
	Logger *slog.Logger
	// WipeWorker runs the wipe workers (off by default).
	WipeWorker bool
	// DecisionLogOutput receives console decision logs (nil: stdout).
	DecisionLogOutput io.Writer
	// Now fixes the clock (zero: the current second).
	Now time.Time
	// Clock, when set, is gdprgate's clock instead of the fixed Now (the
	// seed still resolves against Now): lifecycle tests move time on.
	Clock func() time.Time
	// Sweeper runs the lifecycle sweeper in the background (off by
	// default: tests drive App.Sweeper.Pass themselves).
	Sweeper bool
}

// Scenario is gdprgate built for the reference scenario at Now.
type Scenario struct {
	App *app.App
	// Now is the fixed clock: the seed's relative times resolve against
	// it, so crm.New(Now) gives matching data.
	Now time.Time
}

// New builds gdprgate; it is closed when the test ends.
func New(tb testing.TB, opts Options) *Scenario {
	tb.Helper()
	now := opts.Now
	if now.IsZero() {
		now = time.Now().UTC().Truncate(time.Second)
	}
	data := opts.ConfigYAML
	if data == nil {
		data = crm.GatewayConfigYAML
	}
	cfg, err := config.Parse(data)
	if err != nil {
		tb.Fatalf("apptest: config: %v", err)
	}
	if opts.Configure != nil {
		opts.Configure(cfg)
	}
	log := opts.Logger
	if log == nil {
		log = Quiet()
	}
	clock := opts.Clock
	if clock == nil {
		clock = func() time.Time { return now }
	}
	a, err := app.New(context.Background(), cfg, app.Options{
		SeedData: crm.RegistersYAML, SeedTime: now, Now: clock,
		Logger: log, DisableWipeWorker: !opts.WipeWorker, DisableSweeper: !opts.Sweeper,
		DecisionLogOutput: opts.DecisionLogOutput,
	})
	if err != nil {
		tb.Fatalf("apptest: build gdprgate: %v", err)
	}
	tb.Cleanup(func() { _ = a.Close() })
	return &Scenario{App: a, Now: now}
}

// GRPC serves the scenario's ext_authz and ext_proc on a loopback port and
// returns a client connection to them.
func (s *Scenario) GRPC(tb testing.TB) *grpc.ClientConn {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	gs := s.App.GRPCServer()
	go func() { _ = gs.Serve(lis) }()
	tb.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Quiet is a logger that discards everything.
func Quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// QueueWipe records a queued wipe of ref in st, as an admin's wipe request
// does before any worker runs: from then on the subject is restricted.
func QueueWipe(tb testing.TB, st cache.Store, ref model.SubjectRef, now time.Time) {
	tb.Helper()
	if err := st.EnqueueWipe(context.Background(), cache.WipeRecord{ID: "w-" + ref.ID, Subject: ref, Status: cache.WipeQueued,
		CreatedAt: now, UpdatedAt: now}, audit.Entry{Time: now, Actor: "test", Action: "wipe.request"}); err != nil {
		tb.Fatal(err)
	}
}
