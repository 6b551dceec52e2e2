package authz_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gdprgate/gdprgate/authz/envoytest"
	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/gate"
)

// plans reads gdprgate_extproc_plans_total by result.
func plans(t *testing.T, sc *apptest.Scenario) map[string]float64 {
	t.Helper()
	mfs, err := sc.App.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "gdprgate_extproc_plans_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[label(m, "result")] = m.GetCounter().GetValue()
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// ext_authz's sealed plan spares ext_proc the second decision, and the
// answer is what the decision from the request gives. A plan in the
// ext_authz namespace that ext_authz did not write — another filter's, a
// client's copied by a misconfigured header_to_metadata, a replay of
// another caller's — is not believed: ext_proc decides from the request.
func TestExtProcReusesOnlyPlansThatProveThemselves(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	conn := sc.GRPC(t)
	upstream := crm.New(sc.Now)
	get := func(t *testing.T, env *envoytest.Envoy, roles string) *envoytest.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://crm.local/api/contacts/c-1", nil)
		req.Header.Set("x-gdpr-roles", roles)
		req.Header.Set("x-request-id", "fixed-id")
		resp, err := env.Do(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != 200 {
			t.Fatalf("status %d %s %v", resp.Status, resp.Body, resp.Events)
		}
		return resp
	}
	chain := envoytest.New(envoytest.Options{Authz: conn, Proc: conn, Upstream: upstream, ForwardAuthzMetadata: true,
		SpuriousIsError: true, MessageTimeout: 5 * time.Second, AuthzTimeout: 5 * time.Second})
	t.Cleanup(chain.Close)

	before := plans(t, sc)
	sup := get(t, chain, "supervisor")
	agent := get(t, chain, "agent")
	if got := plans(t, sc)["reused"] - before["reused"]; got != 2 {
		t.Fatalf("plans reused %v, want 2 (%v)", got, plans(t, sc))
	}
	if !strings.Contains(string(sup.Body), "penicillin") || strings.Contains(string(agent.Body), "penicillin") {
		t.Fatalf("premise: the supervisor sees health notes, the agent not:\n%s\n%s", sup.Body, agent.Body)
	}
	supPlan := sup.AuthzMetadata.GetFields()[gate.PlanMetadataKey].GetStringValue()
	if supPlan == "" {
		t.Fatal("no plan in ext_authz's metadata")
	}

	forge := func(plan string) func(*http.Request) map[string]*structpb.Struct {
		return func(*http.Request) map[string]*structpb.Struct {
			return map[string]*structpb.Struct{envoytest.AuthzNamespace: {Fields: map[string]*structpb.Value{
				gate.PlanMetadataKey: structpb.NewStringValue(plan)}}}
		}
	}
	for _, tc := range []struct {
		name string
		opts envoytest.Options
	}{
		// No Check ran: what an earlier filter wrote is all ext_proc gets.
		{"another caller's plan, no ext_authz", envoytest.Options{Proc: conn, FilterMetadata: forge(supPlan)}},
		{"a made-up plan, no ext_authz", envoytest.Options{Proc: conn, FilterMetadata: forge("AQID")}},
		// ext_authz ran: its own plan replaces the earlier filter's.
		{"another caller's plan before ext_authz", envoytest.Options{Authz: conn, Proc: conn, FilterMetadata: forge(supPlan)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.Upstream, o.ForwardAuthzMetadata, o.SpuriousIsError = upstream, true, true
			o.MessageTimeout, o.AuthzTimeout = 5*time.Second, 5*time.Second
			env := envoytest.New(o)
			t.Cleanup(env.Close)
			before := plans(t, sc)
			resp := get(t, env, "agent")
			if string(resp.Body) != string(agent.Body) {
				t.Fatalf("the agent got another answer:\n%s\nwant\n%s", resp.Body, agent.Body)
			}
			after := plans(t, sc)
			if o.Authz == nil && after["reused"] != before["reused"] {
				t.Fatalf("a plan ext_authz did not seal was believed: %v", after)
			}
		})
	}
}
