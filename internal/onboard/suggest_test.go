package onboard

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/gdprgate/gdprgate/internal/config"
)

func suggestFile(t *testing.T, path string, o Options) (*Draft, *config.Config, string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Suggest(context.Background(), data, o)
	if err != nil {
		t.Fatal(err)
	}
	sens := DefaultSensitivities
	if o.Sensitivities != nil {
		sens = o.Sensitivities
	}
	text := string(d.YAML(sens))
	// The draft is a valid route map as it is.
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatalf("the draft is refused: %v\n%s", err, text)
	}
	return d, cfg, text
}

func route(t *testing.T, cfg *config.Config, name string) config.Route {
	t.Helper()
	for _, r := range cfg.Routes {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no route %s", name)
	return config.Route{}
}

func draftRoute(d *Draft, name string) Route {
	for _, r := range d.Routes {
		if r.Name == name {
			return r
		}
	}
	return Route{}
}

func TestSuggestDraftsTheCRMsRouteMap(t *testing.T) {
	d, cfg, text := suggestFile(t, "testdata/crm.yaml", Options{Source: "crm.yaml"})
	for _, c := range []struct {
		name, kind, from, subject string
		fields                    map[string]string
	}{
		{"getContact", "read", "path", "id", map[string]string{"email": "contact", "address": "contact", "health_notes": "health", "birth_year": "significant", "ip_address": "auxiliary", "customer_number": "auxiliary", "first_name": "contact"}},
		{"listContacts", "list", "item", "data.#.id", map[string]string{"data.#.email": "contact", "data.#.sex": "significant"}},
		{"listContactCalls", "read", "path", "id", map[string]string{"data.#.phone": "contact"}},
		{"exportContact", "export", "path", "id", map[string]string{"contact.income_category": "significant", "calls.#.phone": "contact"}},
		{"updateContact", "write", "path", "id", map[string]string{"last_name": "contact"}},
		{"startCall", "outbound", "body", "contact_id", nil},
	} {
		r := route(t, cfg, c.name)
		if r.Kind != c.kind || r.Subject == nil || r.Subject.From != c.from || r.Subject.Name+r.Subject.Path != c.subject || r.Subject.Entity != "contact" {
			t.Errorf("%s: kind %s subject %+v, want %s from %s %s", c.name, r.Kind, r.Subject, c.kind, c.from, c.subject)
		}
		for f, s := range c.fields {
			if r.Fields[f] != s {
				t.Errorf("%s: field %s is %q, want %q", c.name, f, r.Fields[f], s)
			}
		}
	}
	// Where a person's own route answers, the answer confirms whom.
	for name, want := range map[string]string{"getContact": "id", "listContactCalls": "data.#.contact_id", "exportContact": "contact.id", "updateContact": ""} {
		if got := route(t, cfg, name).Subject.Confirm; got != want {
			t.Errorf("%s: confirm %q, want %q", name, got, want)
		}
	}
	// The address object is proposed whole, not field by field.
	if _, ok := route(t, cfg, "getContact").Fields["address.street"]; ok {
		t.Error("address proposed field by field")
	}
	call := route(t, cfg, "startCall")
	if call.CommTypeFrom != "type" || call.CommTypes["campaign"] != "campaign_oc" || call.CommTypes["callback"] != "callback_oc" {
		t.Errorf("outbound call: %+v", call)
	}
	if !strings.Contains(text, "values of type with no communication type (refused until mapped): survey") {
		t.Error("the unmapped enum value is not pointed out")
	}
	// What no rule knows is left to a person, by name; the subject's own id
	// is not listed.
	gc := draftRoute(d, "getContact")
	if strings.Join(gc.Unclassified, ",") != "account_id,created_at,tags" {
		t.Errorf("unclassified %v", gc.Unclassified)
	}
	calls := draftRoute(d, "listContactCalls")
	if !strings.Contains(strings.Join(calls.Unclassified, ","), "data.#.notes") {
		t.Errorf("free-text call notes must be left to a person: %v", calls.Unclassified)
	}
	for _, want := range []string{
		"email: contact   # format email: an e-mail address (high)",
		"phone: contact   # name: phone number (medium)",
		"health_notes: health   # name contains \"health\": health data (GDPR Art. 9) (medium)",
		"#   DELETE /api/contacts/{id}",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the draft lacks %q", want)
		}
	}
	if _, ok := cfg.Routes, true; !ok || len(cfg.Routes) != 7 {
		t.Errorf("%d routes", len(cfg.Routes))
	}
}

func TestSuggestReadsSwagger2WithNestedObjectsAndArrays(t *testing.T) {
	d, cfg, text := suggestFile(t, "testdata/ticketing.yaml", Options{Source: "ticketing.yaml", Entity: "contact"})
	if d.Format != "Swagger 2.0" {
		t.Errorf("format %q", d.Format)
	}
	tk := route(t, cfg, "getTicket")
	// basePath is part of the path gdprgate sees.
	if tk.Path != "/v2/tickets/{ticketId}" || tk.Kind != "read" {
		t.Errorf("ticket route %+v", tk)
	}
	// A ticket is not a person: its requester is the subject, found in the answer.
	if tk.Subject == nil || tk.Subject.From != "response_body" || tk.Subject.Path != "requester.id" || tk.Subject.Entity != "contact" {
		t.Errorf("ticket subject %+v", tk.Subject)
	}
	for f, s := range map[string]string{
		"requester.email":               "contact",
		"requester.name":                "contact",
		"comments.#.author.email":       "contact",
		"comments.#.author.mobilePhone": "contact",
		"custom_fields.allergies":       "health",
	} {
		if tk.Fields[f] != s {
			t.Errorf("ticket field %s = %q, want %q", f, tk.Fields[f], s)
		}
	}
	list := route(t, cfg, "listTickets")
	if list.Kind != "list" || list.Subject.From != "item" || list.Subject.Path != "results.#.requester.id" {
		t.Errorf("ticket list %+v", list.Subject)
	}
	user := route(t, cfg, "getUser")
	for f, s := range map[string]string{"dateOfBirth": "significant", "iban": "significant", "gender": "significant", "religion": "health", "lastLoginIp": "auxiliary", "name": "contact"} {
		if user.Fields[f] != s {
			t.Errorf("user field %s = %q, want %q", f, user.Fields[f], s)
		}
	}
	if _, ok := user.Fields["organization.name"]; ok {
		t.Error("an organisation's name is proposed as a person's")
	}
	msg := route(t, cfg, "sendMessage")
	if msg.Kind != "outbound" || msg.CommType != "adhoc_m" || msg.Subject.From != "path" || msg.Subject.Name != "userId" {
		t.Errorf("message route %+v %+v", msg, msg.Subject)
	}
	// A key with a dot is escaped for gjson and left to a person.
	if !strings.Contains(text, `custom_fields.contract\.number`) {
		t.Error("a dotted property name is not escaped")
	}
	for _, want := range []string{"dateOfBirth: significant   # name and format date: birth date (high)", "(low)"} {
		if !strings.Contains(text, want) {
			t.Errorf("the draft lacks %q:\n%s", want, text)
		}
	}
}

func TestSuggestMapsClassesToYourSensitivities(t *testing.T) {
	_, cfg, _ := suggestFile(t, "testdata/crm.yaml", Options{Sensitivities: map[Class]string{Auxiliary: "aux", Contact: "personal", Significant: "sensitive", Special: "art9"}})
	r := route(t, cfg, "getContact")
	if r.Fields["email"] != "personal" || r.Fields["health_notes"] != "art9" || r.Fields["ip_address"] != "aux" || r.Fields["sex"] != "sensitive" {
		t.Errorf("fields %v", r.Fields)
	}
}

func TestSuggestRefusesWhatIsNoOpenAPIDocument(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"hello: world\n", `neither "openapi: 3.x" nor "swagger: 2.0"`},
		{"openapi: 3.0.3\npaths: [\n", "line"},
		{"openapi: 3.0.3\ninfo: {title: x, version: '1'}\npaths:\n  /a:\n    get:\n      responses:\n        '200': {$ref: '#/components/responses/Missing'}\n", "Missing"},
	} {
		if _, err := Suggest(context.Background(), []byte(c.doc), Options{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error mentioning %q", c.doc, err, c.want)
		}
	}
}

func TestClassifyByNameAndFormat(t *testing.T) {
	for _, c := range []struct {
		name, format string
		object       bool
		class        Class
		conf         Confidence
		ok           bool
	}{
		{"email", "email", false, Contact, High, true},
		{"contactEmail", "", false, Contact, Medium, true},
		{"secondary_contact_email_address", "", false, Contact, Low, true},
		{"IPAddress", "", false, Auxiliary, Medium, true},
		{"date_of_birth", "date", false, Significant, High, true},
		{"iban", "", false, Significant, Medium, true},
		{"allergies", "", false, Special, Medium, true},
		{"homeAddress", "", true, Contact, Medium, true},
		{"mac_address", "", false, Auxiliary, Medium, true},
		{"status", "", false, "", "", false},
		{"page", "", false, "", "", false},
		{"company_name", "", false, "", "", false},
	} {
		v, ok := classify(c.name, c.format, c.object, false)
		if ok != c.ok || v.class != c.class || v.confidence != c.conf {
			t.Errorf("%s (%s): %v %s %s, want %v %s %s", c.name, c.format, ok, v.class, v.confidence, c.ok, c.class, c.conf)
		}
	}
}
