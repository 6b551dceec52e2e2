package httpauthz

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/app"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/gate"
)

// scenario is the reference scenario's gate and CRM, built for one clock.
type scenario struct {
	gate *gate.Gate
	crm  *crm.Server
}

// newScenario builds the gate from the example config and the embedded
// seed. The seed's times are relative to now, so the CRM gets the same now.
func newScenario(t *testing.T) scenario {
	t.Helper()
	now := time.Now().Truncate(time.Second)
	cfg, err := config.Parse(crm.GatewayConfigYAML)
	if err != nil {
		t.Fatalf("parse the example config: %v", err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := app.New(context.Background(), cfg, app.Options{
		Logger: log, SeedData: crm.RegistersYAML, DisableWipeWorker: true,
		Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatalf("build gdprgate: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return scenario{gate: a.Gate, crm: crm.New(now)}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
