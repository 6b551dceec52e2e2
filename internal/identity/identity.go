// Package identity decides who is calling gdprgate and with which roles.
//
// Two sources are supported. A trusted proxy (for example Envoy's jwt_authn
// filter) can put comma-separated role names into a request header, or
// gdprgate verifies a bearer JWT itself against an HMAC secret, PEM public
// keys or a JWKS file. The result is a [Caller] whose role list is
// normalised (trimmed, deduplicated, sorted) so that it can key memoised
// decisions. Failures are the sentinel errors [ErrNoIdentity] and
// [ErrInvalidToken], which the transport maps to 401.
package identity

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Sentinel errors; match them with errors.Is. Both mean "401 Unauthorized".
var (
	// ErrNoIdentity means the request carries no usable credentials at all.
	ErrNoIdentity = errors.New("identity: no identity in request")
	// ErrInvalidToken means a token was presented but did not verify. The
	// wrapped detail never contains the token text; the jwt library's
	// sentinels (jwt.ErrTokenExpired, ...) stay reachable with errors.Is.
	ErrInvalidToken = errors.New("identity: invalid token")
)

// Default header and claim names.
const (
	DefaultRolesHeader  = "x-gdpr-roles"
	DefaultCallerHeader = "x-gdpr-caller"
	DefaultJWTHeader    = "authorization"
	DefaultRolesClaim   = "roles"
	DefaultSubjectClaim = "sub"
	DefaultLeeway       = 30 * time.Second
)

// Method values reported in [Caller.Method].
const (
	MethodHeader = "header"
	MethodJWT    = "jwt"
)

// Options configures a [Verifier].
type Options struct {
	// RolesHeader carries comma-separated role names set by a trusted proxy.
	// Default "x-gdpr-roles".
	RolesHeader string
	// TrustRolesHeader makes the roles header authoritative. Without JWT
	// the header is always trusted (it is the only identity source), so the
	// flag only matters together with JWT: then a valid token is still
	// required, and a non-empty roles header replaces the token's roles
	// (the proxy in front has already mapped them).
	TrustRolesHeader bool
	// CallerHeader carries an optional caller id for audit in header mode.
	// Default "x-gdpr-caller".
	CallerHeader string
	// JWT enables bearer-token verification when non-nil.
	JWT *JWTOptions
	// EnvoyJWT reads the caller from jwt_authn's verified payload in
	// Envoy's dynamic metadata when non-nil (see IdentifyEnvoy).
	EnvoyJWT *EnvoyJWTOptions
}

// JWTOptions configures bearer-token verification. At least one key source
// (HS256Secret, PublicKeyFiles or JWKSFile) is required.
type JWTOptions struct {
	// Header holds the token, as "Bearer <jwt>" (for a header other than
	// authorization a bare token is accepted too). Default "authorization".
	Header string
	// HS256Secret enables HS256; it must be at least 32 bytes (RFC 7518 §3.2).
	HS256Secret []byte
	// PublicKeyFiles are PEM files with RSA or EC public keys (PKIX "PUBLIC
	// KEY", PKCS#1 "RSA PUBLIC KEY" or a "CERTIFICATE"). They have no kid, so
	// each is tried for a token whose alg matches its type.
	PublicKeyFiles []string
	// JWKSFile is a JWKS JSON file with RSA and EC keys, selected by kid.
	JWKSFile string
	// JWKSURLs are IdPs' JWKS documents (https, or http on loopback),
	// fetched and cached by jwx: refetched between JWKSMinRefresh and
	// JWKSMaxRefresh (the server's Cache-Control within those bounds), and,
	// when a token names a kid no cached key has, once more at most every
	// JWKSUnknownKidRefresh (key rotation).
	JWKSURLs                                              []string
	JWKSMinRefresh, JWKSMaxRefresh, JWKSUnknownKidRefresh time.Duration
	// Audience, when set, must appear in the token's aud claim.
	Audience string
	// Issuer, when set, must equal the token's iss claim.
	Issuer string
	// RolesClaim names the claim with the roles: a JSON array of strings or
	// a space/comma separated string. A dotted name such as
	// "realm_access.roles" walks nested objects when no top-level claim has
	// that exact name. Default "roles".
	RolesClaim string
	// SubjectClaim names the claim used as [Caller.ID]. Default "sub".
	SubjectClaim string
	// ProjectClaim names a string claim used as [Caller.Project]; empty:
	// tokens carry no project.
	ProjectClaim string
	// Leeway is the clock skew tolerated on exp and nbf. Default 30s.
	Leeway time.Duration
}

// Caller is the identified caller of one request.
type Caller struct {
	// ID identifies the caller for audit; it may be empty in header mode.
	ID string
	// Roles are sorted, deduplicated, trimmed, with empty names dropped.
	Roles []string
	// Method is MethodHeader or MethodJWT.
	Method string
	// Project is the caller's project from a verified token ("" when
	// none); a project header counts only when HeadersTrusted.
	Project string
}

// RoleKey returns the roles joined by ",", a stable key for memoising
// decisions that depend only on the role set (Roles is already sorted).
func (c Caller) RoleKey() string {
	return strings.Join(c.Roles, ",")
}

// Verifier identifies callers. It is safe for concurrent use.
type Verifier struct {
	rolesHeader  string
	callerHeader string
	trustHeader  bool
	jwt          *jwtVerifier // nil: header mode
	envoy        *envoyJWT    // nil: no Envoy metadata source
}

// New validates opts and loads all keys once, so that a broken key file is
// reported at start and never on a request.
func New(opts Options) (*Verifier, error) {
	v := &Verifier{
		rolesHeader:  headerName(opts.RolesHeader, DefaultRolesHeader),
		callerHeader: headerName(opts.CallerHeader, DefaultCallerHeader),
		// Without JWT the header is the only identity source, so it is
		// trusted whatever the flag says (the flag's zero value is false).
		trustHeader: opts.TrustRolesHeader || opts.JWT == nil && opts.EnvoyJWT == nil,
	}
	if opts.EnvoyJWT != nil {
		ej, err := newEnvoyJWT(*opts.EnvoyJWT)
		if err != nil {
			return nil, fmt.Errorf("identity: %w", err)
		}
		v.envoy = ej
	}
	if opts.JWT != nil {
		jv, err := newJWTVerifier(*opts.JWT)
		if err != nil {
			return nil, fmt.Errorf("identity: jwt: %w", err)
		}
		v.jwt = jv
	}
	return v, nil
}

// headerName lower-cases a configured header name because get is called
// with lower-case names (Envoy and HTTP/2 header maps are lower-case).
func headerName(name, def string) string {
	name = strings.TrimSpace(name)
	if name == "" {
		return def
	}
	return strings.ToLower(name)
}

// HeadersTrusted reports whether identity headers (roles, and the caller's
// project with them) are believed: always without a token source (JWT or
// Envoy's jwt_authn metadata), with one only when TrustRolesHeader is set.
func (v *Verifier) HeadersTrusted() bool { return v.trustHeader }

// Identify returns the caller of one request. get returns a request header
// by lower-case name ("" when absent); now is the time tokens are checked
// against. Errors wrap ErrNoIdentity or ErrInvalidToken.
func (v *Verifier) Identify(get func(name string) string, now time.Time) (Caller, error) {
	if v.jwt == nil {
		return v.identifyHeader(get)
	}
	c, err := v.jwt.identify(get, now)
	if err != nil {
		return Caller{}, err
	}
	if v.trustHeader {
		if roles := ParseRoles(get(v.rolesHeader)); len(roles) > 0 {
			c.Roles = roles
		}
	}
	return c, nil
}

func (v *Verifier) identifyHeader(get func(name string) string) (Caller, error) {
	raw := get(v.rolesHeader)
	if raw == "" {
		return Caller{}, ErrNoIdentity
	}
	roles := ParseRoles(raw)
	if len(roles) == 0 {
		return Caller{}, fmt.Errorf("%w: header %s names no role", ErrNoIdentity, v.rolesHeader)
	}
	return Caller{
		ID:     strings.TrimSpace(get(v.callerHeader)),
		Roles:  roles,
		Method: MethodHeader,
	}, nil
}

// ParseRoles splits a comma-separated role list into trimmed, sorted,
// deduplicated names, dropping empty ones. It returns nil when no name is
// left. The names share raw's memory, so the only allocation is the slice.
func ParseRoles(raw string) []string {
	return parseRoleList(raw, func(r rune) bool { return r == ',' })
}

// parseRoleList is ParseRoles with a configurable separator; JWT role
// strings may also be space separated.
func parseRoleList(raw string, sep func(rune) bool) []string {
	n := 1
	for _, r := range raw {
		if sep(r) {
			n++
		}
	}
	var roles []string
	for len(raw) > 0 {
		i := strings.IndexFunc(raw, sep)
		var part string
		if i < 0 {
			part, raw = raw, ""
		} else {
			part = raw[:i]
			// Separators are ASCII, so skipping one byte is correct.
			raw = raw[i+1:]
		}
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		if roles == nil {
			roles = make([]string, 0, n)
		}
		roles = append(roles, part)
	}
	return normaliseRoles(roles)
}

// normaliseRoles sorts and deduplicates in place.
func normaliseRoles(roles []string) []string {
	if len(roles) == 0 {
		return nil
	}
	slices.Sort(roles)
	return slices.Compact(roles)
}
