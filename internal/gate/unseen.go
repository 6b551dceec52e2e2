package gate

import (
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// unseen watches one route's successful JSON answers for mapped paths that
// none of them contains — how a typo in the route map ("profile.emial") or
// a backend renaming a field shows up, instead of values going out in
// clear. After `after` answers each path never seen is reported once: a
// metric and one warning naming the route and the path. The watch then
// ends, so it costs nothing on the hot path afterwards; while it runs it
// allocates nothing (the bits live on the caller's stack).
type unseen struct {
	route string
	paths []string        // the route's field paths in redact.Map.Paths order
	after int64           // answers to watch
	seen  []atomic.Uint64 // bit k: paths[k] selected a value at least once
	count atomic.Int64    // answers watched so far
	done  atomic.Bool
}

func newUnseen(route string, paths []string, after int) *unseen {
	if after <= 0 || len(paths) == 0 {
		return nil
	}
	return &unseen{route: route, paths: paths, after: int64(after), seen: make([]atomic.Uint64, (len(paths)+63)/64)}
}

// active reports whether answers are still being watched.
func (u *unseen) active() bool { return u != nil && !u.done.Load() }

// observe records one successful answer's matched paths; the answer that
// closes the window reports the paths never seen.
func (u *unseen) observe(matched []uint64, gauge *prometheus.GaugeVec, log *slog.Logger) {
	for i, w := range matched {
		if w != 0 && u.seen[i].Load()&w != w {
			u.seen[i].Or(w)
		}
	}
	if u.count.Add(1) != u.after {
		return
	}
	u.done.Store(true)
	for k, p := range u.paths {
		if u.seen[k/64].Load()&(1<<(k%64)) != 0 {
			continue
		}
		gauge.WithLabelValues(u.route, p).Set(1)
		log.Warn("a mapped field was in none of the route's answers: check the route map for a typo or the backend for a renamed field",
			"route", u.route, "path", p, "answers", u.after)
	}
}
