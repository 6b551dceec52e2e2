package authz_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gdprgate/gdprgate/authz/envoytest"
	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
)

// envoyWith puts gdprgate, running the policy in dir at path, behind the
// Envoy emulator (ext_authz with the request body, ext_proc) in front of
// the example CRM, all over real gRPC and HTTP.
func envoyWith(t *testing.T, dir, path string, opts envoytest.Options) *envoytest.Envoy {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	backend := httptest.NewServer(crm.New(now))
	t.Cleanup(backend.Close)
	sc := apptest.New(t, apptest.Options{Now: now, Configure: func(c *config.Config) {
		c.PolicyDir, c.Policy.Path = dir, path
	}})
	conn := sc.GRPC(t)
	opts.Authz, opts.Proc, opts.UpstreamURL = conn, conn, backend.URL
	opts.ForwardAuthzMetadata = true
	opts.SpuriousIsError = true
	opts.AuthzTimeout, opts.MessageTimeout = 10*time.Second, 10*time.Second
	if opts.WithRequestBody == nil {
		opts.WithRequestBody = func(string, string) bool { return true }
	}
	env := envoytest.New(opts)
	t.Cleanup(env.Close)
	return env
}

// primerToken signs the primer's kind of token: HS256 with the secret
// "secret", a role, sub the base64url of the name, valid now.
func primerToken(t *testing.T, role, name string, exp time.Time) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"role": role, "sub": base64.URLEncoding.EncodeToString([]byte(name)),
		"nbf": time.Now().Add(-time.Hour).Unix(), "exp": exp.Unix(),
	}).SignedString([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func do(t *testing.T, env *envoytest.Envoy, method, target string, headers map[string]string, body string) *envoytest.Response {
	t.Helper()
	var req *http.Request
	var err error
	if body != "" {
		req, err = http.NewRequest(method, "http://crm.local"+target, strings.NewReader(body))
	} else {
		req, err = http.NewRequest(method, "http://crm.local"+target, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := env.Do(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestOPAEnvoyBooleanPolicyDecidesAsDocumented(t *testing.T) {
	env := envoyWith(t, "testdata/opaenvoy/token", "envoy/authz/allow", envoytest.Options{})
	later := time.Now().Add(time.Hour)
	guest := "Bearer " + primerToken(t, "guest", "alice", later)
	admin := "Bearer " + primerToken(t, "admin", "bob", later)
	expired := "Bearer " + primerToken(t, "admin", "bob", time.Now().Add(-time.Minute))
	json := map[string]string{"content-type": "application/json"}
	with := func(h map[string]string, auth string) map[string]string {
		out := map[string]string{"authorization": auth}
		for k, v := range h {
			out[k] = v
		}
		return out
	}
	tests := []struct {
		name         string
		method, path string
		headers      map[string]string
		body         string
		allowed      bool
	}{
		{"guest reads people", "GET", "/people/", with(nil, guest), "", true},
		{"guest may not create", "POST", "/people", with(json, guest), `{"firstname":"Charlie","lastname":"Opa"}`, false},
		{"admin creates someone else", "POST", "/people", with(json, admin), `{"firstname":"Charlie","lastname":"Opa"}`, true},
		{"admin may not create themself", "POST", "/people", with(json, admin), `{"firstname":"Bob","lastname":"Opa"}`, false},
		{"expired token", "GET", "/people/", with(nil, expired), "", false},
		{"no token", "GET", "/people/", nil, "", false},
		{"wrong method", "DELETE", "/people/x", with(nil, admin), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := do(t, env, tt.method, tt.path, tt.headers, tt.body)
			if tt.allowed {
				if resp.AuthzDenied || resp.Upstream == nil {
					t.Fatalf("denied (%d %s), want allowed", resp.Status, resp.Body)
				}
				return
			}
			// A boolean false is Envoy's plain 403, and the backend never sees it.
			if !resp.AuthzDenied || resp.Status != 403 || resp.Upstream != nil {
				t.Fatalf("status %d, denied %v, upstream %v: want 403 from ext_authz", resp.Status, resp.AuthzDenied, resp.Upstream != nil)
			}
		})
	}
}

func TestOPAEnvoyObjectResultHasItsMeaning(t *testing.T) {
	env := envoyWith(t, "testdata/opaenvoy/result", "envoy/authz/result", envoytest.Options{})
	guest := "Bearer " + primerToken(t, "guest", "alice", time.Now().Add(time.Hour))

	t.Run("allowed: headers upstream, removals, response headers, metadata", func(t *testing.T) {
		resp := do(t, env, "GET", "/people/", map[string]string{"authorization": guest, "x-internal-token": "leak", "x-debug": "1"}, "")
		if resp.AuthzDenied || resp.Upstream == nil {
			t.Fatalf("denied: %d %s", resp.Status, resp.Body)
		}
		up := resp.Upstream.Header
		if up.Get("x-authz-checked") != "yes" || up.Get("x-authz-by") != "people-policy" {
			t.Errorf("upstream headers %v: want the policy's headers", up)
		}
		if up.Get("x-internal-token") != "" || up.Get("x-debug") != "" {
			t.Errorf("request_headers_to_remove not applied: %v", up)
		}
		if resp.Header.Get("x-policy") != "people" {
			t.Errorf("response_headers_to_add missing from the client's response: %v", resp.Header)
		}
		if got := resp.AuthzMetadata.GetFields()["checked_role"].GetStringValue(); got != "guest" {
			t.Errorf("dynamic_metadata checked_role = %q, want guest (metadata %v)", got, resp.AuthzMetadata)
		}
		if resp.AuthzMetadata.GetFields()["decision_id"].GetStringValue() == "" {
			t.Error("decision_id missing from the dynamic metadata")
		}
	})
	t.Run("denied: http_status, body and headers to the client", func(t *testing.T) {
		resp := do(t, env, "GET", "/people/", nil, "")
		if !resp.AuthzDenied || resp.Status != 401 || string(resp.Body) != "token missing or expired" {
			t.Fatalf("got %d %q, want 401 with the policy's body", resp.Status, resp.Body)
		}
		if resp.Header.Get("x-authz-checked") != "yes" {
			t.Errorf("denial headers %v: want the policy's headers", resp.Header)
		}
		if resp.AuthzMetadata.GetFields()["checked_role"].GetStringValue() != "none" {
			t.Errorf("dynamic metadata on a denial: %v", resp.AuthzMetadata)
		}
		resp = do(t, env, "POST", "/people/x", map[string]string{"authorization": guest}, "")
		if resp.Status != 403 || string(resp.Body) != "not permitted" {
			t.Fatalf("got %d %q, want 403 not permitted", resp.Status, resp.Body)
		}
	})
}

func TestOPAEnvoyInputIsOPAEnvoyPlugins(t *testing.T) {
	env := envoyWith(t, "testdata/opaenvoy/inputs", "envoy/authz/allow", envoytest.Options{ContextExtensions: map[string]string{"team": "people"}})
	tests := []struct {
		name, method, target string
		headers              map[string]string
		body                 string
		allowed              bool
	}{
		{"parsed_path", "GET", "/people", nil, "", true},
		{"parsed_path of another path", "GET", "/persons", nil, "", false},
		{"parsed_query", "GET", "/search?lang=en&id=1&id=2", nil, "", true},
		{"parsed_query with other ids", "GET", "/search?lang=en&id=1", nil, "", false},
		{"parsed_body", "POST", "/signup", map[string]string{"content-type": "application/json"}, `{"firstname":"Charlie","lastname":"Opa"}`, true},
		{"body without JSON content-type is not parsed", "POST", "/signup", map[string]string{"content-type": "text/plain"}, `{"firstname":"Charlie","lastname":"Opa"}`, false},
		{"peer addresses, version, protocol, context extensions", "GET", "/local", nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := do(t, env, tt.method, tt.target, tt.headers, tt.body)
			if allowed := !resp.AuthzDenied; allowed != tt.allowed {
				t.Fatalf("allowed = %v (%d %s), want %v", allowed, resp.Status, resp.Body, tt.allowed)
			}
		})
	}
	t.Run("undecodable JSON body is a 400, as there", func(t *testing.T) {
		resp := do(t, env, "POST", "/signup", map[string]string{"content-type": "application/json"}, `{"firstname":`)
		if resp.Status != 400 {
			t.Fatalf("status %d %s, want 400", resp.Status, resp.Body)
		}
	})
}

func TestOPAEnvoyJWTPayloadFromEnvoyMetadata(t *testing.T) {
	payload := func(email string) map[string]*structpb.Struct {
		s, _ := structpb.NewStruct(map[string]any{"verified_jwt": map[string]any{"email": email, "exp": 1569026124}})
		return map[string]*structpb.Struct{"envoy.filters.http.jwt_authn": s}
	}
	env := envoyWith(t, "testdata/opaenvoy/jwtmeta", "envoy/authz/allow", envoytest.Options{
		MetadataContextNamespaces: []string{"envoy.filters.http.jwt_authn"},
		FilterMetadata: func(r *http.Request) map[string]*structpb.Struct {
			if e := r.Header.Get("x-test-email"); e != "" {
				return payload(e)
			}
			return nil
		},
	})
	if resp := do(t, env, "GET", "/people", map[string]string{"x-test-email": "alice@example.com"}, ""); resp.AuthzDenied {
		t.Errorf("verified alice@example.com denied: %d", resp.Status)
	}
	if resp := do(t, env, "GET", "/people", map[string]string{"x-test-email": "mallory@evil.test"}, ""); !resp.AuthzDenied {
		t.Error("another domain allowed")
	}
	if resp := do(t, env, "GET", "/people", nil, ""); !resp.AuthzDenied {
		t.Error("no jwt_authn metadata allowed")
	}
}

func TestOPAEnvoyPolicyKeepsGDPROnTop(t *testing.T) {
	env := envoyWith(t, "testdata/opaenvoy/permissive", "envoy/authz/result", envoytest.Options{})
	field := func(t *testing.T, body []byte, name string) any {
		t.Helper()
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("body %s: %v", body, err)
		}
		return doc[name]
	}
	t.Run("the registers still redact what the role may not see", func(t *testing.T) {
		resp := do(t, env, "GET", "/api/contacts/c-1", map[string]string{"x-gdpr-roles": "agent"}, "")
		if resp.Status != 200 || field(t, resp.Body, "first_name") != "Alice" || field(t, resp.Body, "health_notes") != nil {
			t.Fatalf("got %d %s: want Alice without health notes", resp.Status, resp.Body)
		}
	})
	t.Run("a GDPR denial still applies", func(t *testing.T) {
		resp := do(t, env, "GET", "/api/contacts/c-5", map[string]string{"x-gdpr-roles": "agent"}, "")
		if resp.Status != 404 {
			t.Fatalf("obliviated Eve: %d %s, want 404", resp.Status, resp.Body)
		}
	})
	t.Run("the policy's denial comes first", func(t *testing.T) {
		resp := do(t, env, "GET", "/api/contacts/c-5", nil, "")
		if resp.Status != 403 {
			t.Fatalf("no roles: %d %s, want the policy's 403 before the subject is looked at", resp.Status, resp.Body)
		}
	})
	t.Run("only an explicit visible_mask shows more", func(t *testing.T) {
		resp := do(t, env, "GET", "/api/contacts/c-1", map[string]string{"x-gdpr-roles": "agent", "x-reveal": "all"}, "")
		if resp.Status != 200 || field(t, resp.Body, "health_notes") == nil {
			t.Fatalf("got %d %s: want health notes shown by the explicit mask", resp.Status, resp.Body)
		}
	})
}
