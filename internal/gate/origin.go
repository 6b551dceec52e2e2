package gate

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/policy/model"
	"github.com/gdprgate/gdprgate/redact"
)

// Origins. A subject's data originates when the backend created it. The
// gate learns it from the backend's answers, and only from answers that
// prove the subject exists — a 2xx naming it:
//
//   - a route's subject.origin_from names the response field holding the
//     backend's creation instant: recorded as stated (it replaces an
//     observed origin once), bounded by now — a future or unparsable value
//     is ignored and counted (gdprgate_origin_ignored_total);
//   - otherwise the first such answer is recorded as observed ("first
//     seen").
//
// A read of an id the backend never answered 2xx for records nothing: its
// state is computed from "now" (see cache.Store.Facts). Recording is a
// store write made off the request path, once per subject: the cached facts
// say whether an origin is recorded, and origins remembers the subjects in
// flight until the store's invalidation reaches the cache.

func ok2xx(status int) bool { return status >= 200 && status < 300 }

// Observe is the response stage of a route whose answer is not buffered:
// a 2xx answer for a request-side subject records its first-seen origin.
func (g *Gate) Observe(ex *Exchange, status int) {
	if ex == nil || !ex.Mapped() || !ex.hasSubj || !ex.Verdict.Allow || !ok2xx(status) {
		return
	}
	if ex.route.confirmIn != nil {
		// An answer that does not state its subject (no body, HEAD) does
		// not prove that the request's spelling of the id is one.
		return
	}
	g.noteOrigin(ex.subject, ex.origin, nil, nil)
}

// noteOrigin records ref's origin from a 2xx answer whose body is body
// (nil: not seen) if it improves on have.
func (g *Gate) noteOrigin(ref model.SubjectRef, have cache.OriginSource, body []byte, originIn *redact.Map) {
	if have >= cache.OriginStated {
		return
	}
	if originIn != nil && body != nil {
		raw, err := originIn.Subject(body)
		if err == nil {
			if t, ok := g.parseOrigin(raw); ok {
				g.recordOrigin(ref, t, cache.OriginStated)
				return
			}
		} else {
			g.metrics.originIgnored.WithLabelValues("missing").Inc()
		}
	}
	if have == cache.OriginNone {
		g.recordOrigin(ref, g.now(), cache.OriginObserved)
	}
}

// noteItemOrigins records the origins of a list's subjects (2xx answer),
// all of them in one background run: a list of new subjects is learnt
// from one answer, not a few subjects per answer.
func (g *Gate) noteItemOrigins(r *route, unrecorded map[string]cache.OriginSource, body []byte) {
	if len(unrecorded) == 0 {
		return
	}
	var stated map[string][]byte
	if r.cfg.Subject.OriginFrom != "" {
		stated = itemValues(body, r.cfg.Subject.Path, r.cfg.Subject.OriginFrom, func(id string) bool {
			_, ok := unrecorded[id]
			return ok
		})
	}
	g.noteOrigins(r, unrecorded, stated)
}

// noteOrigins records the origins of unrecorded subjects: the one stated
// for them (when the route has origin_from: stated is not nil), else first
// seen now; all of them in one background run, so that a list of new
// subjects is learnt from one answer, not a few subjects per answer.
func (g *Gate) noteOrigins(r *route, unrecorded map[string]cache.OriginSource, stated map[string][]byte) {
	batch := make([]originWrite, 0, len(unrecorded))
	for id, have := range unrecorded {
		ref := model.SubjectRef{Entity: r.cfg.Subject.Entity, ID: id}
		if raw, ok := stated[id]; ok {
			if t, ok := g.parseOrigin(raw); ok {
				batch = append(batch, originWrite{originKey{ref, cache.OriginStated}, t})
				continue
			}
		} else if stated != nil {
			g.metrics.originIgnored.WithLabelValues("missing").Inc()
		}
		if have == cache.OriginNone {
			batch = append(batch, originWrite{originKey{ref, cache.OriginObserved}, g.now()})
		}
	}
	g.recordOrigins(batch)
}

// maxOrigins bounds the in-flight set; past it the set is cleared (the
// cached facts then stop repeats as soon as invalidations arrive).
const maxOrigins = 100000

// originWrite is one origin to record.
type originWrite struct {
	key originKey
	at  time.Time
}

// recordOrigin writes an origin off the request path, once per subject
// and source while the cache catches up.
func (g *Gate) recordOrigin(ref model.SubjectRef, at time.Time, src cache.OriginSource) {
	g.recordOrigins([]originWrite{{originKey{ref, src}, at}})
}

// recordOrigins writes origins off the request path, in one background
// run, each once per subject and source while the cache catches up.
func (g *Gate) recordOrigins(batch []originWrite) {
	n := 0
	for _, w := range batch {
		if _, dup := g.origins.LoadOrStore(w.key, struct{}{}); dup {
			continue
		}
		if g.originsN.Add(1) > maxOrigins {
			g.origins.Clear()
			g.originsN.Store(0)
		}
		batch[n] = w
		n++
	}
	batch = batch[:n]
	if n == 0 {
		return
	}
	select {
	case g.originSem <- struct{}{}:
	default:
		// Too many in flight: a later answer records them.
		for _, w := range batch {
			g.origins.Delete(w.key)
		}
		return
	}
	go func() {
		defer func() { <-g.originSem }()
		for i, w := range batch {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := g.store.RecordOrigin(ctx, w.key.ref, w.at, w.key.src)
			cancel()
			if err != nil {
				// The store is failing: the rest wait for a later answer
				// rather than a timeout each.
				for _, w := range batch[i:] {
					g.origins.Delete(w.key)
				}
				g.log.Warn("origins not recorded; a later answer retries", "subject", g.subjectLabel(w.key.ref), "left", len(batch)-i, "err", err)
				return
			}
			g.metrics.originRecorded.WithLabelValues(w.key.src.String()).Inc()
		}
	}()
}

// originPending reports whether this process is recording ref's origin
// already, from the best source a list answer can give it (stated when
// the route names the field, observed otherwise): a list of subjects
// being learnt is not read for origins again while the store catches up.
func (g *Gate) originPending(ref model.SubjectRef, stated bool) bool {
	src := cache.OriginObserved
	if stated {
		src = cache.OriginStated
	}
	_, ok := g.origins.Load(originKey{ref, src})
	return ok
}

type originKey struct {
	ref model.SubjectRef
	src cache.OriginSource
}

// parseOrigin reads the backend's creation instant: RFC 3339 (with or
// without a zone: UTC), a date, or unix seconds or milliseconds. A value in
// the future or unreadable is ignored (and counted).
func (g *Gate) parseOrigin(raw []byte) (time.Time, bool) {
	t, ok := parseInstant(string(raw))
	if !ok {
		g.metrics.originIgnored.WithLabelValues("unparsable").Inc()
		return time.Time{}, false
	}
	if t.After(g.now()) {
		g.metrics.originIgnored.WithLabelValues("future").Inc()
		return time.Time{}, false
	}
	return t, true
}

var instantLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05", "2006-01-02"}

func parseInstant(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 64 {
		return time.Time{}, false
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		switch {
		case n > 0 && n < 1e11:
			return time.Unix(n, 0).UTC(), true
		case n >= 1e11 && n < 1e14:
			return time.UnixMilli(n).UTC(), true
		}
		return time.Time{}, false
	}
	for _, l := range instantLayouts {
		if t, err := time.Parse(l, s); err == nil {
			if t.Year() < 1900 {
				return time.Time{}, false
			}
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// itemValues pairs each list element's subject id with the scalar at the
// origin path (both paths share the list prefix up to "#"), for the ids
// want accepts. It runs only when a list holds subjects whose origin is
// still to be learnt, not on the warm path, on a body the rewriter has
// validated. An element naming its id or its origin twice is skipped:
// which one the backend meant would be a guess.
func itemValues(body []byte, idPath, valuePath string, want func(id string) bool) map[string][]byte {
	listPath, idRel, _ := strings.Cut(idPath, "#.")
	_, valRel, _ := strings.Cut(valuePath, "#.")
	list := gjson.GetBytes(body, gjsonLiteral(strings.TrimSuffix(listPath, ".")))
	if !list.IsArray() {
		return nil
	}
	idKeys, valKeys := strings.Split(idRel, "."), strings.Split(valRel, ".")
	out := map[string][]byte{}
	list.ForEach(func(_, el gjson.Result) bool {
		id, ok := member(el, idKeys)
		if !ok || !want(id.String()) {
			return true
		}
		if v, ok := member(el, valKeys); ok {
			out[id.String()] = []byte(v.String())
		}
		return true
	})
	return out
}

// itemValue is itemValues for one list item's bytes.
func itemValue(item []byte, idPath, valuePath string) (id string, v []byte, ok bool) {
	_, idRel, _ := strings.Cut(idPath, "#.")
	_, valRel, _ := strings.Cut(valuePath, "#.")
	el := gjson.ParseBytes(item)
	idv, ok := member(el, strings.Split(idRel, "."))
	if !ok {
		return "", nil, false
	}
	val, ok := member(el, strings.Split(valRel, "."))
	if !ok {
		return "", nil, false
	}
	return idv.String(), []byte(val.String()), true
}

// member reads the scalar (string or number) at keys below el, exactly
// spelt, refusing a key that appears twice on the way.
func member(el gjson.Result, keys []string) (gjson.Result, bool) {
	for _, k := range keys {
		if !el.IsObject() {
			return gjson.Result{}, false
		}
		var found gjson.Result
		n := 0
		el.ForEach(func(key, v gjson.Result) bool {
			if key.String() == k {
				found = v
				n++
			}
			return n < 2
		})
		if n != 1 {
			return gjson.Result{}, false
		}
		el = found
	}
	if el.Type != gjson.String && el.Type != gjson.Number {
		return gjson.Result{}, false
	}
	return el, true
}

// gjsonLiteral escapes gjson's path syntax in a plain dotted path.
func gjsonLiteral(path string) string {
	if path == "" {
		return "@this"
	}
	var b strings.Builder
	for _, c := range path {
		switch c {
		case '\\', '*', '?', '|', '#', '@', '!', '=', '<', '>', '%', '[', ']', '{', '}', '(', ')', ',', ':', '"':
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// compileOrigin builds the extractor of a route's origin_from for a single
// subject (items are paired by itemValues instead).
func compileOrigin(rc *config.Route) (*redact.Map, error) {
	if rc.Subject == nil || rc.Subject.OriginFrom == "" || rc.Subject.From == config.FromItem {
		return nil, nil
	}
	return redact.Compile(redact.Spec{SubjectPath: rc.Subject.OriginFrom})
}
