package policy

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"google.golang.org/protobuf/encoding/protojson"
)

func TestResultShapes(t *testing.T) {
	tests := []struct {
		name   string
		result string
		want   func(Decision) bool
		err    string
	}{
		{"boolean true allows", `true`, func(d Decision) bool { return d.Allow && d.Shape == ShapeBool && !d.MaskSet }, ""},
		{"boolean false is opa-envoy-plugin's 403", `false`, func(d Decision) bool { return !d.Allow && d.Status == 403 && d.Reason == ReasonPolicyDenied }, ""},
		{"object allowed with headers in both forms", `{"allowed": true, "headers": [{"a": "1"}, {"b": ["2", "3"]}], "request_headers_to_remove": ["x"], "response_headers_to_add": {"r": "s"}}`,
			func(d Decision) bool {
				return d.Allow && len(d.EnvoyHeaders) == 3 && d.RequestHeadersToRemove[0] == "x" && d.ResponseHeadersToAdd[0] == Header{"r", "s"}
			}, ""},
		{"object denied defaults to 403 without body", `{"allowed": false}`, func(d Decision) bool { return !d.Allow && d.Status == 403 && d.Body == "" }, ""},
		{"object denied with status, body, metadata", `{"allowed": false, "http_status": 401, "body": "no", "dynamic_metadata": {"k": 1}}`,
			func(d Decision) bool { return d.Status == 401 && d.Body == "no" && d.DynamicMetadata["k"] != nil }, ""},
		{"http_status only matters on a denial", `{"allowed": true, "http_status": 999}`, func(d Decision) bool { return d.Allow && d.Status == 200 }, ""},
		{"explicit visible_mask", `{"allowed": true, "visible_mask": 7}`, func(d Decision) bool { return d.MaskSet && d.VisibleMask == 7 }, ""},
		{"gdprgate's own object", `{"allow": true, "status": 200, "reason": "allowed", "visible_mask": 3}`, func(d Decision) bool { return d.Shape == ShapeGDPR && d.MaskSet && d.VisibleMask == 3 }, ""},
		{"allowed not a boolean", `{"allowed": "yes"}`, nil, "not a boolean"},
		{"unknown status", `{"allowed": false, "http_status": 299}`, nil, "not an HTTP status"},
		{"query mutations are refused, not ignored", `{"allowed": true, "query_parameters_to_set": {"a": "b"}}`, nil, "not supported"},
		{"header value of the wrong type", `{"allowed": true, "headers": {"a": 1}}`, nil, "not a string"},
		{"reason unfit for a metric label", `{"allowed": false, "reason": "Has Spaces"}`, nil, "reason"},
		{"a string", `"allow"`, nil, "not an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := ast.JSON(ast.MustParseTerm(tt.result).Value)
			if err != nil {
				t.Fatal(err)
			}
			d, err := parseResult(v)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one mentioning %q", err, tt.err)
				}
				return
			}
			if err != nil || !tt.want(d) {
				t.Fatalf("parseResult = %+v, %v", d, err)
			}
		})
	}
}

func TestLayeredPolicyMemoisation(t *testing.T) {
	tests := []struct {
		dir, path       string
		entryMemoisable bool
	}{
		{"testdata/envoy_facts", "envoy/authz/allow", true},
		{"../authz/testdata/opaenvoy/token", "envoy/authz/allow", false},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			c, err := compilePolicy(context.Background(), mustRead(t, tt.dir), tt.path, false)
			if err != nil {
				t.Fatal(err)
			}
			if !c.layered || !c.memoisable {
				t.Errorf("layered=%v, GDPR decision memoisable=%v (%s): want both", c.layered, c.memoisable, c.why)
			}
			if c.entryMemoisable != tt.entryMemoisable {
				t.Errorf("entry memoisable=%v (%s), want %v", c.entryMemoisable, c.entryWhy, tt.entryMemoisable)
			}
		})
	}
	e, err := New(context.Background(), Options{Dir: "testdata/envoy_facts", Path: "envoy/authz/allow", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	f := alice(agent())
	for range 3 {
		d, err := e.DecideEntry(context.Background(), &f, nil)
		if err != nil || !d.Allow || d.Shape != ShapeBool {
			t.Fatalf("DecideEntry = %+v, %v", d, err)
		}
	}
	if n := e.cur.Load().entryMemo.len(); n != 1 {
		t.Errorf("entry memo holds %d decisions, want 1", n)
	}
}

func TestEntryPointMustExist(t *testing.T) {
	for _, path := range []string{"envoy/authz/nope", "gdprgate/authz/nothing"} {
		if _, err := New(context.Background(), Options{Dir: "testdata/envoy_facts", Path: path, Logger: quiet}); err == nil || !strings.Contains(err.Error(), "no rule") {
			t.Errorf("path %s: %v, want no rule", path, err)
		}
		if _, _, err := RunTests(context.Background(), "testdata/envoy_facts", path, nil, false); err == nil {
			t.Errorf("RunTests with path %s passed", path)
		}
	}
	if _, err := PathRef("a/ b"); err == nil {
		t.Error("a path with a space accepted")
	}
	if r, _ := PathRef("/envoy//authz/0"); r.String() != "data.envoy.authz[0]" {
		t.Errorf("PathRef = %v", r)
	}
}

// TestInputFromCheckRequest: attributes in protojson names, the way
// opa-envoy-plugin presents a CheckRequest (its documented v3 example).
func TestInputFromCheckRequest(t *testing.T) {
	var cr authv3.CheckRequest
	err := protojson.Unmarshal([]byte(`{"attributes": {
		"source": {"address": {"socketAddress": {"address": "172.17.0.1", "portValue": 61402}}, "principal": "spiffe://a"},
		"destination": {"address": {"socketAddress": {"address": "172.17.0.6", "portValue": 8000}}},
		"request": {"time": "2020-11-20T09:47:47.722473Z", "http": {"id": "135", "method": "POST",
			"headers": {"content-type": "application/json", "content-length": "41"}, "path": "/people?lang=en",
			"host": "h", "protocol": "HTTP/1.1", "body": "{\"firstname\":\"Charlie\", \"lastname\":\"Opa\"}", "size": 41}},
		"contextExtensions": {"k": "v"},
		"metadataContext": {"filterMetadata": {"envoy.filters.http.jwt_authn": {"verified_jwt": {"email": "a@b"}}}}}}`), &cr)
	if err != nil {
		t.Fatal(err)
	}
	v, err := buildInput(nil, &Request{Attributes: cr.GetAttributes()})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ast.JSON(v)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	for _, want := range []string{
		`"parsed_body":{"firstname":"Charlie","lastname":"Opa"}`,
		`"parsed_path":["people"]`,
		`"parsed_query":{"lang":["en"]}`,
		`"truncated_body":false`,
		`"version":{"encoding":"protojson","ext_authz":"v3"}`,
		`"source_principal":"spiffe://a"`,
		`"socketAddress":{"address":"172.17.0.1","portValue":61402}`,
		`"metadataContext":{"filterMetadata":{"envoy.filters.http.jwt_authn":{"verified_jwt":{"email":"a@b"}}}}`,
		`"contextExtensions":{"k":"v"}`,
		`"time":{"nanos":722473000,"seconds":1605865667}`,
		`"protocol":"HTTP/1.1"`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("input lacks %s:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), `"gdpr"`) {
		t.Error("input.gdpr present without facts")
	}
}

func TestTruncatedBodyIsNotParsed(t *testing.T) {
	ac := &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
		Path: "/", Headers: map[string]string{"content-type": "application/json", "content-length": "100"}, Body: `{"a":`,
	}}}
	v, err := buildInput(nil, &Request{Attributes: ac})
	if err != nil {
		t.Fatal(err)
	}
	obj := v.(ast.Object)
	if obj.Get(ast.StringTerm("truncated_body")).Value.Compare(ast.Boolean(true)) != 0 ||
		obj.Get(ast.StringTerm("parsed_body")).Value.Compare(ast.Null{}) != 0 {
		t.Errorf("input %v: want truncated_body true, parsed_body null", v)
	}
}

func TestInputGDPRMirrorsTopLevelFacts(t *testing.T) {
	f := alice(agent())
	v, err := buildInput(&f, nil)
	if err != nil {
		t.Fatal(err)
	}
	obj := v.(ast.Object)
	gdpr := obj.Get(ast.StringTerm("gdpr")).Value.(ast.Object)
	n := 0
	obj.Foreach(func(k, val *ast.Term) {
		if k.Equal(ast.StringTerm("gdpr")) {
			return
		}
		n++
		if g := gdpr.Get(k); g == nil || !g.Equal(val) {
			t.Errorf("input.gdpr.%v = %v, want %v", k, g, val)
		}
	})
	if n == 0 || gdpr.Len() != n {
		t.Errorf("input.gdpr has %d keys, top level %d", gdpr.Len(), n)
	}
}
