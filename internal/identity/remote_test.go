package identity

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/protobuf/types/known/structpb"
)

// idp serves a JWKS whose keys the test rotates, counting fetches.
type idp struct {
	mu      sync.Mutex
	keys    []map[string]any
	fetches atomic.Int32
}

func (s *idp) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.fetches.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	w.Header().Set("content-type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"keys": s.keys})
}

func (s *idp) set(keys ...map[string]any) {
	s.mu.Lock()
	s.keys = keys
	s.mu.Unlock()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRemoteJWKSRotationAndRefetchLimit(t *testing.T) {
	testKeys(t)
	srv := &idp{}
	srv.set(rsaJWK("k1", &rsaKey.PublicKey))
	ts := httptest.NewServer(srv)
	defer ts.Close()
	v, err := New(Options{JWT: &JWTOptions{JWKSURLs: []string{ts.URL}, Audience: "gdprgate",
		JWKSMinRefresh: time.Hour, JWKSMaxRefresh: time.Hour, JWKSUnknownKidRefresh: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	waitFor(t, "the first JWKS fetch", func() bool { return v.Ready(context.Background()) == nil })

	if c, err := v.Identify(bearer(sign(t, jwt.SigningMethodRS256, rsaKey, "k1", claims())), testNow); err != nil || c.ID != "alice" {
		t.Fatalf("token of the published key: %+v, %v", c, err)
	}
	// The IdP rotates to k2: a token with the new kid makes gdprgate
	// refetch at once, without waiting for the hour.
	srv.set(rsaJWK("k1", &rsaKey.PublicKey), rsaJWK("k2", &rsaKey2.PublicKey))
	before := srv.fetches.Load()
	if _, err := v.Identify(bearer(sign(t, jwt.SigningMethodRS256, rsaKey2, "k2", claims("sub", "bob"))), testNow); err != nil {
		t.Fatalf("token of the rotated-in key: %v", err)
	}
	if got := srv.fetches.Load() - before; got != 1 {
		t.Errorf("rotation cost %d fetches, want 1", got)
	}
	// Made-up kids cannot make gdprgate hammer the IdP: one refetch per
	// interval, and it has just been spent.
	before = srv.fetches.Load()
	for i := range 20 {
		tok := sign(t, jwt.SigningMethodRS256, rsaKey2, "made-up-"+string(rune('a'+i)), claims())
		if _, err := v.Identify(bearer(tok), testNow); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("unknown kid: %v, want ErrInvalidToken", err)
		}
	}
	if got := srv.fetches.Load() - before; got != 0 {
		t.Errorf("unknown kids caused %d fetches within the interval, want 0", got)
	}
	// Algorithm confusion stays refused with remote keys: an HS256 token
	// "signed" with the RSA key's public bytes.
	forged := sign(t, jwt.SigningMethodHS256, []byte("k1"), "k1", claims())
	if _, err := v.Identify(bearer(forged), testNow); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("HS256 token against remote RSA keys: %v", err)
	}
}

func TestRemoteJWKSIsRefreshedOnSchedule(t *testing.T) {
	testKeys(t)
	srv := &idp{}
	srv.set(ecJWK("e1", &ecKey.PublicKey))
	ts := httptest.NewServer(srv)
	defer ts.Close()
	// jwx's cache refetches no more often than its minimum interval; one
	// second keeps the test short.
	v, err := New(Options{JWT: &JWTOptions{JWKSURLs: []string{ts.URL}, Audience: "gdprgate",
		JWKSMinRefresh: time.Second, JWKSMaxRefresh: time.Second, JWKSUnknownKidRefresh: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	waitFor(t, "a scheduled refetch", func() bool { return srv.fetches.Load() >= 2 })
}

func TestJWKSURLMustBeHTTPSOffLoopback(t *testing.T) {
	for _, u := range []string{"http://idp.example/jwks", "ftp://x/y", "jwks.json"} {
		if _, err := New(Options{JWT: &JWTOptions{JWKSURLs: []string{u}}}); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
	for _, u := range []string{"https://idp.example/jwks", "http://127.0.0.1:1/jwks", "http://localhost:1/x"} {
		if err := CheckJWKSURL(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

func TestIdentifyFromEnvoyJWTAuthnMetadata(t *testing.T) {
	payload, err := structpb.NewStruct(map[string]any{"sub": "carol", "realm_access": map[string]any{"roles": []any{"agent", "auditor"}}})
	if err != nil {
		t.Fatal(err)
	}
	md := func(ns string) *structpb.Struct {
		if ns != DefaultJWTAuthnNamespace {
			return nil
		}
		return &structpb.Struct{Fields: map[string]*structpb.Value{"verified_jwt": structpb.NewStructValue(payload)}}
	}
	v, err := New(Options{EnvoyJWT: &EnvoyJWTOptions{PayloadKey: "verified_jwt", RolesClaim: "realm_access.roles"}})
	if err != nil {
		t.Fatal(err)
	}
	forged := headers(map[string]string{"x-gdpr-roles": "admin"})
	c, err := v.IdentifyEnvoy(forged, md, testNow)
	if err != nil || c.ID != "carol" || !slices.Equal(c.Roles, []string{"agent", "auditor"}) || c.Method != MethodEnvoyJWT {
		t.Fatalf("IdentifyEnvoy = %+v, %v", c, err)
	}
	// Without Envoy's payload the roles header is not an identity.
	if _, err := v.IdentifyEnvoy(forged, nil, testNow); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("header only: %v, want ErrNoIdentity", err)
	}
	if _, err := New(Options{EnvoyJWT: &EnvoyJWTOptions{}}); err == nil {
		t.Error("an Envoy source without payload_key accepted")
	}
}
