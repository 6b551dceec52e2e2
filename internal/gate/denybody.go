package gate

import (
	"encoding/json"
	"sync"
	"sync/atomic"
)

// A denial's JSON body, {"error": reason, "message": message}, depends only
// on the two strings, and a running gate repeats a handful of pairs (the
// policy's reasons, gdprgate's own refusals). Encoding it with
// encoding/json on every denial was a reflection pass per denied Check, so
// each pair is encoded once and its bytes shared: denyBodies maps the pair
// to json.Marshal's output, byte for byte what every denial sent before.
// The table is read without a lock (copy on write) and bounded: a policy
// whose messages vary per request (say, naming the path) gets its bodies
// encoded each time past maxDenyBodies, never an unbounded table.

type denyKey struct{ reason, message string }

var (
	denyBodies   atomic.Pointer[map[denyKey][]byte]
	denyBodiesMu sync.Mutex // serialises the copies on write
)

// maxDenyBodies bounds the pairs kept.
const maxDenyBodies = 256

// denyBody returns the JSON body of a denial. The slice is shared: callers
// never write into it (its capacity is its length, so an append copies).
func denyBody(reason, message string) []byte {
	k := denyKey{reason, message}
	if m := denyBodies.Load(); m != nil {
		if b, ok := (*m)[k]; ok {
			return b
		}
	}
	body := encodeDenyBody(reason, message)
	denyBodiesMu.Lock()
	defer denyBodiesMu.Unlock()
	old := denyBodies.Load()
	n := 0
	if old != nil {
		if b, ok := (*old)[k]; ok {
			return b
		}
		n = len(*old)
	}
	if n >= maxDenyBodies {
		return body
	}
	m := make(map[denyKey][]byte, n+1)
	if old != nil {
		for kk, v := range *old {
			m[kk] = v
		}
	}
	m[k] = body
	denyBodies.Store(&m)
	return body
}

// encodeDenyBody is the body as encoding/json writes it (HTML-safe
// escapes, invalid UTF-8 as U+FFFD).
func encodeDenyBody(reason, message string) []byte {
	body, _ := json.Marshal(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{reason, message})
	return body[:len(body):len(body)]
}
