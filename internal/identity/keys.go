package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"slices"
	"strings"
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

// loadPEMFile reads every public key in a PEM file.
func loadPEMFile(path string) ([]publicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("public key file: %w", err)
	}
	var keys []publicKey
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		key, err := parsePEMBlock(block)
		if err != nil {
			return nil, fmt.Errorf("public key file %s: PEM block %d (%s): %w", path, n, block.Type, err)
		}
		algs, err := keyAlgs(key)
		if err != nil {
			return nil, fmt.Errorf("public key file %s: PEM block %d: %w", path, n, err)
		}
		keys = append(keys, publicKey{key: key, algs: algs})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("public key file %s: no PEM block found", path)
	}
	return keys, nil
}

func parsePEMBlock(block *pem.Block) (any, error) {
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return cert.PublicKey, nil
	}
	if strings.Contains(block.Type, "PRIVATE KEY") {
		// A private key in the sidecar's config is a leak waiting to happen.
		return nil, errors.New("is a private key; give the public key only")
	}
	return nil, errors.New("unsupported PEM block type")
}

// jwk holds the JWK members gdprgate uses (RFC 7517, RFC 7518 §6).
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// loadJWKSFile reads the RSA and EC signing keys of a JWKS file. Keys of
// other types (oct, OKP) and encryption keys are skipped because they can
// legitimately share a JWKS with signing keys; a malformed RSA or EC key is
// an error.
func loadJWKSFile(path string) ([]publicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("JWKS file: %w", err)
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("JWKS file %s: not a JWKS document: %w", path, err)
	}
	var keys []publicKey
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var key any
		switch k.Kty {
		case "RSA":
			key, err = rsaFromJWK(k)
		case "EC":
			key, err = ecFromJWK(k)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("JWKS file %s: key %d (kid %q): %w", path, i, k.Kid, err)
		}
		algs, err := keyAlgs(key)
		if err != nil {
			return nil, fmt.Errorf("JWKS file %s: key %d (kid %q): %w", path, i, k.Kid, err)
		}
		if k.Alg != "" {
			// The JWK pins one algorithm; honour it but never widen it.
			if !slices.Contains(algs, k.Alg) {
				return nil, fmt.Errorf("JWKS file %s: key %d (kid %q): alg %s does not fit a %s key", path, i, k.Kid, k.Alg, k.Kty)
			}
			algs = []string{k.Alg}
		}
		keys = append(keys, publicKey{kid: k.Kid, key: key, algs: algs})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("JWKS file %s: no RSA or EC signing key", path)
	}
	return keys, nil
}

func b64Field(name, v string) ([]byte, error) {
	if v == "" {
		return nil, fmt.Errorf("missing %q", name)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(v, "="))
	if err != nil {
		return nil, fmt.Errorf("%q is not base64url: %w", name, err)
	}
	return b, nil
}

func rsaFromJWK(k jwk) (*rsa.PublicKey, error) {
	n, err := b64Field("n", k.N)
	if err != nil {
		return nil, err
	}
	e, err := b64Field("e", k.E)
	if err != nil {
		return nil, err
	}
	if len(e) > 4 {
		return nil, errors.New(`"e" is too large`)
	}
	exp := 0
	for _, b := range e {
		exp = exp<<8 | int(b)
	}
	if exp < 3 || exp%2 == 0 {
		return nil, fmt.Errorf(`"e" = %d is not a valid RSA exponent`, exp)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}, nil
}

func ecFromJWK(k jwk) (*ecdsa.PublicKey, error) {
	var curve elliptic.Curve
	switch k.Crv {
	case "P-256":
		curve = elliptic.P256()
	case "P-384":
		curve = elliptic.P384()
	case "P-521":
		curve = elliptic.P521()
	default:
		return nil, fmt.Errorf("unsupported curve %q", k.Crv)
	}
	x, err := b64Field("x", k.X)
	if err != nil {
		return nil, err
	}
	y, err := b64Field("y", k.Y)
	if err != nil {
		return nil, err
	}
	size := (curve.Params().BitSize + 7) / 8
	if len(x) != size || len(y) != size {
		return nil, fmt.Errorf("coordinates must be %d bytes for %s", size, k.Crv)
	}
	// ParseUncompressedPublicKey also checks that the point is on the curve,
	// which guards against invalid-curve attacks.
	point := make([]byte, 0, 1+2*size)
	point = append(point, 4)
	point = append(point, x...)
	point = append(point, y...)
	key, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return nil, fmt.Errorf("invalid EC point: %w", err)
	}
	return key, nil
}
