package identity

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Defaults for remote JWKS documents.
const (
	DefaultJWKSMinRefresh        = 5 * time.Minute
	DefaultJWKSMaxRefresh        = time.Hour
	DefaultJWKSUnknownKidRefresh = 30 * time.Second
	// jwksFetchTimeout bounds a refetch made while a request waits.
	jwksFetchTimeout = 5 * time.Second
)

// CheckJWKSURL accepts https URLs, and http only on a loopback host: keys
// fetched in clear from elsewhere could be swapped on the way.
func CheckJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("JWKS URL %q is not an absolute URL", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
	}
	return fmt.Errorf("JWKS URL %q must be https (http only on loopback)", raw)
}

// remoteKeys are the keys of IdPs' JWKS URLs, kept fresh by jwx's cache:
// refetched between the minimum and maximum interval (the server's
// Cache-Control within those bounds), and once more, at most every
// unknownKid, when a token names a kid no cached key has — which is how an
// IdP's key rotation reaches gdprgate before the next scheduled refetch.
type remoteKeys struct {
	cache      *jwk.Cache
	cancel     context.CancelFunc
	urls       []string
	unknownKid time.Duration
	// rings hold each URL's converted keys with the set they came from.
	rings []atomic.Pointer[ring]
	// last refetch for an unknown kid, per URL (unix nanoseconds).
	lastRefetch []atomic.Int64
	refetchMu   sync.Mutex
}

type ring struct {
	set  jwk.Set
	keys []publicKey
}

func newRemoteKeys(o JWTOptions) (*remoteKeys, error) {
	minI, maxI, unknown := o.JWKSMinRefresh, o.JWKSMaxRefresh, o.JWKSUnknownKidRefresh
	if minI <= 0 {
		minI = DefaultJWKSMinRefresh
	}
	if maxI <= 0 {
		maxI = DefaultJWKSMaxRefresh
	}
	if unknown <= 0 {
		unknown = DefaultJWKSUnknownKidRefresh
	}
	if maxI < minI {
		return nil, fmt.Errorf("JWKS refresh: maximum %s below minimum %s", maxI, minI)
	}
	for _, u := range o.JWKSURLs {
		if err := CheckJWKSURL(u); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cache, err := jwk.NewCache(ctx, httprc.NewClient())
	if err != nil {
		cancel()
		return nil, fmt.Errorf("JWKS cache: %w", err)
	}
	r := &remoteKeys{cache: cache, cancel: cancel, urls: o.JWKSURLs, unknownKid: unknown,
		rings: make([]atomic.Pointer[ring], len(o.JWKSURLs)), lastRefetch: make([]atomic.Int64, len(o.JWKSURLs))}
	for _, u := range o.JWKSURLs {
		// Not waiting for the first fetch: an IdP that is down at start
		// makes tokens fail (401) until it answers, not gdprgate fail to
		// start. A key that does not parse is dropped, not the whole set.
		err := cache.Register(ctx, u,
			jwk.WithWaitReady(false),
			jwk.WithMinInterval(minI), jwk.WithMaxInterval(maxI),
			jwk.WithIgnoreParseError(true))
		if err != nil {
			cancel()
			return nil, fmt.Errorf("JWKS %s: %w", u, err)
		}
	}
	return r, nil
}

func (r *remoteKeys) close() { r.cancel() }

// keys returns the current keys of every URL; a URL not fetched yet gives
// none.
func (r *remoteKeys) keys() []publicKey {
	var out []publicKey
	for i, u := range r.urls {
		out = append(out, r.keysOf(i, u)...)
	}
	return out
}

func (r *remoteKeys) keysOf(i int, u string) []publicKey {
	set, err := r.cache.Lookup(context.Background(), u)
	if err != nil {
		if rg := r.rings[i].Load(); rg != nil {
			return rg.keys
		}
		return nil
	}
	if rg := r.rings[i].Load(); rg != nil && rg.set == set {
		return rg.keys
	}
	keys, _ := keysFromSet(set, false)
	r.rings[i].Store(&ring{set: set, keys: keys})
	return keys
}

// refetch fetches every URL whose last unknown-kid refetch is older than
// the limit, so that a flood of tokens with made-up kids costs the IdP one
// request per interval. It reports whether anything was refetched.
func (r *remoteKeys) refetch() bool {
	r.refetchMu.Lock()
	defer r.refetchMu.Unlock()
	now := time.Now().UnixNano()
	did := false
	for i, u := range r.urls {
		if last := r.lastRefetch[i].Load(); last != 0 && now-last < int64(r.unknownKid) {
			continue
		}
		r.lastRefetch[i].Store(now)
		ctx, cancel := context.WithTimeout(context.Background(), jwksFetchTimeout)
		_, err := r.cache.Refresh(ctx, u)
		cancel()
		if err == nil {
			did = true
		}
	}
	return did
}

// ready reports whether every URL has been fetched once.
func (r *remoteKeys) ready(ctx context.Context) error {
	var errs []error
	for _, u := range r.urls {
		if _, err := r.cache.Lookup(ctx, u); err != nil {
			errs = append(errs, fmt.Errorf("JWKS %s not fetched yet", u))
		}
	}
	return errors.Join(errs...)
}
