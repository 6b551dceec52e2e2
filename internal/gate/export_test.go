package gate

import "github.com/gdprgate/gdprgate/cache"

// ParseInstant exposes parseInstant to the external tests.
var ParseInstant = parseInstant

// SetStore replaces the gate's store (tests count its reads), before any
// request.
func SetStore(g *Gate, s cache.Store) { g.store = s }

// SetBatch sets the BatchLookups option.
func SetBatch(g *Gate, batch bool) { g.batchLookups = batch }
