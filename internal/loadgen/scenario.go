package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gdprgate/gdprgate/authz/envoytest"
)

// scenarioCall is one request of the built-in scenario (examples/crm/README.md's CRM routes).
type scenarioCall struct {
	method, path, roles, mode, body string
}

var builtin = []scenarioCall{
	{method: "GET", path: "/api/contacts/c-1", roles: "agent"},
	{method: "GET", path: "/api/contacts/c-1", roles: "supervisor"},
	{method: "GET", path: "/api/contacts/c-2", roles: "supervisor", mode: "archive"},
	{method: "GET", path: "/api/contacts?page=1&per_page=20", roles: "agent"},
	{method: "GET", path: "/api/contacts/c-1/calls", roles: "agent"},
	{method: "GET", path: "/api/contacts/c-4", roles: "agent"},
	{method: "GET", path: "/api/contacts/c-5", roles: "agent"},
	{method: "GET", path: "/api/issues/i-1", roles: "agent"},
	{method: "GET", path: "/api/contacts/c-1/export", roles: "auditor"},
	{method: "GET", path: "/api/contacts/c-1/export", roles: "agent"},
	{method: "POST", path: "/api/outbound/calls", roles: "marketer", body: `{"contact_id":"c-4","type":"campaign"}`},
	{method: "POST", path: "/api/outbound/emails", roles: "agent", body: `{"contact_id":"c-1","type":"adhoc"}`},
	{method: "PUT", path: "/api/contacts/c-1", roles: "agent", body: `{"email":"alice@example.com"}`},
}

// BuiltinScenario returns CheckRequests shaped exactly as envoytest (and so Envoy) builds
// them for the reference CRM's routes, with request bodies for the routes whose subject is
// in the body.
func BuiltinScenario() []*authv3.CheckRequest {
	e := envoytest.New(envoytest.Options{
		WithRequestBody: func(method, _ string) bool { return method == http.MethodPost || method == http.MethodPut },
	})
	defer e.Close()
	out := make([]*authv3.CheckRequest, 0, len(builtin))
	for _, c := range builtin {
		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		req, err := http.NewRequest(c.method, "http://crm.internal"+c.path, body)
		if err != nil {
			panic(fmt.Sprintf("loadgen: built-in scenario %s %s: %v", c.method, c.path, err))
		}
		req.Header.Set("x-gdpr-roles", c.roles)
		req.Header.Set("authorization", "Bearer demo-token")
		if c.mode != "" {
			req.Header.Set("x-gdpr-mode", c.mode)
		}
		if c.body != "" {
			req.Header.Set("content-type", "application/json")
		}
		creq, err := e.CheckRequest(req)
		if err != nil {
			panic(fmt.Sprintf("loadgen: built-in scenario: %v", err))
		}
		out = append(out, creq)
	}
	return out
}

// LoadScenario reads a JSON array of CheckRequests (protojson form, as Envoy's
// CheckRequest would be printed) from path.
func LoadScenario(path string) ([]*authv3.CheckRequest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(b, &raws); err != nil {
		return nil, fmt.Errorf("scenario %s: want a JSON array of CheckRequests: %w", path, err)
	}
	if len(raws) == 0 {
		return nil, fmt.Errorf("scenario %s: empty", path)
	}
	out := make([]*authv3.CheckRequest, 0, len(raws))
	for i, r := range raws {
		creq := &authv3.CheckRequest{}
		if err := protojson.Unmarshal(r, creq); err != nil {
			return nil, fmt.Errorf("scenario %s: request %d: %w", path, i, err)
		}
		out = append(out, creq)
	}
	return out, nil
}
