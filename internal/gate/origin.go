package gate

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

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

// noteItemOrigins records the origins of a list's subjects (2xx answer).
func (g *Gate) noteItemOrigins(r *route, unrecorded map[string]cache.OriginSource, body []byte) {
	if len(unrecorded) == 0 {
		return
	}
	var stated map[string][]byte
	if r.cfg.Subject.OriginFrom != "" {
		stated = itemValues(body, r.cfg.Subject.Path, r.cfg.Subject.OriginFrom)
	}
	g.noteOrigins(r, unrecorded, stated)
}

// noteOrigins records the origins of unrecorded subjects: the one stated
// for them (when the route has origin_from: stated is not nil), else first
// seen now.
func (g *Gate) noteOrigins(r *route, unrecorded map[string]cache.OriginSource, stated map[string][]byte) {
	for id, have := range unrecorded {
		ref := model.SubjectRef{Entity: r.cfg.Subject.Entity, ID: id}
		if raw, ok := stated[id]; ok {
			if t, ok := g.parseOrigin(raw); ok {
				g.recordOrigin(ref, t, cache.OriginStated)
				continue
			}
		} else if stated != nil {
			g.metrics.originIgnored.WithLabelValues("missing").Inc()
		}
		if have == cache.OriginNone {
			g.recordOrigin(ref, g.now(), cache.OriginObserved)
		}
	}
}

// maxOrigins bounds the in-flight set; past it the set is cleared (the
// cached facts then stop repeats as soon as invalidations arrive).
const maxOrigins = 100000

// recordOrigin writes an origin off the request path, once per subject
// and source while the cache catches up.
func (g *Gate) recordOrigin(ref model.SubjectRef, at time.Time, src cache.OriginSource) {
	key := originKey{ref, src}
	if _, dup := g.origins.LoadOrStore(key, struct{}{}); dup {
		return
	}
	if g.originsN.Add(1) > maxOrigins {
		g.origins.Clear()
		g.originsN.Store(0)
	}
	select {
	case g.originSem <- struct{}{}:
	default:
		// Too many in flight: a later answer records it.
		g.origins.Delete(key)
		return
	}
	go func() {
		defer func() { <-g.originSem }()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := g.store.RecordOrigin(ctx, ref, at, src); err != nil {
			g.origins.Delete(key)
			g.log.Warn("origin not recorded; a later answer retries", "subject", g.subjectLabel(ref), "err", err)
			return
		}
		g.metrics.originRecorded.WithLabelValues(src.String()).Inc()
	}()
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
// origin path (both paths share the list prefix up to "#"). It decodes the
// body generically: it runs only when a list holds subjects whose origin
// is still to be learnt, not on the warm path.
func itemValues(body []byte, idPath, valuePath string) map[string][]byte {
	listPath, idRel, _ := strings.Cut(idPath, "#.")
	_, valRel, _ := strings.Cut(valuePath, "#.")
	var doc any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if dec.Decode(&doc) != nil {
		return nil
	}
	list, ok := walk(doc, strings.TrimSuffix(listPath, ".")).([]any)
	if !ok {
		return nil
	}
	out := map[string][]byte{}
	for _, el := range list {
		id, ok := scalar(walk(el, idRel))
		if !ok {
			continue
		}
		if v, ok := scalar(walk(el, valRel)); ok {
			out[id] = []byte(v)
		}
	}
	return out
}

// itemValue is itemValues for one list item's bytes.
func itemValue(item []byte, idPath, valuePath string) (id string, v []byte, ok bool) {
	_, idRel, _ := strings.Cut(idPath, "#.")
	_, valRel, _ := strings.Cut(valuePath, "#.")
	var el any
	dec := json.NewDecoder(bytes.NewReader(item))
	dec.UseNumber()
	if dec.Decode(&el) != nil {
		return "", nil, false
	}
	if id, ok = scalar(walk(el, idRel)); !ok {
		return "", nil, false
	}
	s, ok := scalar(walk(el, valRel))
	return id, []byte(s), ok
}

func walk(v any, path string) any {
	if path == "" {
		return v
	}
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func scalar(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case json.Number:
		return t.String(), true
	}
	return "", false
}

// compileOrigin builds the extractor of a route's origin_from for a single
// subject (items are paired by itemValues instead).
func compileOrigin(rc *config.Route) (*redact.Map, error) {
	if rc.Subject == nil || rc.Subject.OriginFrom == "" || rc.Subject.From == config.FromItem {
		return nil, nil
	}
	return redact.Compile(redact.Spec{SubjectPath: rc.Subject.OriginFrom})
}
