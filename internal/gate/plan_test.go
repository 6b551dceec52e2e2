package gate_test

import (
	"context"
	"encoding/base64"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/gate"
)

const authzNS = "envoy.filters.http.ext_authz"

func planMetadata(plan string) *corev3.Metadata {
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{authzNS: {Fields: map[string]*structpb.Value{
		gate.PlanMetadataKey: structpb.NewStringValue(plan),
	}}}}
}

func request(method, path string, hdr map[string]string) *gate.Request {
	return &gate.Request{Method: method, Path: path, Host: "crm.local", Header: func(n string) string { return hdr[n] }}
}

// A sealed plan spares ext_proc the decision only when it proves itself:
// the same request, the same caller, sealed by a gdprgate with the same
// key and route map, recently. Anything else is decided again.
func TestPlanIsBelievedOnlyForItsOwnRequest(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	clock := now
	sc := apptest.New(t, apptest.Options{Now: now, Clock: func() time.Time { return clock }})
	g := sc.App.Gate
	ctx := context.Background()
	agent := map[string]string{"x-gdpr-roles": "agent", "x-request-id": "r-1"}
	authz := g.Check(ctx, request("GET", "/api/contacts/c-1", agent))
	if !authz.Verdict.Allow {
		t.Fatalf("premise: %s", authz.Verdict.Reason)
	}
	plan := g.SealPlan(authz, request("GET", "/api/contacts/c-1", agent))
	if plan == "" {
		t.Fatal("no plan for an allowed request")
	}
	proc := func(hdr map[string]string, path, plan string) *gate.Exchange {
		r := request("GET", path, hdr)
		r.ResponseOnly, r.Metadata = true, planMetadata(plan)
		return g.Check(ctx, r)
	}

	// AppendPlan is the same plan written after what dst holds.
	if appended := g.AppendPlan([]byte("prefix:"), authz, request("GET", "/api/contacts/c-1", agent)); string(appended[:7]) != "prefix:" ||
		proc(agent, "/api/contacts/c-1", string(appended[7:])).Verdict.Reason != "plan" {
		t.Errorf("appended plan %q not believed", appended)
	}

	got := proc(agent, "/api/contacts/c-1", plan)
	if got.Verdict.Reason != "plan" || got.DecisionID != authz.DecisionID || got.RouteName() != "contact" || !got.NeedsBody() {
		t.Fatalf("own request: reason %q, decision %q (want %q), route %q", got.Verdict.Reason, got.DecisionID, authz.DecisionID, got.RouteName())
	}
	if got.Verdict.ResponseHeaders[gate.HeaderCoverage] != authz.Verdict.ResponseHeaders[gate.HeaderCoverage] {
		t.Errorf("coverage header %q, want %q", got.Verdict.ResponseHeaders[gate.HeaderCoverage], authz.Verdict.ResponseHeaders[gate.HeaderCoverage])
	}

	forged := []byte(plan)
	if forged[10] == 'A' {
		forged[10] = 'B'
	} else {
		forged[10] = 'A'
	}
	raw, _ := base64.RawURLEncoding.DecodeString(plan)
	truncated := base64.RawURLEncoding.EncodeToString(raw[:len(raw)-3])
	supervisor := map[string]string{"x-gdpr-roles": "supervisor", "x-request-id": "r-1"}
	otherID := map[string]string{"x-gdpr-roles": "agent", "x-request-id": "r-2"}
	other := apptest.New(t, apptest.Options{Now: now}).App.Gate
	for _, tc := range []struct {
		name string
		ex   func() *gate.Exchange
	}{
		{"no plan", func() *gate.Exchange { return proc(agent, "/api/contacts/c-1", "") }},
		{"a changed byte", func() *gate.Exchange { return proc(agent, "/api/contacts/c-1", string(forged)) }},
		{"truncated", func() *gate.Exchange { return proc(agent, "/api/contacts/c-1", truncated) }},
		{"not base64", func() *gate.Exchange { return proc(agent, "/api/contacts/c-1", "!!!") }},
		{"another path", func() *gate.Exchange { return proc(agent, "/api/contacts/c-2", plan) }},
		{"another caller", func() *gate.Exchange { return proc(supervisor, "/api/contacts/c-1", plan) }},
		{"another request id", func() *gate.Exchange { return proc(otherID, "/api/contacts/c-1", plan) }},
		{"another gdprgate's key", func() *gate.Exchange {
			r := request("GET", "/api/contacts/c-1", agent)
			r.ResponseOnly, r.Metadata = true, planMetadata(plan)
			return other.Check(ctx, r)
		}},
		{"stale", func() *gate.Exchange {
			clock = now.Add(2 * time.Minute)
			defer func() { clock = now }()
			return proc(agent, "/api/contacts/c-1", plan)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if ex := tc.ex(); ex.Verdict.Reason == "plan" {
				t.Fatalf("plan believed")
			}
		})
	}

	// A denied request has no plan.
	if p := g.SealPlan(g.Check(ctx, request("GET", "/api/contacts/c-5", agent)), request("GET", "/api/contacts/c-5", agent)); p != "" {
		t.Errorf("denied request sealed a plan")
	}
}
