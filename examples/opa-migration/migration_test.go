package migration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/open-policy-agent/opa/v1/bundle"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gdprgate/gdprgate/authz/envoytest"
	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/examples/envoy/bootstrapcheck"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/policy"
)

const jwtNS = "envoy.filters.http.jwt_authn"

func migrationConfig(t *testing.T) *config.Config {
	t.Helper()
	data, err := os.ReadFile("gdprgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse(data)
	if err != nil {
		t.Fatalf("gdprgate.yaml: %v", err)
	}
	return c
}

// TestEnvoyBootstrapMatchesGdprgate validates envoy.yaml as Envoy would
// (strict protojson, every typed_config, every cluster referenced) and
// checks that it hands gdprgate what gdprgate.yaml expects.
func TestEnvoyBootstrapMatchesGdprgate(t *testing.T) {
	data, err := os.ReadFile("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bs, err := bootstrapcheck.Check(data)
	if err != nil {
		t.Fatal(err)
	}
	cfg := migrationConfig(t)
	var hcm hcmv3.HttpConnectionManager
	if err := bs.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, f := range hcm.GetHttpFilters() {
		order = append(order, f.GetName())
		switch f.GetName() {
		case "envoy.filters.http.jwt_authn":
			var ja jwtv3.JwtAuthentication
			if err := f.GetTypedConfig().UnmarshalTo(&ja); err != nil {
				t.Fatal(err)
			}
			for name, p := range ja.GetProviders() {
				if p.GetPayloadInMetadata() != cfg.Identity.EnvoyJWT.PayloadKey {
					t.Errorf("provider %s puts the payload at %q, gdprgate reads %q", name, p.GetPayloadInMetadata(), cfg.Identity.EnvoyJWT.PayloadKey)
				}
			}
		case "envoy.filters.http.ext_authz":
			var ea extauthzv3.ExtAuthz
			if err := f.GetTypedConfig().UnmarshalTo(&ea); err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(ea.GetMetadataContextNamespaces(), jwtNS) || ea.GetFailureModeAllow() ||
				ea.GetGrpcService().GetEnvoyGrpc().GetClusterName() != "gdprgate" {
				t.Errorf("ext_authz: %v", &ea)
			}
		case "envoy.filters.http.ext_proc":
			var ep extprocv3.ExternalProcessor
			if err := f.GetTypedConfig().UnmarshalTo(&ep); err != nil {
				t.Fatal(err)
			}
			fwd := ep.GetMetadataOptions().GetForwardingNamespaces().GetUntyped()
			if !slices.Contains(fwd, jwtNS) || !slices.Contains(fwd, "envoy.filters.http.ext_authz") ||
				ep.GetProcessingMode().GetResponseBodyMode() != extprocv3.ProcessingMode_BUFFERED {
				t.Errorf("ext_proc: %v", &ep)
			}
		}
	}
	want := []string{"envoy.filters.http.jwt_authn", "envoy.filters.http.ext_authz", "envoy.filters.http.ext_proc", "envoy.filters.http.router"}
	if !slices.Equal(order, want) {
		t.Errorf("filters %v, want %v", order, want)
	}
}

func TestPolicyPassesItsTests(t *testing.T) {
	cfg := migrationConfig(t)
	passed, failed, err := policy.RunTests(context.Background(), "policy", cfg.Policy.Path, nil, false)
	if err != nil || failed != 0 || passed == 0 {
		t.Fatalf("passed %d, failed %d, %v", passed, failed, err)
	}
}

// signedBundle builds the bundle `opa build -b policy --signing-key` would.
func signedBundle(t *testing.T, key *rsa.PrivateKey) []byte {
	t.Helper()
	b, err := bundle.NewCustomReader(bundle.NewDirectoryLoader("policy")).Read()
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := b.GenerateSignature(bundle.NewSigningConfig(string(pemKey), "RS256", ""), "crm_signer", false); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).Write(b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestMigrationThroughEnvoy runs the example as a team would: gdprgate with
// the CRM's route map plus gdprgate.yaml, its policy from a signed bundle
// served over HTTP, behind Envoy emulation with jwt_authn's verified
// payload — first in shadow mode, as shipped, then enforcing.
func TestMigrationThroughEnvoy(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	bundleBytes := signedBundle(t, key)
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/bundles/crm-access.tar.gz":
			_, _ = w.Write(bundleBytes)
		case "/logs":
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(server.Close)
	now := time.Now().UTC().Truncate(time.Second)
	backend := httptest.NewServer(crm.New(now))
	t.Cleanup(backend.Close)

	for _, mode := range []string{config.ModeShadow, config.ModeEnforce} {
		t.Run(mode, func(t *testing.T) {
			mig := migrationConfig(t)
			sc := apptest.New(t, apptest.Options{Now: now, Configure: func(c *config.Config) {
				c.Policy, c.Identity, c.Decisions.ClearHeaders, c.OPA = mig.Policy, mig.Identity, mig.Decisions.ClearHeaders, mig.OPA
				c.Mode = mode
				c.OPA["services"].(map[string]any)["bundle_server"].(map[string]any)["url"] = server.URL
				c.OPA["keys"].(map[string]any)["crm_signer"].(map[string]any)["key"] = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
			}})
			deadline := time.Now().Add(30 * time.Second)
			for sc.App.Engine.Ready() != nil {
				if time.Now().After(deadline) {
					t.Fatal("the bundle was never activated")
				}
				time.Sleep(20 * time.Millisecond)
			}
			conn := sc.GRPC(t)
			env := envoytest.New(envoytest.Options{Authz: conn, Proc: conn, UpstreamURL: backend.URL,
				ForwardAuthzMetadata: true, ForwardNamespaces: []string{jwtNS}, MetadataContextNamespaces: []string{jwtNS},
				WithRequestBody: func(m, _ string) bool { return m == "POST" },
				AuthzTimeout:    10 * time.Second, MessageTimeout: 10 * time.Second,
				// jwt_authn with payload_in_metadata: verified_jwt.
				FilterMetadata: func(r *http.Request) map[string]*structpb.Struct {
					roles := r.Header.Get("x-test-roles")
					if roles == "" {
						return nil
					}
					var list []any
					for _, role := range strings.Split(roles, ",") {
						list = append(list, role)
					}
					s, _ := structpb.NewStruct(map[string]any{"verified_jwt": map[string]any{"sub": "u-1", "roles": list}})
					return map[string]*structpb.Struct{jwtNS: s}
				},
			})
			t.Cleanup(env.Close)
			do := func(method, path, roles, body string) *envoytest.Response {
				var rd *strings.Reader
				if body != "" {
					rd = strings.NewReader(body)
				}
				req, _ := http.NewRequest(method, "http://crm.local"+path, nil)
				if rd != nil {
					req, _ = http.NewRequest(method, "http://crm.local"+path, rd)
					req.Header.Set("content-type", "application/json")
				}
				if roles != "" {
					req.Header.Set("x-test-roles", roles)
				}
				resp, err := env.Do(context.Background(), req)
				if err != nil {
					t.Fatal(err)
				}
				return resp
			}
			field := func(resp *envoytest.Response, name string) any {
				var doc map[string]any
				_ = json.Unmarshal(resp.Body, &doc)
				return doc[name]
			}

			agent := do("GET", "/api/contacts/c-1", "agent", "")
			noToken := do("GET", "/api/contacts/c-1", "", "")
			call := do("POST", "/api/outbound/calls", "agent", `{"contact_id":"c-1","type":"campaign"}`)
			if mode == config.ModeShadow {
				if agent.Status != 200 || field(agent, "health_notes") == nil || noToken.Status != 200 || call.AuthzDenied {
					t.Fatalf("shadow mode changed something: %d %d %d", agent.Status, noToken.Status, call.Status)
				}
				return
			}
			if agent.Status != 200 || field(agent, "first_name") != "Alice" || field(agent, "health_notes") != nil {
				t.Errorf("agent reads Alice: %d %s", agent.Status, agent.Body)
			}
			if agent.Upstream.Header.Get("x-authz-policy") != "crm-access" {
				t.Errorf("the policy's header did not reach the CRM: %v", agent.Upstream.Header)
			}
			if noToken.Status != 401 || string(noToken.Body) != "a verified token is required" {
				t.Errorf("no token: %d %q", noToken.Status, noToken.Body)
			}
			if call.Status != 403 || string(call.Body) != "your role may not do this" {
				t.Errorf("agent's outbound call: %d %q", call.Status, call.Body)
			}
			if eve := do("GET", "/api/contacts/c-5", "auditor", ""); eve.Status != 404 {
				t.Errorf("obliviated Eve, allowed by the policy: %d, want gdprgate's 404", eve.Status)
			}
		})
	}
}
