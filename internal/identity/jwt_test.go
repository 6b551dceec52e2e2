package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	testSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")
	testNow    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

// Generating RSA keys is slow; share them between tests.
var (
	keysOnce          sync.Once
	rsaKey, rsaKey2   *rsa.PrivateKey
	ecKey, ecKeyOther *ecdsa.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if rsaKey2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if ecKeyOther, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	})
}

func sign(t testing.TB, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// claims returns valid claims at testNow, overridden by kv pairs (a nil
// value deletes the claim).
func claims(kv ...any) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub":   "alice",
		"exp":   testNow.Add(time.Hour).Unix(),
		"aud":   "gdprgate",
		"iss":   "https://idp.example",
		"roles": []string{"supervisor", "agent"},
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

func writePEM(t testing.TB, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func writePublicPEM(t testing.TB, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, "PUBLIC KEY", der)
}

func bearer(tok string) func(string) string {
	return headers(map[string]string{"authorization": "Bearer " + tok})
}

type identifyCase struct {
	name      string
	token     string
	hdr       map[string]string // used instead of token when set
	now       time.Time
	wantErr   error
	wantRoles []string
	wantID    string
}

func runIdentify(t *testing.T, v *Verifier, tests []identifyCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			get := bearer(tt.token)
			if tt.hdr != nil {
				get = headers(tt.hdr)
			}
			now := tt.now
			if now.IsZero() {
				now = testNow
			}
			got, err := v.Identify(get, now)
			if errorLeaks(err, tt.token) {
				t.Errorf("error message contains the token: %v", err)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got.Method != MethodJWT {
				t.Errorf("Method = %q, want jwt", got.Method)
			}
			if !slices.Equal(got.Roles, tt.wantRoles) {
				t.Errorf("Roles = %q, want %q", got.Roles, tt.wantRoles)
			}
			if got.ID != tt.wantID {
				t.Errorf("ID = %q, want %q", got.ID, tt.wantID)
			}
		})
	}
}

func TestIdentifyHS256(t *testing.T) {
	v, err := New(Options{JWT: &JWTOptions{HS256Secret: testSecret, Audience: "gdprgate", Issuer: "https://idp.example"}})
	if err != nil {
		t.Fatal(err)
	}
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, testSecret, "", c) }
	noneTok, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	valid := hs(claims())
	// Flip a character in the signature.
	tampered := valid[:len(valid)-3] + strings.Map(func(r rune) rune {
		if r == 'A' {
			return 'B'
		}
		return 'A'
	}, valid[len(valid)-3:len(valid)-2]) + valid[len(valid)-2:]
	both := []string{"agent", "supervisor"}

	runIdentify(t, v, []identifyCase{
		{name: "valid", token: valid, wantRoles: both, wantID: "alice"},
		{name: "lower-case bearer scheme", hdr: map[string]string{"authorization": "bearer " + valid}, wantRoles: both, wantID: "alice"},
		{name: "roles as array deduplicated", token: hs(claims("roles", []string{"b", " a", "b", ""})), wantRoles: []string{"a", "b"}, wantID: "alice"},
		{name: "roles as space separated string", token: hs(claims("roles", "supervisor agent")), wantRoles: both, wantID: "alice"},
		{name: "roles as comma separated string", token: hs(claims("roles", "supervisor, agent,")), wantRoles: both, wantID: "alice"},
		{name: "no roles claim means no roles", token: hs(claims("roles", nil)), wantID: "alice"},
		{name: "roles element not a string", token: hs(claims("roles", []any{"agent", 7})), wantErr: ErrInvalidToken},
		{name: "roles claim an object", token: hs(claims("roles", map[string]any{"a": 1})), wantErr: ErrInvalidToken},
		{name: "sub not a string", token: hs(claims("sub", 42)), wantErr: ErrInvalidToken},
		{name: "expired", token: hs(claims("exp", testNow.Add(-time.Minute).Unix())), wantErr: ErrInvalidToken},
		{name: "expired within leeway", token: hs(claims("exp", testNow.Add(-10*time.Second).Unix())), wantRoles: both, wantID: "alice"},
		{name: "exp missing", token: hs(claims("exp", nil)), wantErr: ErrInvalidToken},
		{name: "not yet valid", token: hs(claims("nbf", testNow.Add(time.Minute).Unix())), wantErr: ErrInvalidToken},
		{name: "nbf within leeway", token: hs(claims("nbf", testNow.Add(10*time.Second).Unix())), wantRoles: both, wantID: "alice"},
		{name: "wrong audience", token: hs(claims("aud", "other")), wantErr: ErrInvalidToken},
		{name: "audience in list", token: hs(claims("aud", []string{"other", "gdprgate"})), wantRoles: both, wantID: "alice"},
		{name: "audience missing", token: hs(claims("aud", nil)), wantErr: ErrInvalidToken},
		{name: "wrong issuer", token: hs(claims("iss", "https://evil.example")), wantErr: ErrInvalidToken},
		{name: "issuer missing", token: hs(claims("iss", nil)), wantErr: ErrInvalidToken},
		{name: "bad signature", token: tampered, wantErr: ErrInvalidToken},
		{name: "wrong secret", token: sign(t, jwt.SigningMethodHS256, []byte("another-secret-that-is-32-bytes-long!"), "", claims()), wantErr: ErrInvalidToken},
		{name: "alg none", token: noneTok, wantErr: ErrInvalidToken},
		{name: "HS512 not configured", token: sign(t, jwt.SigningMethodHS512, testSecret, "", claims()), wantErr: ErrInvalidToken},
		{name: "garbage", token: "not.a.jwt-at-all", wantErr: ErrInvalidToken},
		{name: "no authorization header", hdr: map[string]string{}, wantErr: ErrNoIdentity},
		{name: "basic scheme", hdr: map[string]string{"authorization": "Basic YWxpY2U6c2VjcmV0"}, wantErr: ErrNoIdentity},
		{name: "empty bearer", hdr: map[string]string{"authorization": "Bearer   "}, wantErr: ErrNoIdentity},
		{name: "bare token in authorization", hdr: map[string]string{"authorization": valid}, wantErr: ErrNoIdentity},
	})
}

func TestInvalidTokenErrorsStayClassifiableAndShort(t *testing.T) {
	v, err := New(Options{JWT: &JWTOptions{HS256Secret: testSecret}})
	if err != nil {
		t.Fatal(err)
	}
	expired := sign(t, jwt.SigningMethodHS256, testSecret, "", claims("exp", testNow.Add(-time.Hour).Unix()))
	// A header naming a huge unknown alg; the library echoes alg names.
	hugeAlg := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"`+strings.Repeat("X", 1000)+`","typ":"JWT"}`)) + ".e30.c2ln"
	tests := []struct {
		name  string
		token string
		is    error
	}{
		{"expired", expired, jwt.ErrTokenExpired},
		{"unknown alg", hugeAlg, jwt.ErrTokenUnverifiable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Identify(bearer(tt.token), testNow)
			if !errors.Is(err, ErrInvalidToken) || !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want ErrInvalidToken and %v", err, tt.is)
			}
			if len(err.Error()) > 250 {
				t.Errorf("error message is %d bytes long", len(err.Error()))
			}
		})
	}
}

func TestAlgorithmConfusionIsRefused(t *testing.T) {
	testKeys(t)
	pemPath := writePublicPEM(t, &rsaKey.PublicKey)
	pemBytes, err := os.ReadFile(pemPath)
	if err != nil {
		t.Fatal(err)
	}
	// The classic attack: HMAC with the public key's PEM text as secret.
	forged := sign(t, jwt.SigningMethodHS256, pemBytes, "", claims())
	forgedDER := sign(t, jwt.SigningMethodHS256, x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey), "", claims())
	esWithRSA := sign(t, jwt.SigningMethodES256, ecKey, "", claims())

	tests := []struct {
		name string
		opts JWTOptions
	}{
		{"public key only", JWTOptions{PublicKeyFiles: []string{pemPath}}},
		{"public key and HS256 secret", JWTOptions{PublicKeyFiles: []string{pemPath}, HS256Secret: testSecret}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New(Options{JWT: &tt.opts})
			if err != nil {
				t.Fatal(err)
			}
			for name, tok := range map[string]string{"HS256 with PEM": forged, "HS256 with DER": forgedDER, "ES256 against RSA key": esWithRSA} {
				if _, err := v.Identify(bearer(tok), testNow); !errors.Is(err, ErrInvalidToken) {
					t.Errorf("%s: err = %v, want ErrInvalidToken", name, err)
				}
			}
		})
	}
}

func TestIdentifyWithPEMKeys(t *testing.T) {
	testKeys(t)
	rsaPath := writePublicPEM(t, &rsaKey.PublicKey)
	ecPath := writePublicPEM(t, &ecKey.PublicKey)
	pkcs1Path := writePEM(t, "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey2.PublicKey))
	v, err := New(Options{JWT: &JWTOptions{PublicKeyFiles: []string{rsaPath, ecPath, pkcs1Path}}})
	if err != nil {
		t.Fatal(err)
	}
	both := []string{"agent", "supervisor"}
	// Re-sign with ES384 header but a P-256 key: the alg must fit the curve.
	es384 := sign(t, jwt.SigningMethodES384, mustP384(t), "", claims())
	runIdentify(t, v, []identifyCase{
		{name: "RS256", token: sign(t, jwt.SigningMethodRS256, rsaKey, "", claims()), wantRoles: both, wantID: "alice"},
		{name: "RS512", token: sign(t, jwt.SigningMethodRS512, rsaKey, "", claims()), wantRoles: both, wantID: "alice"},
		{name: "RS256 by second key (PKCS#1 file)", token: sign(t, jwt.SigningMethodRS256, rsaKey2, "", claims()), wantRoles: both, wantID: "alice"},
		{name: "ES256", token: sign(t, jwt.SigningMethodES256, ecKey, "", claims()), wantRoles: both, wantID: "alice"},
		{name: "ES256 by unknown key", token: sign(t, jwt.SigningMethodES256, ecKeyOther, "", claims()), wantErr: ErrInvalidToken},
		{name: "ES384 without P-384 key", token: es384, wantErr: ErrInvalidToken},
		{name: "RS256 expired", token: sign(t, jwt.SigningMethodRS256, rsaKey, "", claims("exp", testNow.Add(-time.Hour).Unix())), wantErr: ErrInvalidToken},
		{name: "HS256 not configured", token: sign(t, jwt.SigningMethodHS256, testSecret, "", claims()), wantErr: ErrInvalidToken},
	})
}

func mustP384(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(kid string, k *rsa.PublicKey) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(kid string, k *ecdsa.PublicKey) map[string]any {
	pt, err := k.Bytes()
	if err != nil {
		panic(err)
	}
	size := (len(pt) - 1) / 2
	return map[string]any{"kty": "EC", "kid": kid, "crv": k.Curve.Params().Name, "x": b64(pt[1 : 1+size]), "y": b64(pt[1+size:])}
}

func writeJWKS(t testing.TB, keys ...map[string]any) string {
	t.Helper()
	data, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestIdentifyWithJWKSSelectsKeyByKid(t *testing.T) {
	testKeys(t)
	path := writeJWKS(t,
		rsaJWK("rsa-1", &rsaKey.PublicKey),
		ecJWK("ec-1", &ecKey.PublicKey),
		// Keys gdprgate cannot use are skipped, not fatal.
		map[string]any{"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
		map[string]any{"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
	)
	v, err := New(Options{JWT: &JWTOptions{JWKSFile: path, RolesClaim: "realm_access.roles", SubjectClaim: "preferred_username"}})
	if err != nil {
		t.Fatal(err)
	}
	kc := func(kv ...any) jwt.MapClaims {
		return claims(append([]any{"roles", nil, "preferred_username", "bob", "realm_access", map[string]any{"roles": []string{"agent"}}}, kv...)...)
	}
	runIdentify(t, v, []identifyCase{
		{name: "RSA kid", token: sign(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", kc()), wantRoles: []string{"agent"}, wantID: "bob"},
		{name: "EC kid", token: sign(t, jwt.SigningMethodES256, ecKey, "ec-1", kc()), wantRoles: []string{"agent"}, wantID: "bob"},
		{name: "no kid tries matching keys", token: sign(t, jwt.SigningMethodES256, ecKey, "", kc()), wantRoles: []string{"agent"}, wantID: "bob"},
		{name: "kid of the other key", token: sign(t, jwt.SigningMethodRS256, rsaKey, "ec-1", kc()), wantErr: ErrInvalidToken},
		{name: "right kid wrong signer", token: sign(t, jwt.SigningMethodRS256, rsaKey2, "rsa-1", kc()), wantErr: ErrInvalidToken},
		{name: "unknown kid", token: sign(t, jwt.SigningMethodRS256, rsaKey, "rsa-9", kc()), wantErr: ErrInvalidToken},
		{name: "oct key is not an HMAC secret", token: sign(t, jwt.SigningMethodHS256, []byte("secret"), "sym", kc()), wantErr: ErrInvalidToken},
	})
}

func TestRolesHeaderWithJWT(t *testing.T) {
	tok := sign(t, jwt.SigningMethodHS256, testSecret, "", claims())
	tests := []struct {
		name    string
		trust   bool
		hdr     map[string]string
		want    []string
		wantErr error
	}{
		{"header ignored by default", false, map[string]string{"authorization": "Bearer " + tok, "x-gdpr-roles": "admin"}, []string{"agent", "supervisor"}, nil},
		{"header alone is not enough", false, map[string]string{"x-gdpr-roles": "admin"}, nil, ErrNoIdentity},
		{"trusted header replaces claim roles", true, map[string]string{"authorization": "Bearer " + tok, "x-gdpr-roles": "admin"}, []string{"admin"}, nil},
		{"trusted but empty header keeps claim roles", true, map[string]string{"authorization": "Bearer " + tok, "x-gdpr-roles": " "}, []string{"agent", "supervisor"}, nil},
		{"trusted header still needs a token", true, map[string]string{"x-gdpr-roles": "admin"}, nil, ErrNoIdentity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New(Options{TrustRolesHeader: tt.trust, JWT: &JWTOptions{HS256Secret: testSecret}})
			if err != nil {
				t.Fatal(err)
			}
			got, err := v.Identify(headers(tt.hdr), testNow)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Roles, tt.want) {
				t.Errorf("Roles = %q, want %q", got.Roles, tt.want)
			}
		})
	}
}

func TestCachedTokenStillHonoursExpAndNbf(t *testing.T) {
	v, err := New(Options{JWT: &JWTOptions{HS256Secret: testSecret, Leeway: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jwt.SigningMethodHS256, testSecret, "", claims(
		"nbf", testNow.Add(-time.Minute).Unix(),
		"exp", testNow.Add(30*time.Second).Unix()))
	tests := []struct {
		name    string
		at      time.Time
		wantErr bool
	}{
		{"first use verifies and caches", testNow, false},
		{"reuse hits the cache", testNow.Add(10 * time.Second), false},
		{"after exp the cached entry is not used", testNow.Add(time.Minute), true},
		{"before nbf the cached entry is not used", testNow.Add(-2 * time.Minute), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Identify(bearer(tok), tt.at)
			if tt.wantErr != errors.Is(err, ErrInvalidToken) {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil {
				// Mutating the result must not poison the cache.
				c.Roles[0] = "admin"
			}
		})
	}
	c, err := v.Identify(bearer(tok), testNow)
	if err != nil || !slices.Equal(c.Roles, []string{"agent", "supervisor"}) {
		t.Errorf("cached caller = %+v, %v; want untouched roles", c, err)
	}
}

func TestTokenCacheIsBounded(t *testing.T) {
	c := newTokenCache(16)
	for i := range 100 {
		var key [32]byte
		key[0], key[1] = byte(i), byte(i>>8)
		c.put(key, Caller{ID: "x"}, time.Time{}, testNow.Add(time.Minute), testNow)
		if len(c.entries) > 16 {
			t.Fatalf("cache grew to %d entries, bound is 16", len(c.entries))
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	garbage := write("garbage.pem", "hello")
	privDER, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	private := writePEM(t, "PRIVATE KEY", privDER)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallPath := writePublicPEM(t, &small.PublicKey)
	badJSON := write("bad.json", "{")
	emptyJWKS := write("empty.json", `{"keys":[]}`)
	badPoint := writeJWKS(t, map[string]any{"kty": "EC", "kid": "bad", "crv": "P-256", "x": b64(make([]byte, 32)), "y": b64(make([]byte, 32))})
	wrongAlg := writeJWKS(t, func() map[string]any { j := ecJWK("e", &ecKey.PublicKey); j["alg"] = "RS256"; return j }())

	tests := []struct {
		name    string
		opts    JWTOptions
		wantMsg []string
	}{
		{"no key", JWTOptions{Audience: "x"}, []string{"no key configured"}},
		{"short secret", JWTOptions{HS256Secret: []byte("short")}, []string{"at least 32"}},
		{"missing file", JWTOptions{PublicKeyFiles: []string{filepath.Join(dir, "nope.pem")}}, []string{"nope.pem"}},
		{"not PEM", JWTOptions{PublicKeyFiles: []string{garbage}}, []string{garbage, "no PEM block"}},
		{"private key", JWTOptions{PublicKeyFiles: []string{private}}, []string{private, "private key"}},
		{"weak RSA", JWTOptions{PublicKeyFiles: []string{smallPath}}, []string{smallPath, "1024 bits"}},
		{"JWKS not JSON", JWTOptions{JWKSFile: badJSON}, []string{badJSON, "not a JWKS"}},
		{"JWKS without keys", JWTOptions{JWKSFile: emptyJWKS}, []string{emptyJWKS, "no RSA or EC"}},
		{"JWKS point off curve", JWTOptions{JWKSFile: badPoint}, []string{badPoint, `kid "bad"`, "invalid EC point"}},
		{"JWKS alg of another family", JWTOptions{JWKSFile: wrongAlg}, []string{wrongAlg, "RS256"}},
		{"negative leeway", JWTOptions{HS256Secret: testSecret, Leeway: -time.Second}, []string{"negative leeway"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Options{JWT: &tt.opts})
			if err == nil {
				t.Fatal("New accepted a bad config")
			}
			for _, want := range tt.wantMsg {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestConcurrentIdentifySharesTheCacheSafely(t *testing.T) {
	v, err := New(Options{JWT: &JWTOptions{HS256Secret: testSecret}})
	if err != nil {
		t.Fatal(err)
	}
	toks := []string{
		sign(t, jwt.SigningMethodHS256, testSecret, "", claims("sub", "a")),
		sign(t, jwt.SigningMethodHS256, testSecret, "", claims("sub", "b")),
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				tok := toks[(g+i)%2]
				c, err := v.Identify(bearer(tok), testNow)
				if err != nil {
					t.Error(err)
					return
				}
				c.Roles[0] = "mutated" // must not leak into other goroutines
			}
		})
	}
	wg.Wait()
	c, err := v.Identify(bearer(toks[0]), testNow)
	if err != nil || c.ID != "a" || !slices.Equal(c.Roles, []string{"agent", "supervisor"}) {
		t.Errorf("after concurrent use got %+v, %v", c, err)
	}
}

// TestProjectClaim: the caller's project comes from a verified claim; the
// project header is believed only where the roles header is.
func TestProjectClaim(t *testing.T) {
	v, err := New(Options{JWT: &JWTOptions{HS256Secret: testSecret, ProjectClaim: "project"}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Identify(bearer(sign(t, jwt.SigningMethodHS256, testSecret, "", claims("project", "p-7"))), testNow)
	if err != nil || got.Project != "p-7" {
		t.Errorf("project %q, %v; want p-7", got.Project, err)
	}
	if _, err := v.Identify(bearer(sign(t, jwt.SigningMethodHS256, testSecret, "", claims("project", 7))), testNow); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("non-string project claim: %v", err)
	}
	if v.HeadersTrusted() {
		t.Error("JWT without trust_roles_header trusts identity headers")
	}
	if h, _ := New(Options{}); !h.HeadersTrusted() {
		t.Error("header mode does not trust its headers")
	}
	if h, _ := New(Options{TrustRolesHeader: true, JWT: &JWTOptions{HS256Secret: testSecret}}); !h.HeadersTrusted() {
		t.Error("trust_roles_header does not trust the headers")
	}
}
