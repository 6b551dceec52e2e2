package gate

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// Header names as net/http keys them. gdprgate names headers in lower case
// (config, x-gdpr-*), and http.Header's Get/Set/Del canonicalise such a
// name into a new string on every call: about twenty allocations per
// proxied request. CanonicalHeader gives the same key from a cache of the
// names gdprgate itself uses.

// maxCanonicalNames bounds the cache; names past it are computed each
// time (the names come from the code and the config, not from requests).
const maxCanonicalNames = 512

var (
	canonicalNames atomic.Pointer[map[string]string] // copied on write
	canonicalMu    sync.Mutex
)

// CanonicalHeader is http.CanonicalHeaderKey(name), cached.
func CanonicalHeader(name string) string {
	if m := canonicalNames.Load(); m != nil {
		if c, ok := (*m)[name]; ok {
			return c
		}
	}
	c := http.CanonicalHeaderKey(name)
	canonicalMu.Lock()
	defer canonicalMu.Unlock()
	old := canonicalNames.Load()
	if old != nil && len(*old) >= maxCanonicalNames {
		return c
	}
	m := make(map[string]string, 1+lenOf(old))
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[strings.Clone(name)] = c
	canonicalNames.Store(&m)
	return c
}

func lenOf(m *map[string]string) int {
	if m == nil {
		return 0
	}
	return len(*m)
}
