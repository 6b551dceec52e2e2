package envoy

import (
	"os"
	"regexp"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/yamlfile"
	"github.com/gdprgate/gdprgate/policy"

	"github.com/gdprgate/gdprgate/examples/envoy/bootstrapcheck"
)

func checkBootstrap(data []byte) (*bootstrapv3.Bootstrap, error) { return bootstrapcheck.Check(data) }

func TestBootstrapsAreValid(t *testing.T) {
	for _, file := range []string{"envoy.yaml", "envoy-local.yaml"} {
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			bs, err := checkBootstrap(data)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if got := bs.GetAdmin().GetAddress().GetSocketAddress().GetPortValue(); got != 9901 {
				t.Errorf("admin port %d, want 9901", got)
			}
			var names []string
			for _, c := range bs.GetStaticResources().GetClusters() {
				names = append(names, c.GetName())
			}
			if strings.Join(names, ",") != "crm,gdprgate" {
				t.Errorf("clusters %v, want crm,gdprgate", names)
			}
		})
	}
}

// The gate's contract with Envoy: gRPC to cluster gdprgate, fail closed, the
// ext_authz metadata forwarded to ext_proc, response bodies buffered.
func TestBootstrapWiresGdprgateAsDesigned(t *testing.T) {
	for _, file := range []string{"envoy.yaml", "envoy-local.yaml"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		js, err := yamlfile.ToJSON(data)
		if err != nil {
			t.Fatal(err)
		}
		text := string(js)
		for _, want := range []string{
			`"failure_mode_allow":false`,
			`"transport_api_version":"V3"`,
			`"response_body_mode":"BUFFERED"`,
			`"request_header_mode":"SEND"`,
			`"response_header_mode":"SEND"`,
			`"allow_mode_override":true`,
			`"untyped":["envoy.filters.http.ext_authz"]`,
			`"allow_partial_message":false`,
			`"cluster_name":"gdprgate"`,
			`"http2_protocol_options":{}`,
			// Path normalisation as defence in depth (gdprgate reads its
			// own canonical path; issue 10 §1).
			`"normalize_path":true`,
			`"merge_slashes":true`,
			`"path_with_escaped_slashes_action":"REJECT_REQUEST"`,
		} {
			if !strings.Contains(text, want) {
				t.Errorf("%s lacks %s", file, want)
			}
		}
		order := []string{"envoy.filters.http.ext_authz\"", "envoy.filters.http.ext_proc\"", "envoy.filters.http.router\""}
		if file == "envoy.yaml" {
			order = append([]string{"envoy.filters.http.header_mutation\"", "envoy.filters.http.jwt_authn\""}, order...)
			if !strings.Contains(text, `"header_name":"x-gdpr-roles"`) || !strings.Contains(text, `"remove":"x-gdpr-roles"`) {
				t.Errorf("%s must strip x-gdpr-roles and set it from the JWT", file)
			}
			// Identity headers are never the client's (issue 10 §5).
			for _, h := range []string{"x-gdpr-caller", "x-gdpr-project", "x-gdpr-coverage", "x-gdpr-redacted", "x-gdpr-decision-id"} {
				if !strings.Contains(text, `"remove":"`+h+`"`) {
					t.Errorf("%s must strip a client's %s before ext_authz", file, h)
				}
			}
		}
		last := -1
		for _, f := range order {
			i := strings.Index(text, `"name":"`+f)
			if i < 0 || i < last {
				t.Errorf("%s: filter %s missing or out of order", file, f)
			}
			last = i
		}
	}
}

// The checker must catch the faults an edit typically introduces.
func TestCheckerCatchesFaults(t *testing.T) {
	data, err := os.ReadFile("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, old, new, wantErr string
	}{
		{"typo'd grpc cluster name", "envoy_grpc: {cluster_name: gdprgate}", "envoy_grpc: {cluster_name: gdprgte}", `cluster "gdprgte"`},
		{"typo'd route cluster", "route: {cluster: crm, timeout: 15s}", "route: {cluster: cmr, timeout: 15s}", `cluster "cmr"`},
		{"unknown field in the bootstrap", "per_connection_buffer_limit_bytes:", "per_connection_buffer_limit:", "unknown field"},
		{"unknown field inside a typed_config", "allow_mode_override: true", "allow_mode_overide: true", "unknown field"},
		{"unknown enum name inside a typed_config", "response_body_mode: BUFFERED", "response_body_mode: BUFFERD", "BUFFERD"},
		{"undefined enum number inside a typed_config", "request_header_mode: SEND", "request_header_mode: 7", "RequestHeaderMode"},
		{"typed_config rule violated", "stat_prefix: crm_ingress", `stat_prefix: ""`, "StatPrefix"},
		{"unregistered extension type", "envoy.extensions.filters.http.router.v3.Router", "envoy.extensions.filters.http.router.v3.Routr", "Routr"},
		{"bootstrap rule violated", "connect_timeout: 1s", "connect_timeout: -1s", "ConnectTimeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := string(data)
			if !strings.Contains(text, tc.old) {
				t.Fatalf("envoy.yaml no longer contains %q: update the test", tc.old)
			}
			_, err := checkBootstrap([]byte(strings.Replace(text, tc.old, tc.new, 1)))
			if err == nil {
				t.Fatal("checker accepted the faulty bootstrap")
			}
			t.Logf("caught: %v", err)
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

// Every mapped route that reads its request body — each write, whose changed
// fields gdprgate checks and audits, and each outbound route — must have
// that body sent to ext_authz whole by the route Envoy picks for it.
func TestEveryMappedBodyRouteSendsItsBody(t *testing.T) {
	cfg, err := config.Parse(crm.GatewayConfigYAML)
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"envoy.yaml", "envoy-local.yaml"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		bs, err := checkBootstrap(data)
		if err != nil {
			t.Fatal(err)
		}
		var m hcmv3.HttpConnectionManager
		if err := bs.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&m); err != nil {
			t.Fatal(err)
		}
		routes := m.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()
		checked := 0
		for _, rc := range cfg.Routes {
			if rc.Kind != policy.KindWrite && rc.Kind != policy.KindOutbound {
				continue
			}
			path := regexp.MustCompile(`\{[^}]*\}`).ReplaceAllString(rc.Path, "x")
			r := pickRoute(t, routes, rc.Method, path)
			if r == nil {
				t.Errorf("%s: no Envoy route for %s %s", file, rc.Method, path)
				continue
			}
			var per extauthzv3.ExtAuthzPerRoute
			a := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]
			if a == nil || a.UnmarshalTo(&per) != nil || per.GetCheckSettings().GetWithRequestBody() == nil ||
				per.GetCheckSettings().GetWithRequestBody().GetAllowPartialMessage() {
				t.Errorf("%s: route %q (%s %s) does not send its whole body to ext_authz", file, rc.Name, rc.Method, path)
			}
			checked++
		}
		if checked < 3 {
			t.Fatalf("only %d body routes checked", checked)
		}
	}
}

// pickRoute is the first route whose prefix or path and :method header
// matcher accept the request, as Envoy's router picks it.
func pickRoute(t *testing.T, routes []*routev3.Route, method, path string) *routev3.Route {
	t.Helper()
	for _, r := range routes {
		mt := r.GetMatch()
		switch {
		case mt.GetPrefix() != "":
			if !strings.HasPrefix(path, mt.GetPrefix()) {
				continue
			}
		case mt.GetPath() != "":
			if path != mt.GetPath() {
				continue
			}
		default:
			t.Fatalf("route match %v: only prefix and path are read here", mt)
		}
		ok := true
		for _, h := range mt.GetHeaders() {
			if h.GetName() != ":method" {
				t.Fatalf("header matcher %v: only :method is read here", h)
			}
			sm := h.GetStringMatch()
			switch {
			case sm.GetExact() != "":
				ok = ok && sm.GetExact() == method
			case sm.GetSafeRegex() != nil:
				ok = ok && regexp.MustCompile(`^(?:`+sm.GetSafeRegex().GetRegex()+`)$`).MatchString(method)
			default:
				t.Fatalf("header matcher %v: only exact and safe_regex are read here", h)
			}
		}
		if ok {
			return r
		}
	}
	return nil
}
