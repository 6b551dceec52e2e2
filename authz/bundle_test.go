package authz_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/bundle"
	"google.golang.org/grpc/codes"

	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
)

// bundleServer serves one bundle with an ETag, as a bundle server does.
type bundleServer struct {
	mu       sync.Mutex
	body     []byte
	requests int
}

func (s *bundleServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	sum := sha256.Sum256(s.body)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", "application/gzip")
	_, _ = w.Write(s.body)
}

func (s *bundleServer) serve(b []byte) {
	s.mu.Lock()
	s.body = b
	s.mu.Unlock()
}

const bundlePolicy = `package envoy.authz

default allow := false

allow if input.attributes.request.http.headers["x-bundle"] == data.release.token
`

const bundleTests = `package envoy.authz_test

import data.envoy.authz

test_token if authz.allow with input as {"attributes": {"request": {"http": {"headers": {"x-bundle": "%s"}}}}}
`

// makeBundle writes a bundle whose token is token and whose test expects
// testToken, signed with key (nil: unsigned). tamper changes its data after
// signing.
func makeBundle(t *testing.T, key *rsa.PrivateKey, revision, token, testToken string, tamper bool) []byte {
	t.Helper()
	roots := []string{"envoy", "release"}
	b := bundle.Bundle{
		Manifest: bundle.Manifest{Revision: revision, Roots: &roots},
		Data:     map[string]any{"release": map[string]any{"token": token}},
		Modules: []bundle.ModuleFile{
			{URL: "/envoy/authz.rego", Path: "/envoy/authz.rego", Raw: []byte(bundlePolicy)},
			{URL: "/envoy/authz_test.rego", Path: "/envoy/authz_test.rego", Raw: []byte(strings.ReplaceAll(bundleTests, "%s", testToken))},
		},
	}
	if key != nil {
		pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
		if err := b.GenerateSignature(bundle.NewSigningConfig(string(pemKey), "RS256", ""), "release-signer", false); err != nil {
			t.Fatal(err)
		}
	}
	if tamper {
		b.Data = map[string]any{"release": map[string]any{"token": "mallory"}}
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).Write(b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestSignedBundlesRotateAndTamperedOnesAreRefused: OPA's bundle plugin
// polls an httptest bundle server, verifies the signature, and gdprgate
// activates a bundle only if it compiles and its tests pass; a rotated
// bundle takes over, a tampered or failing one is refused while the last
// good revision keeps deciding — visible in /readyz and the metrics.
func TestSignedBundlesRotateAndTamperedOnesAreRefused(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))
	srv := &bundleServer{}
	srv.serve(makeBundle(t, key, "v1", "one", "one", false))
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)

	sc := apptest.New(t, apptest.Options{Configure: func(c *config.Config) {
		c.Policy.Path = "envoy/authz/allow"
		c.OPA = map[string]any{
			"services": map[string]any{"releases": map[string]any{"url": ts.URL}},
			"keys":     map[string]any{"release-signer": map[string]any{"key": pubPEM, "algorithm": "RS256"}},
			"bundles": map[string]any{"authz": map[string]any{
				"service": "releases", "resource": "/bundles/authz.tar.gz",
				"polling": map[string]any{"min_delay_seconds": 1, "max_delay_seconds": 1},
				"signing": map[string]any{"keyid": "release-signer"},
			}},
		}
	}})
	client := authv3.NewAuthorizationClient(sc.GRPC(t))
	admin := httptest.NewServer(sc.App.Admin)
	t.Cleanup(admin.Close)

	allowed := func(token string) bool {
		resp, err := client.Check(context.Background(), checkRequest(t, "GET", "/people", map[string]string{"x-bundle": token}, ""))
		if err != nil {
			t.Fatal(err)
		}
		return codes.Code(resp.GetStatus().GetCode()) == codes.OK
	}
	get := func(path string) (int, string) {
		resp, err := http.Get(admin.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(40 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Until the first bundle is activated nothing is decided on a guess.
	eventually("bundle v1 to be activated", func() bool { return sc.App.Engine.Ready() == nil })
	if !allowed("one") {
		t.Fatal("v1 denies its own token")
	}
	if allowed("two") {
		t.Fatal("v1 allows the token of v2")
	}
	if code, body := get("/readyz"); code != 200 {
		t.Fatalf("/readyz with v1 active: %d %s", code, body)
	}

	srv.serve(makeBundle(t, key, "v2", "two", "two", false))
	eventually("bundle v2 to take over", func() bool { return allowed("two") && !allowed("one") })
	eventually("the metrics to show v2", func() bool {
		_, m := get("/metrics")
		return strings.Contains(m, `gdprgate_bundle_active_revision{bundle="authz",revision="v2"} 1`)
	})

	srv.serve(makeBundle(t, key, "v3", "two", "two", true))
	eventually("the tampered bundle to be refused", func() bool {
		_, body := get("/readyz")
		return strings.Contains(body, `revision \"v2\" serving`) || strings.Contains(body, `revision "v2" serving`)
	})
	if !allowed("two") || allowed("mallory") {
		t.Fatal("the tampered bundle decides")
	}
	if code, body := get("/readyz"); code != 200 {
		t.Errorf("/readyz while v2 serves after a refused update: %d %s", code, body)
	}
	_, m := get("/metrics")
	if !strings.Contains(m, `gdprgate_bundle_activations_total{bundle="authz",result="failure"}`) {
		t.Errorf("no failure counted:\n%s", grepLines(m, "gdprgate_bundle"))
	}

	// Signed, but its own tests fail: refused like a --policy directory.
	srv.serve(makeBundle(t, key, "v4", "four", "not-four", false))
	eventually("the failing bundle to be refused", func() bool {
		_, body := get("/readyz")
		return strings.Contains(body, "policy tests failed")
	})
	if !allowed("two") || allowed("four") {
		t.Fatal("a bundle whose tests fail decides")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
