package gate_test

import (
	"context"
	"strings"
	"testing"

	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/gate"
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
