package identity

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// minRSABits refuses keys that are too weak to be trusted for signatures.
const minRSABits = 2048

// publicKey is one verification key with the algorithms it may verify.
type publicKey struct {
	kid  string // empty for PEM keys, which carry no kid
	key  any    // *rsa.PublicKey or *ecdsa.PublicKey
	algs []string
}

var (
	rsaAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	// An EC key verifies exactly one alg: the one whose curve it is on.
	ecAlgs = map[string]string{"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
)

// keyAlgs returns the JWS algorithms a key may verify, binding each key to
// its own type so that a token cannot pick a different family for it.
func keyAlgs(key any) ([]string, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits is too small (minimum %d)", bits, minRSABits)
		}
		return rsaAlgs, nil
	case *ecdsa.PublicKey:
		alg, ok := ecAlgs[k.Curve.Params().Name]
		if !ok {
			return nil, fmt.Errorf("unsupported EC curve %s", k.Curve.Params().Name)
		}
		return []string{alg}, nil
	default:
		return nil, fmt.Errorf("unsupported public key type %T (want RSA or EC)", key)
	}
}

// loadPEMFile reads every public key (PKIX, PKCS#1 or certificate) of a PEM
// file, parsed by jwx.
func loadPEMFile(path string) ([]publicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("public key file: %w", err)
	}
	if !bytes.Contains(data, []byte("-----BEGIN ")) {
		return nil, fmt.Errorf("public key file %s: no PEM block found", path)
	}
	// A private key in the sidecar's config is a leak waiting to happen;
	// jwx would accept it (and use its public half), gdprgate does not.
	if bytes.Contains(data, []byte("PRIVATE KEY-----")) {
		return nil, fmt.Errorf("public key file %s: is a private key; give the public key only", path)
	}
	set, err := jwk.Parse(data, jwk.WithPEM(true))
	if err != nil {
		return nil, fmt.Errorf("public key file %s: %w", path, err)
	}
	keys, err := keysFromSet(set, true)
	if err != nil {
		return nil, fmt.Errorf("public key file %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("public key file %s: no PEM block found", path)
	}
	for i := range keys {
		keys[i].kid = "" // PEM keys have no kid of their own
	}
	return keys, nil
}

// loadJWKSFile reads the RSA and EC signing keys of a JWKS file. Each key
// is parsed by jwx on its own, so that an encryption or symmetric key
// sharing the set is skipped while a broken signing key is reported with
// its kid.
func loadJWKSFile(path string) ([]publicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("JWKS file: %w", err)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("JWKS file %s: not a JWKS document: %w", path, err)
	}
	var keys []publicKey
	for i, raw := range set.Keys {
		var head struct{ Kty, Kid, Use string }
		if err := json.Unmarshal(raw, &head); err != nil {
			return nil, fmt.Errorf("JWKS file %s: key %d: %w", path, i, err)
		}
		if head.Use != "" && head.Use != "sig" || head.Kty != "RSA" && head.Kty != "EC" {
			continue
		}
		k, err := jwk.ParseKey(raw)
		if err != nil {
			what := "invalid RSA key"
			if head.Kty == "EC" {
				what = "invalid EC point"
			}
			return nil, fmt.Errorf("JWKS file %s: key %d (kid %q): %s: %w", path, i, head.Kid, what, err)
		}
		pk, err := convertKey(k)
		if err != nil {
			return nil, fmt.Errorf("JWKS file %s: key %d (kid %q): %w", path, i, head.Kid, err)
		}
		pk.kid = head.Kid
		keys = append(keys, pk)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("JWKS file %s: no RSA or EC signing key", path)
	}
	return keys, nil
}

// keysFromSet converts a JWK set's RSA and EC signing keys, binding each to
// the algorithms of its type (and to the one its "alg" pins). Keys of other
// types (oct, OKP) and encryption keys are skipped because they can
// legitimately share a JWKS with signing keys. A malformed RSA or EC key is
// an error when strict, and skipped otherwise (a remote set keeps serving
// its good keys).
func keysFromSet(set jwk.Set, strict bool) ([]publicKey, error) {
	var keys []publicKey
	for i := range set.Len() {
		k, _ := set.Key(i)
		if use, ok := k.KeyUsage(); ok && use != "" && use != "sig" {
			continue
		}
		kid, _ := k.KeyID()
		pk, err := convertKey(k)
		if errors.Is(err, errSkipKey) {
			continue
		}
		if err != nil {
			if strict {
				return nil, fmt.Errorf("key %d (kid %q): %w", i, kid, err)
			}
			continue
		}
		pk.kid = kid
		keys = append(keys, pk)
	}
	return keys, nil
}

var errSkipKey = errors.New("not a signing key gdprgate uses")

func convertKey(k jwk.Key) (publicKey, error) {
	var raw any
	switch k.KeyType().String() {
	case "RSA":
		var pub rsa.PublicKey
		if err := jwk.Export(k, &pub); err != nil {
			var priv rsa.PrivateKey
			if jwk.Export(k, &priv) == nil {
				return publicKey{}, errors.New("is a private key; give the public key only")
			}
			return publicKey{}, fmt.Errorf("invalid RSA key: %w", err)
		}
		raw = &pub
	case "EC":
		var pub ecdsa.PublicKey
		if err := jwk.Export(k, &pub); err != nil {
			return publicKey{}, fmt.Errorf("invalid EC point: %w", err)
		}
		// ECDH checks that the point is on the curve, which guards against
		// invalid-curve attacks whatever the parser checked.
		if _, err := pub.ECDH(); err != nil {
			return publicKey{}, fmt.Errorf("invalid EC point: %w", err)
		}
		raw = &pub
	default:
		return publicKey{}, errSkipKey
	}
	if priv, err := jwk.IsPrivateKey(k); err == nil && priv {
		return publicKey{}, errors.New("is a private key; give the public key only")
	}
	algs, err := keyAlgs(raw)
	if err != nil {
		return publicKey{}, err
	}
	if a, ok := k.Algorithm(); ok && a.String() != "" {
		// The JWK pins one algorithm; honour it but never widen it.
		if !slices.Contains(algs, a.String()) {
			return publicKey{}, fmt.Errorf("alg %s does not fit a %s key", a, k.KeyType())
		}
		algs = []string{a.String()}
	}
	return publicKey{key: raw, algs: algs}, nil
}
