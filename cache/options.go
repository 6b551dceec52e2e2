package cache

import (
	"context"
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
	// Timeout bounds the backing store calls of the decisions' hot path
	// (facts, registers, health checks, origins) on top of the caller's
	// context: past it a decision fails closed. Default 500ms.
	Timeout time.Duration
	// WriteTimeout bounds every other call — writes (evidence, wipes,
	// registers, audit entries), seeds, imports and administrative reads —
	// on top of the caller's context. A write is worth waiting for on a
	// busy server; a decision is not. Default the larger of 5s and Timeout.
	WriteTimeout time.Duration
	// HealthInterval is how often a remote store is pinged to detect loss of
	// contact and recovery. Default 1s.
	HealthInterval time.Duration
	// WaitReplicas, when positive, makes the Redis store acknowledge a
	// write that must survive a failover (evidence, wipes, restrictions,
	// registers, subjects) only once that many replicas confirmed it
	// (Redis WAIT, bounded by WaitTimeout, default 1s). A write the
	// replicas did not confirm in time returns ErrUnavailable: it may or
	// may not have been kept, and the caller retries (every such write is
	// idempotent). 0 acknowledges on the primary's word.
	WaitReplicas int
	WaitTimeout  time.Duration
	// Buckets is the number of subject buckets per shard tag when the
	// Redis store creates a new layout (default 512, sized for about ten
	// million subjects); an existing store keeps its own.
	Buckets int
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
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = max(5*time.Second, o.Timeout)
	}
	if o.WaitTimeout <= 0 {
		o.WaitTimeout = time.Second
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

type adminKey struct{}

// ForAdmin marks ctx as an administrative call (admin API, imports, seeds):
// a store bounds its reads for it by Options.WriteTimeout, not by the
// decisions' Timeout — an operator's import on a busy Redis waits, a
// decision fails closed.
func ForAdmin(ctx context.Context) context.Context {
	return context.WithValue(ctx, adminKey{}, true)
}

// IsAdmin reports whether ctx was marked by ForAdmin.
func IsAdmin(ctx context.Context) bool {
	v, _ := ctx.Value(adminKey{}).(bool)
	return v
}
