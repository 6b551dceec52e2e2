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

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/gate"
	"github.com/gdprgate/gdprgate/internal/testid"
	"github.com/gdprgate/gdprgate/internal/testlog"
	"github.com/gdprgate/gdprgate/policy/model"
)

func headers(h map[string]string) func(string) string { return func(n string) string { return h[n] } }

// A communication records its evidence from the backend's answer. A
// front-end that never shows gdprgate the answer (nginx auth_request,
// Caddy forward_auth) cannot do that: the request is refused rather than
// the evidence silently lost.
func TestCommunicationNeedsAResponseStage(t *testing.T) {
	g := apptest.New(t, apptest.Options{}).App.Gate
	h := map[string]string{"x-gdpr-roles": "agent", "content-type": "application/json"}
	body := []byte(`{"contact_id":"c-4","direction":"inbound","topic":"care"}`)
	ex := g.Check(context.Background(), &gate.Request{Method: "POST", Path: "/api/calls", Header: headers(h), Body: body, NoResponse: true})
	if ex.Verdict.Allow || ex.Verdict.Status != 501 || ex.Verdict.Reason != "communication_needs_response_stage" {
		t.Fatalf("verdict %+v", ex.Verdict)
	}
	ex = g.Check(context.Background(), &gate.Request{Method: "POST", Path: "/api/calls", Header: headers(h), Body: body})
	if !ex.Verdict.Allow || !ex.NeedsBody() {
		t.Fatalf("with a response stage: %+v", ex.Verdict)
	}
	// The processor's plan without the body asks for it.
	ex = g.Check(context.Background(), &gate.Request{Method: "POST", Path: "/api/calls", Header: headers(h), ResponseOnly: true})
	if !ex.Verdict.Allow || !ex.NeedsRequestBody() {
		t.Fatalf("response plan without the body: %+v", ex.Verdict)
	}
}

// The manual's GdprSensivityOfPhoneNumbers: phone numbers have the
// sensitivity "from the table Sensitivity > List, column Bit mask". The
// route map's phone_number fields take it; a registers change to a value
// that is not one sensitivity stops the route map from compiling (every
// decision fails closed) rather than leaving phone numbers unprotected.
func TestPhoneNumberFieldsTakeTheConfiguredSensitivity(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	g := sc.App.Gate
	h := map[string]string{"x-gdpr-roles": "marketer"}
	ex := g.Check(context.Background(), &gate.Request{Method: "GET", Path: "/api/contacts/c-1", Header: headers(h)})
	rw := g.Rewrite(context.Background(), ex, &gate.Response{Status: 200, Header: headers(map[string]string{"content-type": "application/json"}),
		Body: []byte(`{"id":"c-1","phone":"+4930","health_notes":"x"}`)})
	if strings.Contains(rw.SetHeaders[gate.HeaderRedacted], "phone") {
		t.Fatalf("marketer (bits 0-1) lost the phone (phone_number_sensitivity 2 = bit 1): %v", rw.SetHeaders)
	}
	ix, err := sc.App.Store.Registers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	regs := *ix.Registers
	regs.Config.PhoneNumberSensitivity = 6
	if err := regs.Validate(); err == nil || !strings.Contains(err.Error(), "config.phone_number_sensitivity") {
		t.Fatalf("two bits accepted: %v", err)
	}
	regs.Config.PhoneNumberSensitivity = 0
	if _, err := sc.App.Store.SaveRegisters(context.Background(), &regs, ix.Version, audit.Entry{Actor: "test", Action: "config.replace"}); err != nil {
		t.Fatal(err)
	}
	ex = g.Check(context.Background(), &gate.Request{Method: "GET", Path: "/api/contacts/c-1", Header: headers(h)})
	if ex.Verdict.Allow || ex.Verdict.Reason != "route_map_invalid" {
		t.Fatalf("phone_number_sensitivity 0: %+v", ex.Verdict)
	}
}

// The manual's GdprIdentityEntity: "If the customer uses contacts, enter
// Contact, otherwise PhoneNumber" — the evidence a communication records is
// the identity's: with phone_number, the call's phone number, naming the
// contact (ContentContactIdObligatory: "a contact … must be populated").
// And GdprDefaultSensitivity: "used as a default sensitivity for a new call
// before the agent sets a specific sensitivity".
func TestCommunicationEvidenceIsTheIdentityEntitys(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	g, st := sc.App.Gate, sc.App.Store
	ctx := context.Background()
	ix, err := st.Registers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	regs := *ix.Registers
	regs.Config.IdentityEntity = "phone_number"
	regs.Config.DefaultSensitivity = 1
	if _, err := st.SaveRegisters(ctx, &regs, ix.Version, audit.Entry{Actor: "test", Action: "config.replace"}); err != nil {
		t.Fatal(err)
	}
	call := func(body string) map[string]string {
		t.Helper()
		h := map[string]string{"x-gdpr-roles": "agent", "content-type": "application/json"}
		ex := g.Check(ctx, &gate.Request{Method: "POST", Path: "/api/calls", Header: headers(h), Body: []byte(body)})
		if !ex.Verdict.Allow {
			t.Fatalf("call: %+v", ex.Verdict)
		}
		rw := g.Rewrite(ctx, ex, &gate.Response{Status: 201, Header: headers(map[string]string{"content-type": "application/json"}),
			Body: []byte(`{"id":"call-77","contact_id":"c-4","phone":"+49 30 1","notes":"x"}`)})
		out := map[string]string{}
		for k, v := range rw.SetHeaders {
			out[k] = v
		}
		out[gate.HeaderCommSensitivity] = ex.Verdict.ResponseHeaders[gate.HeaderCommSensitivity]
		return out
	}
	h := call(`{"contact_id":"c-4","direction":"inbound","topic":"care","phone":"+49 30 1"}`)
	rec, err := st.Subject(ctx, model.SubjectRef{Entity: "phone_number", ID: "+49 30 1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Evidence) != 1 || rec.Evidence[0].ContactID != "c-4" || rec.Evidence[0].CommIDs[0] != "call-77" || h[gate.HeaderEvidence] != rec.Evidence[0].ID {
		t.Fatalf("phone number's evidence %+v, headers %v", rec.Evidence, h)
	}
	if contact, _ := st.Subject(ctx, model.SubjectRef{Entity: "contact", ID: "c-4"}); len(contact.Evidence) != 0 {
		t.Fatalf("the contact got evidence though the identity is the phone number: %+v", contact.Evidence)
	}
	// Without a phone number there is no identity to record evidence for.
	h = call(`{"contact_id":"c-8","direction":"inbound","topic":"care"}`)
	if h[gate.HeaderEvidence] != "none" || h[gate.HeaderEvidenceRefused] != "*:identity_phone_number" {
		t.Fatalf("a call without a phone number: %v", h)
	}
	if h = call(`{"contact_id":"c-8","direction":"inbound","topic":"weather"}`); h[gate.HeaderCommSensitivity] != "1" {
		t.Fatalf("no rule matched: sensitivity %q, want default_sensitivity 1", h[gate.HeaderCommSensitivity])
	}
}

// flakyEvidence is a store whose next fail PutEvidence calls fail.
type flakyEvidence struct {
	cache.Store
	fail atomic.Int64
}

func (f *flakyEvidence) PutEvidence(ctx context.Context, evs []model.Evidence, e audit.Entry) ([]model.Evidence, error) {
	if f.fail.Add(-1) >= 0 {
		return nil, errors.New("store unavailable")
	}
	return f.Store.PutEvidence(ctx, evs, e)
}

// The backend recorded the communication: its evidence is not lost when the
// store refuses it once — retried until stored, never twice, and never with
// personal data in the logs.
func TestCommunicationEvidenceRetriedUntilStored(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	st := &flakyEvidence{Store: sc.App.Store}
	logs := &testlog.Buffer{}
	g, err := gate.New(gate.Options{
		Config: sc.App.Config, Store: st, Engine: sc.App.Engine, Identity: sc.App.Identity,
		Hasher: audit.NewHasher([]byte("k")), Logger: slog.New(slog.NewJSONHandler(logs, nil)),
		Registerer: prometheus.NewRegistry(), Now: func() time.Time { return sc.Now }, RectifyRetryFor: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close(context.Background()) })
	st.fail.Store(2)
	h := map[string]string{"x-gdpr-roles": "agent", "content-type": "application/json"}
	ex := g.Check(context.Background(), &gate.Request{Method: "POST", Path: "/api/calls", Header: headers(h),
		Body: []byte(`{"contact_id":"c-4","direction":"inbound","topic":"care"}`)})
	if !ex.Verdict.Allow {
		t.Fatalf("%+v", ex.Verdict)
	}
	rw := g.Rewrite(context.Background(), ex, &gate.Response{Status: 201, Header: headers(map[string]string{"content-type": "application/json"}), Body: []byte(`{"id":"call-9"}`)})
	if rw.SetHeaders[gate.HeaderEvidence] != "pending" {
		t.Fatalf("headers %v, want x-gdpr-evidence pending", rw.SetHeaders)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		rec, err := sc.App.Store.Subject(context.Background(), model.SubjectRef{Entity: "contact", ID: "c-4"})
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.Evidence) == 1 && rec.Evidence[0].CommIDs[0] == "call-9" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("evidence never stored: %+v", rec.Evidence)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if l := logs.String(); !strings.Contains(l, "retrying") || !strings.Contains(l, "call-9") || testid.MentionsID(l, "c-4") {
		t.Errorf("logs:\n%s", l)
	}
}
