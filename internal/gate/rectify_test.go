package gate_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/structpb"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/gate"
	"github.com/gdprgate/gdprgate/internal/testlog"
)

// flakyAudit is a store whose next fail AppendAudit calls fail.
type flakyAudit struct {
	cache.Store
	fail atomic.Int64
}

func (f *flakyAudit) AppendAudit(ctx context.Context, e audit.Entry) (string, error) {
	if f.fail.Add(-1) >= 0 {
		return "", errors.New("store unavailable")
	}
	return f.Store.AppendAudit(ctx, e)
}

type rectifyRig struct {
	g     *gate.Gate
	store *flakyAudit
	logs  *testlog.Buffer
	reg   *prometheus.Registry
}

// newRectifyRig is the reference scenario's gdprgate with a gate of its
// own over a store whose audit writes can be made to fail.
func newRectifyRig(t *testing.T, retryFor time.Duration) *rectifyRig {
	t.Helper()
	sc := apptest.New(t, apptest.Options{})
	rig := &rectifyRig{store: &flakyAudit{Store: sc.App.Store}, logs: &testlog.Buffer{}, reg: prometheus.NewRegistry()}
	g, err := gate.New(gate.Options{
		Config: sc.App.Config, Store: rig.store, Engine: sc.App.Engine, Identity: sc.App.Identity,
		Hasher: audit.NewHasher([]byte("k")), Logger: slog.New(slog.NewJSONHandler(rig.logs, nil)),
		Registerer: rig.reg, Now: func() time.Time { return sc.Now }, RectifyRetryFor: retryFor,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Warm(context.Background()); err != nil {
		t.Fatal(err)
	}
	rig.g = g
	t.Cleanup(func() { g.Close(context.Background()) })
	return rig
}

// put is an allowed supervisor rectification of Alice's name and notes.
func (r *rectifyRig) put(t *testing.T, mod func(*gate.Request)) *gate.Exchange {
	t.Helper()
	body := `{"first_name":"New Name","health_notes":"private"}`
	h := map[string]string{"x-gdpr-roles": "supervisor", "content-type": "application/json", "content-length": "50"}
	req := &gate.Request{Method: "PUT", Path: "/api/contacts/c-1", Body: []byte(body), Header: func(n string) string { return h[n] }}
	if mod != nil {
		mod(req)
	}
	ex := r.g.Check(context.Background(), req)
	if !ex.Verdict.Allow {
		t.Fatalf("write refused: %d %s", ex.Verdict.Status, ex.Verdict.Body)
	}
	return ex
}

// entries are the rectification entries of one decision.
func (r *rectifyRig) entries(t *testing.T, decisionID string) []audit.Entry {
	t.Helper()
	all, _, err := r.store.Store.Audit(context.Background(), "", 10000)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Entry
	for _, e := range all {
		if e.Action == "subject.rectify" && e.Detail["decision_id"] == decisionID {
			out = append(out, e)
		}
	}
	return out
}

func (r *rectifyRig) count(result string) float64 {
	mfs, _ := r.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "gdprgate_rectification_audit_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestRectificationIsWrittenWhenTheBackendTookTheChange(t *testing.T) {
	rig := newRectifyRig(t, 0)
	tests := []struct {
		status int
		want   string // the entry's status detail; "" = no entry
	}{
		{200, "200"},
		{204, "204"},
		{0, "unknown"},
		{504, "unknown (504)"},
		{502, "unknown (502)"},
		{409, ""},
		{422, ""},
		{500, ""},
		{302, ""},
	}
	for _, tt := range tests {
		ex := rig.put(t, nil)
		if got := rig.entries(t, ex.DecisionID); len(got) != 0 {
			t.Fatalf("entry written at the decision, before the backend answered: %+v", got)
		}
		rig.g.Responded(context.Background(), ex, tt.status)
		rig.g.Responded(context.Background(), ex, tt.status) // at most once
		got := rig.entries(t, ex.DecisionID)
		switch {
		case tt.want == "" && len(got) != 0:
			t.Errorf("status %d: the backend refused the change, yet %+v", tt.status, got)
		case tt.want != "" && len(got) != 1:
			t.Errorf("status %d: %d entries, want 1", tt.status, len(got))
		case tt.want != "":
			e := got[0]
			if e.Detail["status"] != tt.want || e.Detail["fields"] != "first_name,health_notes" || !strings.HasPrefix(e.Subject, "h:") || e.Actor != "roles:supervisor" {
				t.Errorf("status %d: entry %+v", tt.status, e)
			}
		}
	}
	if n := rig.count("not_applied"); n != 4 {
		t.Errorf("not_applied = %v, want 4", n)
	}
}

func TestRectificationRetriedUntilTheStoreTakesIt(t *testing.T) {
	rig := newRectifyRig(t, time.Minute)
	rig.store.fail.Store(3)
	ex := rig.put(t, nil)
	rig.g.Responded(context.Background(), ex, 200)
	deadline := time.Now().Add(20 * time.Second)
	for len(rig.entries(t, ex.DecisionID)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("entry never written")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for rig.count("written_after_retry") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("written_after_retry = %v", rig.count("written_after_retry"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	logs := rig.logs.String()
	// The first failure logs the whole entry, so a crash loses nothing.
	if !strings.Contains(logs, "retrying") || !strings.Contains(logs, ex.DecisionID) || !strings.Contains(logs, "first_name,health_notes") {
		t.Errorf("no warning with the entry:\n%s", logs)
	}
	// The id quoted or as a path: decision ids are random hex and may end in "c-1".
	if strings.Contains(logs, "New Name") || strings.Contains(logs, "private") || strings.Contains(logs, `"c-1"`) || strings.Contains(logs, "/c-1") {
		t.Errorf("personal data in the logs:\n%s", logs)
	}
}

func TestRectificationGivenUpOnIsLoggedWhole(t *testing.T) {
	rig := newRectifyRig(t, 50*time.Millisecond)
	rig.store.fail.Store(1 << 40)
	ex := rig.put(t, nil)
	rig.g.Responded(context.Background(), ex, 200)
	deadline := time.Now().Add(20 * time.Second)
	for rig.count("lost") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("lost = %v\n%s", rig.count("lost"), rig.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	line := ""
	for _, l := range strings.Split(rig.logs.String(), "\n") {
		if strings.Contains(l, `"level":"ERROR"`) {
			line = l
		}
	}
	for _, want := range []string{ex.DecisionID, "first_name,health_notes", "routes/contact-update", `"subject":"h:`, "replay"} {
		if !strings.Contains(line, want) {
			t.Errorf("error line lacks %q: %s", want, line)
		}
	}
}

func TestRectificationWaitingAtCloseGetsALastTry(t *testing.T) {
	rig := newRectifyRig(t, time.Hour)
	rig.store.fail.Store(1 << 40)
	lost := rig.put(t, nil)
	rig.g.Responded(context.Background(), lost, 200)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rig.g.Close(ctx)
	if rig.count("lost") != 1 || !strings.Contains(rig.logs.String(), lost.DecisionID) {
		t.Fatalf("lost = %v, logs:\n%s", rig.count("lost"), rig.logs.String())
	}

	rig = newRectifyRig(t, time.Hour)
	rig.store.fail.Store(2) // the first try and the first retry fail
	saved := rig.put(t, nil)
	rig.g.Responded(context.Background(), saved, 200)
	rig.g.Close(ctx)
	if got := rig.entries(t, saved.DecisionID); len(got) != 1 {
		t.Fatalf("entries after close: %+v\n%s", got, rig.logs.String())
	}
}

// The HTTP authz mode never sees the answer: the entry is written at the
// decision, and a write that cannot be audited does not happen.
func TestRectificationWithoutAnAnswerIsWrittenAtTheDecision(t *testing.T) {
	rig := newRectifyRig(t, 0)
	ex := rig.put(t, func(r *gate.Request) { r.NoResponse = true })
	if got := rig.entries(t, ex.DecisionID); len(got) != 1 || got[0].Detail["status"] != "unseen" {
		t.Fatalf("entries %+v", got)
	}
	rig.store.fail.Store(1)
	h := map[string]string{"x-gdpr-roles": "supervisor", "content-type": "application/json", "content-length": "9"}
	ex = rig.g.Check(context.Background(), &gate.Request{Method: "PUT", Path: "/api/contacts/c-1", Body: []byte(`{"sex":1}`),
		Header: func(n string) string { return h[n] }, NoResponse: true})
	if ex.Verdict.Allow || ex.Verdict.Status != 503 || ex.Verdict.Reason != "audit_unavailable" {
		t.Fatalf("unauditable write: %+v", ex.Verdict)
	}
}

// ext_proc learns the pending entry from ext_authz's dynamic metadata; a
// write whose ext_authz metadata did not come cannot be audited and stops
// before the backend.
func TestRectificationTravelsInEnvoyMetadata(t *testing.T) {
	rig := newRectifyRig(t, 0)
	authzEx := rig.put(t, nil)
	md, err := structpb.NewStruct(map[string]any{"decision_id": authzEx.DecisionID, "rectify": authzEx.Rectification().Metadata()})
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]string{"x-gdpr-roles": "supervisor"}
	procReq := func(md *corev3.Metadata) *gate.Exchange {
		return rig.g.Check(context.Background(), &gate.Request{Method: "PUT", Path: "/api/contacts/c-1", ResponseOnly: true,
			Header: func(n string) string { return h[n] }, Metadata: md})
	}
	proc := procReq(&corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.filters.http.ext_authz": md}})
	if !proc.Verdict.Allow {
		t.Fatalf("ext_proc refused: %+v", proc.Verdict)
	}
	rig.g.Responded(context.Background(), proc, 200)
	if got := rig.entries(t, authzEx.DecisionID); len(got) != 1 || got[0].Detail["fields"] != "first_name,health_notes" {
		t.Fatalf("entries %+v", got)
	}
	// Nothing to audit (ext_authz present, no rectify key): nothing written.
	plain, _ := structpb.NewStruct(map[string]any{"decision_id": "other"})
	if ex := procReq(&corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.filters.http.ext_authz": plain}}); !ex.Verdict.Allow || ex.Rectification() != nil {
		t.Fatalf("no pending entry expected: %+v", ex.Verdict)
	}
	for _, md := range []*corev3.Metadata{nil, {}} {
		ex := procReq(md)
		if ex.Verdict.Allow || ex.Verdict.Status != 500 || ex.Verdict.Reason != "write_not_auditable" {
			t.Errorf("metadata %v: %+v", md, ex.Verdict)
		}
	}
}

func TestRectificationMetricsAreRegistered(t *testing.T) {
	rig := newRectifyRig(t, 0)
	ex := rig.put(t, nil)
	rig.g.Responded(context.Background(), ex, 201)
	mfs, err := rig.reg.Gather()
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	if err != nil || !names["gdprgate_rectification_audit_total"] || !names["gdprgate_rectification_audit_pending"] {
		t.Fatalf("metrics: %v, %v", names, err)
	}
	if rig.count("written") != 1 {
		t.Errorf("written = %v", rig.count("written"))
	}
}
