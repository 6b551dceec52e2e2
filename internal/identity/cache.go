package identity

import (
	"slices"
	"sync"
	"time"
)

// defaultCacheSize bounds the verified-token cache; a token costs one
// entry, and an attacker sending many distinct valid tokens can only evict.
const defaultCacheSize = 4096

// tokenCache remembers verified tokens by their SHA-256 so that the
// signature check is not repeated on every request. The token itself is
// never stored.
type tokenCache struct {
	mu      sync.Mutex
	max     int
	entries map[[32]byte]cacheEntry
}

type cacheEntry struct {
	caller    Caller
	notBefore time.Time // zero: no nbf
	expires   time.Time
}

func newTokenCache(size int) *tokenCache {
	return &tokenCache{max: size, entries: make(map[[32]byte]cacheEntry)}
}

// get returns the cached caller when now is inside the entry's window. now
// may be earlier than when the entry was stored (callers pass their own
// clock), hence the notBefore check.
func (c *tokenCache) get(key [32]byte, now time.Time) (Caller, bool) {
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if !ok || !now.Before(e.expires) || now.Before(e.notBefore) {
		return Caller{}, false
	}
	// A copy keeps callers from mutating the cached roles.
	e.caller.Roles = slices.Clone(e.caller.Roles)
	return e.caller, true
}

func (c *tokenCache) put(key [32]byte, caller Caller, notBefore, expires, now time.Time) {
	if !now.Before(expires) {
		return // only valid thanks to leeway: not worth remembering
	}
	caller.Roles = slices.Clone(caller.Roles)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		c.evict(now)
	}
	c.entries[key] = cacheEntry{caller: caller, notBefore: notBefore, expires: expires}
}

// evict drops expired entries and, if that is not enough, an arbitrary
// eighth of the rest (map order is random), keeping the cost amortised.
func (c *tokenCache) evict(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	drop := len(c.entries) - c.max + max(c.max/8, 1)
	for k := range c.entries {
		if drop <= 0 {
			break
		}
		delete(c.entries, k)
		drop--
	}
}
