package identity

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// minHMACSecret is the HS256 key size RFC 7518 §3.2 requires.
const minHMACSecret = 32

type jwtVerifier struct {
	header       string
	secret       []byte
	keys         []publicKey
	validAlgs    []string
	audience     string
	issuer       string
	rolesClaim   string
	subjectClaim string
	projectClaim string
	leeway       time.Duration
	cache        *tokenCache
	// remote holds the keys of JWKS URLs (nil: none configured).
	remote *remoteKeys
}

func newJWTVerifier(o JWTOptions) (*jwtVerifier, error) {
	v := &jwtVerifier{
		header:       headerName(o.Header, DefaultJWTHeader),
		audience:     o.Audience,
		issuer:       o.Issuer,
		rolesClaim:   cmpOr(o.RolesClaim, DefaultRolesClaim),
		subjectClaim: cmpOr(o.SubjectClaim, DefaultSubjectClaim),
		projectClaim: o.ProjectClaim,
		leeway:       o.Leeway,
		cache:        newTokenCache(defaultCacheSize),
	}
	switch {
	case v.leeway < 0:
		return nil, fmt.Errorf("negative leeway %s", v.leeway)
	case v.leeway == 0:
		v.leeway = DefaultLeeway
	}
	if o.HS256Secret != nil {
		if len(o.HS256Secret) < minHMACSecret {
			return nil, fmt.Errorf("HS256 secret is %d bytes, need at least %d", len(o.HS256Secret), minHMACSecret)
		}
		// Copy so that a caller reusing its buffer cannot change the key.
		v.secret = slices.Clone(o.HS256Secret)
		v.validAlgs = append(v.validAlgs, "HS256")
	}
	for _, path := range o.PublicKeyFiles {
		keys, err := loadPEMFile(path)
		if err != nil {
			return nil, err
		}
		v.keys = append(v.keys, keys...)
	}
	if o.JWKSFile != "" {
		keys, err := loadJWKSFile(o.JWKSFile)
		if err != nil {
			return nil, err
		}
		v.keys = append(v.keys, keys...)
	}
	if len(o.JWKSURLs) > 0 {
		r, err := newRemoteKeys(o)
		if err != nil {
			return nil, err
		}
		v.remote = r
		// Which algorithms a remote set will hold is not known yet: allow
		// the asymmetric families; keyFor still binds each key to its own.
		v.validAlgs = append(v.validAlgs, rsaAlgs...)
		v.validAlgs = append(v.validAlgs, "ES256", "ES384", "ES512")
	}
	if v.secret == nil && len(v.keys) == 0 && v.remote == nil {
		return nil, errors.New("no key configured (set HS256Secret, PublicKeyFiles, JWKSFile or JWKSURLs)")
	}
	for _, k := range v.keys {
		for _, alg := range k.algs {
			if !slices.Contains(v.validAlgs, alg) {
				v.validAlgs = append(v.validAlgs, alg)
			}
		}
	}
	return v, nil
}

func (v *jwtVerifier) close() {
	if v.remote != nil {
		v.remote.close()
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidToken, fmt.Sprintf(format, args...))
}

// bearer extracts the token from the header value.
func (v *jwtVerifier) bearer(get func(string) string) (string, error) {
	raw := strings.TrimSpace(get(v.header))
	if raw == "" {
		return "", ErrNoIdentity
	}
	scheme, rest, found := strings.Cut(raw, " ")
	if found && strings.EqualFold(scheme, "bearer") {
		if tok := strings.TrimSpace(rest); tok != "" {
			return tok, nil
		}
		return "", fmt.Errorf("%w: empty bearer token", ErrNoIdentity)
	}
	if v.header == DefaultJWTHeader {
		// Another scheme (Basic, ...) is not ours to verify. Name only the
		// scheme, never the credentials.
		if found {
			return "", fmt.Errorf("%w: authorization scheme %.20q is not Bearer", ErrNoIdentity, scheme)
		}
		return "", fmt.Errorf("%w: authorization header is not a Bearer token", ErrNoIdentity)
	}
	return raw, nil
}

func (v *jwtVerifier) identify(get func(string) string, now time.Time) (Caller, error) {
	tok, err := v.bearer(get)
	if err != nil {
		return Caller{}, err
	}
	sum := sha256.Sum256([]byte(tok))
	if c, ok := v.cache.get(sum, now); ok {
		return c, nil
	}
	c, notBefore, expires, err := v.verify(tok, now)
	if err != nil {
		return Caller{}, err
	}
	// Never cache past exp, and re-verify at least every minute.
	if limit := now.Add(time.Minute); limit.Before(expires) {
		expires = limit
	}
	v.cache.put(sum, c, notBefore, expires, now)
	return c, nil
}

// verify checks the signature and the claims at now. It returns the caller
// and the window [notBefore, expires) in which the result may be reused.
func (v *jwtVerifier) verify(tok string, now time.Time) (Caller, time.Time, time.Time, error) {
	// The parser is built per call because the time comes from the caller.
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(v.validAlgs),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(v.leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	}
	if v.audience != "" {
		opts = append(opts, jwt.WithAudience(v.audience))
	}
	if v.issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.issuer))
	}
	parser := jwt.NewParser(opts...)
	claims := jwt.MapClaims{}
	if _, err := parser.ParseWithClaims(tok, claims, v.keyFor); err != nil {
		// jwt errors describe the failure, not the token's content, but may
		// echo an attacker-chosen alg; boundedError keeps log lines short.
		return Caller{}, time.Time{}, time.Time{}, fmt.Errorf("%w: %w", ErrInvalidToken, boundedError{err})
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return Caller{}, time.Time{}, time.Time{}, invalid("bad exp claim")
	}
	var notBefore time.Time
	if nbf, err := claims.GetNotBefore(); err == nil && nbf != nil {
		notBefore = nbf.Add(-v.leeway)
	}
	c := Caller{Method: MethodJWT}
	if sub, ok := claims[v.subjectClaim]; ok {
		s, ok := sub.(string)
		if !ok {
			return Caller{}, time.Time{}, time.Time{}, invalid("claim %q is not a string", v.subjectClaim)
		}
		c.ID = s
	}
	if v.projectClaim != "" {
		if p, ok := claims[v.projectClaim]; ok {
			s, ok := p.(string)
			if !ok {
				return Caller{}, time.Time{}, time.Time{}, invalid("claim %q is not a string", v.projectClaim)
			}
			c.Project = s
		}
	}
	roles, err := rolesFromClaims(claims, v.rolesClaim)
	if err != nil {
		return Caller{}, time.Time{}, time.Time{}, err
	}
	c.Roles = roles
	// The reuse window ends at exp itself: the leeway is a tolerance for
	// skew, not extra lifetime worth caching.
	return c, notBefore, exp.Time, nil
}

// keyFor returns only keys of the family the token's alg belongs to, so an
// HS256 token can never be checked against a public key's bytes and an RSA
// key never verifies an EC alg (algorithm confusion).
func (v *jwtVerifier) keyFor(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if alg == "HS256" {
		if v.secret == nil {
			return nil, errors.New("HS256 is not configured")
		}
		return v.secret, nil
	}
	kid, _ := t.Header["kid"].(string)
	keys := v.candidates(alg, kid)
	if len(keys) == 0 && kid != "" && v.remote != nil && v.remote.refetch() {
		// An unknown kid: the IdP may have rotated its keys since the
		// last fetch (refetched at most once per interval).
		keys = v.candidates(alg, kid)
	}
	switch len(keys) {
	case 0:
		return nil, fmt.Errorf("no %s key for kid %.64q", alg, kid)
	case 1:
		return keys[0], nil
	}
	return jwt.VerificationKeySet{Keys: keys}, nil
}

// candidates are the keys of alg that may have signed a token with kid: a
// kid that names a key selects it; PEM keys have no kid and stay
// candidates for any token of their alg.
func (v *jwtVerifier) candidates(alg, kid string) []jwt.VerificationKey {
	var byKid, noKid []jwt.VerificationKey
	pick := func(keys []publicKey) {
		for _, k := range keys {
			if !slices.Contains(k.algs, alg) {
				continue
			}
			switch {
			case k.kid == "":
				noKid = append(noKid, k.key)
			case kid == "" || k.kid == kid:
				byKid = append(byKid, k.key)
			}
		}
	}
	pick(v.keys)
	if v.remote != nil {
		pick(v.remote.keys())
	}
	return append(byKid, noKid...)
}

// rolesFromClaims reads the roles claim, accepting a JSON array of strings
// or a space/comma separated string. A missing claim means no roles.
func rolesFromClaims(claims jwt.MapClaims, name string) ([]string, error) {
	val, ok := claims[name]
	if !ok && strings.Contains(name, ".") {
		val, ok = nestedClaim(claims, name)
	}
	if !ok || val == nil {
		return nil, nil
	}
	switch r := val.(type) {
	case string:
		return parseRoleList(r, func(c rune) bool { return c == ',' || c == ' ' || c == '\t' }), nil
	case []any:
		roles := make([]string, 0, len(r))
		for i, e := range r {
			s, ok := e.(string)
			if !ok {
				return nil, invalid("claim %q element %d is not a string", name, i)
			}
			if s = strings.TrimSpace(s); s != "" {
				roles = append(roles, s)
			}
		}
		return normaliseRoles(roles), nil
	default:
		return nil, invalid("claim %q is neither a string nor an array of strings", name)
	}
}

// nestedClaim walks a dotted path through JSON objects, as Keycloak's
// "realm_access.roles".
func nestedClaim(claims map[string]any, path string) (any, bool) {
	var cur any = claims
	for part := range strings.SplitSeq(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// maxDetail bounds the length of a verification error's detail.
const maxDetail = 160

// boundedError truncates the message of a library error while keeping it
// in the chain, so errors.Is(err, jwt.ErrTokenExpired) still works.
type boundedError struct{ err error }

func (e boundedError) Error() string {
	msg := e.err.Error()
	if len(msg) > maxDetail {
		msg = strings.ToValidUTF8(msg[:maxDetail], "") + "..."
	}
	return msg
}

func (e boundedError) Unwrap() error { return e.err }
