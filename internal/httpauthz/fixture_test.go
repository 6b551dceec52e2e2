package httpauthz

import (
	"log/slog"
	"testing"

	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/apptest"
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
	sc := apptest.New(t, apptest.Options{})
	return scenario{gate: sc.App.Gate, crm: crm.New(sc.Now)}
}

func quietLogger() *slog.Logger { return apptest.Quiet() }
