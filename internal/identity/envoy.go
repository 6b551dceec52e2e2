package identity

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
)

// MethodEnvoyJWT is [Caller.Method] for an identity read from the payload
// Envoy's jwt_authn filter verified.
const MethodEnvoyJWT = "envoy_jwt"

// DefaultJWTAuthnNamespace is the dynamic metadata namespace of Envoy's
// jwt_authn filter.
const DefaultJWTAuthnNamespace = "envoy.filters.http.jwt_authn"

// EnvoyJWTOptions read the caller from the JWT payload Envoy's jwt_authn
// filter verified and put into its dynamic metadata (a provider's
// payload_in_metadata), which ext_authz passes in metadata_context when its
// metadata_context_namespaces names jwt_authn (and ext_proc when its
// metadata_options forward it). Clients cannot set dynamic metadata, so
// the payload is trusted as Envoy's word; the token is not verified again.
type EnvoyJWTOptions struct {
	// Namespace is the metadata namespace; default
	// "envoy.filters.http.jwt_authn".
	Namespace string
	// PayloadKey is the provider's payload_in_metadata name (required).
	PayloadKey string
	// RolesClaim and SubjectClaim as in JWTOptions (default roles, sub).
	RolesClaim   string
	SubjectClaim string
}

type envoyJWT struct {
	namespace, payloadKey, rolesClaim, subjectClaim string
}

func newEnvoyJWT(o EnvoyJWTOptions) (*envoyJWT, error) {
	if strings.TrimSpace(o.PayloadKey) == "" {
		return nil, fmt.Errorf("envoy jwt: payload_key (jwt_authn's payload_in_metadata) is required")
	}
	return &envoyJWT{
		namespace:    cmpOr(o.Namespace, DefaultJWTAuthnNamespace),
		payloadKey:   o.PayloadKey,
		rolesClaim:   cmpOr(o.RolesClaim, DefaultRolesClaim),
		subjectClaim: cmpOr(o.SubjectClaim, DefaultSubjectClaim),
	}, nil
}

// UsesMetadata reports whether Identify needs Envoy's dynamic metadata
// (IdentifyEnvoy); callers without it use Identify.
func (v *Verifier) UsesMetadata() bool { return v.envoy != nil }

// IdentifyEnvoy is Identify with Envoy's dynamic metadata: md returns a
// namespace's metadata (nil when absent). The verified payload, when
// present, is the identity; otherwise a bearer JWT is verified if
// configured; the roles header alone is never enough once an Envoy source
// is configured (a request that bypassed jwt_authn carries no payload).
func (v *Verifier) IdentifyEnvoy(get func(name string) string, md func(namespace string) *structpb.Struct, now time.Time) (Caller, error) {
	if v.envoy == nil {
		return v.Identify(get, now)
	}
	var payload *structpb.Struct
	if md != nil {
		payload = md(v.envoy.namespace).GetFields()[v.envoy.payloadKey].GetStructValue()
	}
	if payload == nil {
		if v.jwt != nil {
			return v.Identify(get, now)
		}
		return Caller{}, fmt.Errorf("%w: no verified JWT payload in Envoy's %s metadata", ErrNoIdentity, v.envoy.namespace)
	}
	c := Caller{Method: MethodEnvoyJWT}
	if sub, ok := payload.GetFields()[v.envoy.subjectClaim]; ok {
		s, ok := sub.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return Caller{}, invalid("claim %q is not a string", v.envoy.subjectClaim)
		}
		c.ID = s.StringValue
	}
	claims := map[string]any{}
	if val, ok := structClaim(payload, v.envoy.rolesClaim); ok {
		claims[v.envoy.rolesClaim] = val.AsInterface()
	}
	roles, err := rolesFromClaims(claims, v.envoy.rolesClaim)
	if err != nil {
		return Caller{}, err
	}
	c.Roles = roles
	if v.trustHeader {
		if r := ParseRoles(get(v.rolesHeader)); len(r) > 0 {
			c.Roles = r
		}
	}
	return c, nil
}

// structClaim finds a claim by name, or by a dotted path through nested
// objects ("realm_access.roles") when no top-level claim has that name.
func structClaim(s *structpb.Struct, name string) (*structpb.Value, bool) {
	if v, ok := s.GetFields()[name]; ok {
		return v, true
	}
	if !strings.Contains(name, ".") {
		return nil, false
	}
	cur := s
	parts := strings.Split(name, ".")
	for i, p := range parts {
		v, ok := cur.GetFields()[p]
		if !ok {
			return nil, false
		}
		if i == len(parts)-1 {
			return v, true
		}
		if cur = v.GetStructValue(); cur == nil {
			return nil, false
		}
	}
	return nil, false
}

// Ready reports whether every remote JWKS has been fetched once.
func (v *Verifier) Ready(ctx context.Context) error {
	if v.jwt == nil || v.jwt.remote == nil {
		return nil
	}
	return v.jwt.remote.ready(ctx)
}

// Close stops fetching remote JWKS documents.
func (v *Verifier) Close() {
	if v.jwt != nil {
		v.jwt.close()
	}
}
