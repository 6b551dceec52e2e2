package authz_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gdprgate/gdprgate/authz/envoytest"
	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"

	"net/http/httptest"
)

// TestIdentityFromJWTAuthnMetadata: the usual Envoy setup — jwt_authn
// verifies the token and puts its payload into the dynamic metadata
// (payload_in_metadata), ext_authz and ext_proc forward that namespace —
// gives gdprgate its caller; a roles header is no identity then.
func TestIdentityFromJWTAuthnMetadata(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	backend := httptest.NewServer(crm.New(now))
	t.Cleanup(backend.Close)
	sc := apptest.New(t, apptest.Options{Now: now, Configure: func(c *config.Config) {
		c.Identity.EnvoyJWT = &config.EnvoyJWTConfig{PayloadKey: "verified_jwt", RolesClaim: "groups"}
	}})
	conn := sc.GRPC(t)
	const ns = "envoy.filters.http.jwt_authn"
	env := envoytest.New(envoytest.Options{
		Authz: conn, Proc: conn, UpstreamURL: backend.URL,
		ForwardAuthzMetadata: true, SpuriousIsError: true,
		AuthzTimeout: 10 * time.Second, MessageTimeout: 10 * time.Second,
		MetadataContextNamespaces: []string{ns},
		ForwardNamespaces:         []string{ns},
		// Stands in for jwt_authn: a verified token's payload.
		FilterMetadata: func(r *http.Request) map[string]*structpb.Struct {
			groups := r.Header.Get("x-test-verified-groups")
			if groups == "" {
				return nil
			}
			var list []any
			for _, g := range strings.Split(groups, ",") {
				list = append(list, g)
			}
			payload, _ := structpb.NewStruct(map[string]any{"verified_jwt": map[string]any{"sub": "u-1", "groups": list}})
			return map[string]*structpb.Struct{ns: payload}
		},
	})
	t.Cleanup(env.Close)

	resp := do(t, env, "GET", "/api/contacts/c-1", map[string]string{"x-test-verified-groups": "agent"}, "")
	if resp.Status != 200 || !strings.Contains(string(resp.Body), `"first_name":"Alice"`) || !strings.Contains(string(resp.Body), `"health_notes":null`) {
		t.Fatalf("agent from jwt_authn: %d %s", resp.Status, resp.Body)
	}
	resp = do(t, env, "GET", "/api/contacts/c-1", map[string]string{"x-test-verified-groups": "auditor"}, "")
	if resp.Status != 200 || strings.Contains(string(resp.Body), `"health_notes":null`) {
		t.Fatalf("auditor from jwt_authn sees health notes: %d %s", resp.Status, resp.Body)
	}
	resp = do(t, env, "GET", "/api/contacts/c-1", map[string]string{"x-gdpr-roles": "auditor"}, "")
	if resp.Status != 401 || resp.Upstream != nil {
		t.Fatalf("forged roles header without a verified payload: %d, want 401", resp.Status)
	}
}
