package gate

import "github.com/gdprgate/gdprgate/cache"

// ParseInstant exposes parseInstant to the external tests.
var ParseInstant = parseInstant

// SetStore replaces the gate's store and its BatchLookups option (tests
// count the store's reads).
func SetStore(g *Gate, s cache.Store, batch bool) { g.store, g.batchLookups = s, batch }
