package cache

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options tune a Store and its local read-through cache. The zero value is
// usable: WithDefaults fills every unset field.
type Options struct {
	// MaxSubjects bounds the number of subjects whose Facts are cached
	// locally (least recently used are evicted). Default 100000.
	MaxSubjects int
	// MaxBytes bounds the memory the cached Facts hold, estimated from
	// their subject ids, grants and a fixed overhead per entry (least
	// recently used are evicted). Default 64 MiB.
	MaxBytes int64
	// MaxStaleness is how long after the last successful contact with the
	// backing store cached entries may still be served (marked Stale). Past
	// it, Facts and Registers return ErrUnavailable. Default 30s.
	MaxStaleness time.Duration
	// Timeout bounds every call to the backing store (on top of the caller's
	// context). Default 500ms.
	Timeout time.Duration
	// HealthInterval is how often a remote store is pinged to detect loss of
	// contact and recovery. Default 1s.
	HealthInterval time.Duration
	// Registerer receives the cache metrics; nil registers nothing. The
	// global default registry is never used implicitly.
	Registerer prometheus.Registerer
	// Logger receives operational messages (never personal data). Default
	// slog.Default().
	Logger *slog.Logger
	// Clock is the wall clock used for staleness and wipe idle times
	// (not for lifecycle evaluation, which uses the caller's now). Default
	// time.Now.
	Clock func() time.Time
}

// WithDefaults returns o with every unset field given its default.
func (o Options) WithDefaults() Options {
	if o.MaxSubjects <= 0 {
		o.MaxSubjects = 100000
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 64 << 20
	}
	if o.MaxStaleness <= 0 {
		o.MaxStaleness = 30 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 500 * time.Millisecond
	}
	if o.HealthInterval <= 0 {
		o.HealthInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return o
}
