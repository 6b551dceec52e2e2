package authz_test

import (
	"context"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"

	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
)

// TestCheckWithJWTIdentity: with identity.jwt configured, roles come from a
// verified bearer token and a forged roles header counts for nothing.
func TestCheckWithJWTIdentity(t *testing.T) {
	const secret = "a-test-secret-of-at-least-32-bytes!!"
	t.Setenv("TEST_GDPRGATE_JWT_SECRET", secret)
	sc := apptest.New(t, apptest.Options{Configure: func(c *config.Config) {
		c.Identity.JWT = &config.JWTConfig{HS256SecretEnv: "TEST_GDPRGATE_JWT_SECRET", Audience: "crm"}
	}})
	client := authv3.NewAuthorizationClient(sc.GRPC(t))
	sign := func(claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	exp := time.Now().Add(time.Hour).Unix()
	cases := []struct {
		name    string
		headers map[string]string
		code    codes.Code
	}{
		{"auditor token may export", map[string]string{"authorization": "Bearer " + sign(jwt.MapClaims{"sub": "u1", "aud": "crm", "exp": exp, "roles": []string{"auditor"}})}, codes.OK},
		{"agent token may not export", map[string]string{"authorization": "Bearer " + sign(jwt.MapClaims{"sub": "u2", "aud": "crm", "exp": exp, "roles": []string{"agent"}})}, codes.PermissionDenied},
		{"forged roles header with an agent token", map[string]string{"x-gdpr-roles": "auditor", "authorization": "Bearer " + sign(jwt.MapClaims{"sub": "u2", "aud": "crm", "exp": exp, "roles": []string{"agent"}})}, codes.PermissionDenied},
		{"roles header alone", map[string]string{"x-gdpr-roles": "auditor"}, codes.Unauthenticated},
		{"expired token", map[string]string{"authorization": "Bearer " + sign(jwt.MapClaims{"sub": "u1", "aud": "crm", "exp": time.Now().Add(-time.Hour).Unix(), "roles": []string{"auditor"}})}, codes.Unauthenticated},
		{"wrong audience", map[string]string{"authorization": "Bearer " + sign(jwt.MapClaims{"sub": "u1", "aud": "billing", "exp": exp, "roles": []string{"auditor"}})}, codes.Unauthenticated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.Check(context.Background(), checkRequest(t, "GET", "/api/contacts/c-1/export", tc.headers, ""))
			if err != nil {
				t.Fatal(err)
			}
			if got := codes.Code(resp.GetStatus().GetCode()); got != tc.code {
				t.Errorf("code %v, want %v (%s)", got, tc.code, resp.GetStatus().GetMessage())
			}
		})
	}
}
