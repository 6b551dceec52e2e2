package gate

import (
	"context"
	"errors"
	"mime"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/observe"
	"github.com/gdprgate/gdprgate/policy"
	"github.com/gdprgate/gdprgate/policy/lifecycle"
	"github.com/gdprgate/gdprgate/policy/model"
	"github.com/gdprgate/gdprgate/redact"
)

// Response is the backend's answer as the front-end has it.
type Response struct {
	Status int
	// Header returns a response header by lower-case name.
	Header func(name string) string
	Body   []byte
	// Head: the request was HEAD (no body to rewrite).
	Head bool
	// Dst, when set, is where the rewritten body is appended (a pooled
	// buffer of the front-end's; Rewritten.Body then shares its memory).
	Dst []byte
}

// Rewritten is what the front-end must do with the response.
type Rewritten struct {
	// Replace: send Status and Body instead of the backend's response (a
	// denial decided from the body, or a body refused fail-closed).
	Replace bool
	Status  int
	// Modified: Body replaces the backend's body (same status).
	Modified bool
	Body     []byte
	// SetHeaders are set on the response; RemoveHeaders removed. The
	// front-end sets content-length for a new body itself.
	SetHeaders    map[string]string
	RemoveHeaders []string
	Reason        string
}

// Rewrite redacts a response body for the exchange's caller. Any failure
// replaces the response (fail closed): the original bytes never pass a
// mapped route unchecked unless body.non_json is "pass" for non-JSON bodies.
func (g *Gate) Rewrite(ctx context.Context, ex *Exchange, resp *Response) Rewritten {
	start := time.Now()
	out := g.rewrite(ctx, ex, resp)
	if ex.comm != nil {
		// What the backend created is recorded whatever becomes of its
		// answer on the way back.
		if h := g.recordCommunication(ctx, ex, resp); len(h) > 0 {
			if out.SetHeaders == nil {
				out.SetHeaders = map[string]string{}
			}
			for k, v := range h {
				out.SetHeaders[k] = v
			}
		}
	}
	result := "allow"
	reason := out.Reason
	if out.Replace {
		result = "deny"
	}
	g.metrics.decision("response", result, reason).Inc()
	g.metrics.latencyOf("response").Observe(time.Since(start).Seconds())
	if ex.Shadow() {
		return g.shadowRewrite(ctx, ex, out)
	}
	return out
}

// shadowRewrite records what the rewrite would have done and lets the
// backend's answer through unchanged.
func (g *Gate) shadowRewrite(ctx context.Context, ex *Exchange, out Rewritten) Rewritten {
	var would map[string]any
	switch {
	case ex.shadow.wouldDeny:
		// Enforcing, the backend would not have answered at all: counted
		// once, as would_deny.
		return Rewritten{Reason: "shadow"}
	case out.Replace:
		g.metrics.shadow.WithLabelValues(ex.RouteName(), "would_refuse", out.Reason).Inc()
		would = map[string]any{"replaced": true, "http_status": out.Status, "reason": out.Reason}
	case out.Modified:
		fields := out.SetHeaders[HeaderRedacted]
		g.metrics.shadow.WithLabelValues(ex.RouteName(), "would_redact", out.Reason).Inc()
		would = map[string]any{"redacted": strings.Split(fields, ",")}
	default:
		return Rewritten{Reason: out.Reason}
	}
	g.log.Info("shadow: response would be changed", "decision_id", ex.DecisionID, "route", ex.RouteName(), "would", would)
	if g.dlog != nil && g.sampled() {
		g.dlog.Log(ctx, observe.Event{DecisionID: ex.DecisionID, Result: would, Custom: map[string]any{
			"stage": "response", "route": ex.RouteName(), "mode": config.ModeShadow, "would": would}})
	}
	return Rewritten{Reason: "shadow"}
}

func (g *Gate) rewrite(ctx context.Context, ex *Exchange, resp *Response) Rewritten {
	set := ex.coverageSet()
	if !ex.NeedsBody() || resp.Head || resp.Status == 204 || resp.Status == 304 || len(resp.Body) == 0 {
		g.Observe(ex, resp.Status)
		return Rewritten{SetHeaders: set, Reason: "no_body"}
	}
	r := ex.route
	ct := resp.Header("content-type")
	if !isJSON(ct) {
		// Whatever the status: an error page can carry the record too.
		if g.cfg.Body.NonJSON == "pass" {
			one(&g.metrics.bodySeries, g.metrics.bodies, "passed_non_json").Inc()
			return Rewritten{SetHeaders: set, Reason: "non_json_passed"}
		}
		return g.refuse(502, "body_not_json", "the backend's answer is not JSON and cannot be checked")
	}
	body := resp.Body
	enc := strings.TrimSpace(strings.ToLower(resp.Header("content-encoding")))
	if enc != "" && enc != "identity" {
		if g.cfg.Body.Compressed == "refuse" {
			return g.refuse(502, "body_compressed", "compressed answers are refused by configuration")
		}
		dec, err := redact.Decode(enc, body, g.cfg.Body.MaxBytes)
		switch {
		case errors.Is(err, redact.ErrTooLarge):
			return g.refuse(502, "body_too_large", "the backend's answer is larger than gdprgate may check")
		case err != nil:
			return g.refuse(502, "body_undecodable", "the backend's answer could not be decompressed")
		}
		body = dec
	}
	if len(body) > g.cfg.Body.MaxBytes {
		return g.refuse(502, "body_too_large", "the backend's answer is larger than gdprgate may check")
	}

	if !r.rootFits(body) {
		// A list where the route map expects a record (or the reverse):
		// no path would select anything, and the values would pass.
		return g.refuse(502, "body_shape", "the backend's answer is not the JSON shape the route map describes")
	}

	var planner redact.Planner
	m := r.fields
	var cp *confirmPlanner
	switch {
	case r.cfg.Subject != nil && r.cfg.Subject.From == config.FromResponseBody:
		id, err := r.subjectIn.Subject(body)
		if err != nil {
			if !errors.Is(err, redact.ErrSubjectNotFound) {
				return g.refuse(502, "body_not_json", "the backend's answer is not valid JSON")
			}
			if resp.Status < 300 {
				return g.refuse(502, "subject_missing", "the backend's answer does not name its subject")
			}
			// An error answer that names no subject: whoever it is about,
			// every mapped field in it is hidden.
			planner = redact.Fixed(0)
			break
		}
		if r.fields == nil {
			// Nothing to redact, but the decision rests on this id: it
			// must be the only one (a client may read another).
			if _, err := r.subjectIn.Select(body); err != nil {
				return g.bodyError(err)
			}
		}
		f := ex.base
		ref := model.SubjectRef{Entity: r.cfg.Subject.Entity, ID: string(id)}
		src, err := g.subjectFacts(ctx, &f, ref, 0, "")
		if err != nil {
			g.metrics.storeErrors.Inc()
		}
		if ok2xx(resp.Status) {
			g.noteOrigin(ref, src, body, r.originIn)
		}
		d, err := g.decide(ctx, f, nil, nil)
		if err != nil {
			return g.refuse(503, "policy_error", "the policy could not decide")
		}
		if !d.Allow {
			v := deny(d.Status, d.Reason, d.Message)
			return Rewritten{Replace: true, Status: v.Status, Body: v.Body, Reason: v.Reason,
				SetHeaders: map[string]string{"content-type": "application/json"}}
		}
		for _, h := range coverageHeaders {
			if c := d.Headers[h]; c != "" {
				set[h] = c
			}
		}
		planner = redact.Fixed(ex.narrow(d.VisibleMask))
	case r.cfg.Subject != nil && r.cfg.Subject.From == config.FromItem:
		ip := g.newItemPlanner(ctx, ex, r.cfg.Subject.Entity)
		ip.now, ip.seen = g.now(), getSeen(len(body))
		defer putSeen(ip)
		if g.batchLookups {
			ip.items, ip.body = m, body
		}
		if ok2xx(resp.Status) {
			defer func() { g.noteItemOrigins(r, ip.unrecorded, body) }()
		}
		planner = ip
	case r.confirmIn != nil && ex.hasSubj:
		// The answer says whom it is about (confirm.go): read with the
		// confirming path as its subject, in the rewrite's one pass.
		cp = &confirmPlanner{ctx: ctx, g: g, ex: ex}
		planner, m = cp, r.confirmIn
	default:
		if ex.hasSubj && ok2xx(resp.Status) {
			g.noteOrigin(ex.subject, ex.origin, body, r.originIn)
		}
		planner = redact.Fixed(ex.visible)
	}
	if m == nil {
		return Rewritten{SetHeaders: set, Reason: "no_fields"}
	}
	var (
		out []byte
		res redact.Result
		err error
	)
	dst := resp.Dst[:0]
	if cap(dst) < len(body) {
		dst = make([]byte, 0, len(body))
	}
	_, span := observe.Start(ctx, "redact.rewrite")
	if u := r.unseen; u.active() && resp.Status < 300 {
		var words [4]uint64 // on the stack for routes of up to 256 fields
		matched := words[:0]
		if n := m.MatchedWords(); n <= len(words) {
			matched = words[:n]
		} else {
			matched = make([]uint64, n)
		}
		if out, res, err = m.RewriteMatched(dst, body, planner, matched); err == nil {
			u.observe(matched, g.metrics.unseen, g.log)
		}
	} else {
		out, res, err = m.Rewrite(dst, body, planner)
	}
	span.End()
	var stale []string // coverage headers of a subject the answer is not about
	if cp != nil {
		var rw *Rewritten
		if rw, stale = g.confirmOutcome(ex, cp, err, resp, body, set); rw != nil {
			return *rw
		}
		if r.fields == nil {
			return Rewritten{SetHeaders: set, RemoveHeaders: stale, Reason: "confirmed"}
		}
	}
	if err != nil {
		return g.bodyError(err)
	}
	one(&g.metrics.bodySeries, g.metrics.bodies, "rewritten").Inc()
	if len(res.Redacted) > 0 {
		set[HeaderRedacted] = strings.Join(res.Redacted, ",")
	}
	if res.Values == 0 {
		return Rewritten{SetHeaders: set, RemoveHeaders: stale, Reason: "nothing_redacted"}
	}
	if enc != "" && enc != "identity" {
		re, err := redact.Encode(enc, out)
		if err != nil {
			return g.refuse(502, "body_unencodable", "the redacted answer could not be re-encoded")
		}
		out = re
	}
	return Rewritten{Modified: true, Body: out, SetHeaders: set, RemoveHeaders: append(slices.Clone(contentDerived), stale...), Reason: "redacted"}
}

// contentDerived are the response headers computed from the backend's
// body: a rewritten answer drops them, as they no longer match it and a
// hash of the original lets a client confirm guesses of redacted values
// (a birth year). content-digest and repr-digest are RFC 9530's successors
// of digest.
var contentDerived = []string{"etag", "content-md5", "digest", "content-digest", "repr-digest"}

// ContentDerived lists the header (and trailer) names computed from the
// backend's body that a rewritten answer must not carry: a front-end that
// forwards trailers drops these from them too.
func ContentDerived() []string { return slices.Clone(contentDerived) }

// bodyError refuses an answer the rewriter could not take, whatever its
// status: invalid JSON under a JSON content type is refused like a 2xx.
func (g *Gate) bodyError(err error) Rewritten {
	switch reason := bodyErrorReason(err); reason {
	case "store_unavailable":
		return g.refuse(503, reason, "gdprgate cannot reach its store; failing closed")
	case "body_not_json":
		return g.refuse(502, reason, "the backend's answer is not valid JSON")
	case "subject_ambiguous":
		return g.refuse(502, reason, "the backend's answer names its subject more than once")
	case "body_shape":
		return g.refuse(502, reason, "the backend's answer is not the JSON shape the route map describes")
	default:
		return g.refuse(502, "body_rejected", "the backend's answer could not be checked")
	}
}

// bodyErrorReason reads a rewrite error as the reason the buffered and the
// streamed paths alike report (the last two arise only when streaming).
func bodyErrorReason(err error) string {
	var pe *plannerError
	switch {
	case errors.As(err, &pe):
		return "store_unavailable"
	case errors.Is(err, redact.ErrInvalidJSON):
		return "body_not_json"
	case errors.Is(err, redact.ErrDuplicateSubject):
		return "subject_ambiguous"
	case errors.Is(err, redact.ErrShape):
		return "body_shape"
	case errors.Is(err, redact.ErrHeldTooLarge):
		return "item_too_large"
	case errors.Is(err, errStreamDecode):
		return "body_undecodable"
	default:
		return "body_rejected"
	}
}

// coverageSet is the coverage headers the decision gave, set on the answer
// whatever becomes of its body.
func (ex *Exchange) coverageSet() map[string]string {
	set := map[string]string{}
	for _, h := range coverageHeaders {
		if c := ex.Verdict.ResponseHeaders[h]; c != "" {
			set[h] = c
		}
	}
	return set
}

// rootFits reports whether the body's top-level value is one the route's
// paths can reach: an object for paths that start with a key, an array for
// paths that start with # (an index fits both). Scalars and null fit: no
// path selects anything in them, and they carry no mapped field.
func (r *route) rootFits(body []byte) bool {
	m := r.fields
	if m == nil {
		m = r.subjectIn
	}
	if m == nil {
		m = r.confirmIn
	}
	if m == nil {
		return true
	}
	obj, arr := m.Root()
	for _, c := range body {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '{':
			return obj
		case '[':
			return arr
		}
		return true
	}
	return true
}

// coverageHeaders are the policy's headers the response carries.
var coverageHeaders = [...]string{HeaderCoverage, HeaderCoverageBits}

// narrow applies the entry point's explicit visible_mask to the mask of a
// subject found in the response: there it can hide more, never show more.
func (ex *Exchange) narrow(mask uint32) uint32 {
	if ex.layer != nil && ex.layer.maskSet {
		return mask & ex.layer.mask
	}
	return mask
}

func (g *Gate) refuse(status int, reason, message string) Rewritten {
	one(&g.metrics.bodySeries, g.metrics.bodies, "refused").Inc()
	v := deny(status, reason, message)
	return Rewritten{Replace: true, Status: status, Body: v.Body, Reason: reason,
		SetHeaders:    map[string]string{"content-type": "application/json"},
		RemoveHeaders: []string{"content-encoding", "etag"}}
}

func isJSON(ct string) bool {
	switch ct {
	case "":
		return false
	case "application/json", "application/json; charset=utf-8":
		return true // what mime.ParseMediaType would say, without its allocations
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// plannerError marks a store failure inside a rewrite.
type plannerError struct{ err error }

func (e *plannerError) Error() string { return "subject facts: " + e.err.Error() }
func (e *plannerError) Unwrap() error { return e.err }

// itemPlanner decides each list item's visibility, once per distinct
// subject of the body.
type itemPlanner struct {
	ctx    context.Context
	g      *Gate
	ex     *Exchange
	base   policy.Facts
	entity string
	// now is the instant the whole answer is judged at (zero: each
	// subject at the time it is read, as a long stream's are).
	now  time.Time
	seen map[string]uint32
	// cached is the store's local-cache reader (nil: it has none),
	// asserted once per answer rather than once per item.
	cached cachedFacts
	// sf holds the facts cached of the item being decided (in the
	// planner: passed to an interface method, a local would escape).
	sf cache.Facts
	// lastKey is what decided the previous item the store answered for,
	// and lastMask the mask it gave: items of a list mostly share their
	// facts, and a mask depends on the facts alone in the response stage.
	lastKey  itemKey
	lastMask uint32
	hasLast  bool
	// unrecorded are the subjects whose origin gdprgate may still learn
	// from this answer, with how it is recorded now.
	unrecorded map[string]cache.OriginSource
	// pre are the facts read ahead for the answer's subjects.
	pre map[string]cache.Facts
	// items and body, when set (BatchLookups), are read ahead for pre at
	// the first subject not in the store's local cache.
	items *redact.Map
	body  []byte
}

// seenMaps are the memories of lists' decisions, kept between answers:
// a big list's map is neither allocated nor grown again for each one.
var seenMaps sync.Pool

// getSeen returns an empty decision memory for a list of size bytes.
func getSeen(size int) map[string]uint32 {
	if m, ok := seenMaps.Get().(map[string]uint32); ok {
		return m
	}
	// About one subject per 400 bytes of list: the map is not grown and
	// rehashed a dozen times for a big answer.
	return make(map[string]uint32, min(size/400, maxPrefetch))
}

// putSeen gives p's decision memory back, emptied (its subject ids must
// not outlive the answer).
func putSeen(p *itemPlanner) {
	if p.seen == nil {
		return
	}
	clear(p.seen)
	seenMaps.Put(p.seen)
	p.seen = nil
}

// cachedFacts is a store that can answer from its local cache alone.
type cachedFacts interface {
	// CachedFactsTo writes ref's facts into dst when its local cache
	// serves them at now, counted as Facts counts a hit, and reports
	// whether it did; ref is not retained.
	CachedFactsTo(ref model.SubjectRef, now time.Time, dst *cache.Facts) bool
}

// localCache is a store with a local cache in front of round trips.
type localCache interface {
	// Cached reports whether ref's facts are served locally now.
	Cached(ref model.SubjectRef, now time.Time) bool
}

// maxPrefetch bounds the distinct subjects of one answer read together;
// the ones past it are read as they come.
const maxPrefetch = 10000

// prefetch reads the facts of the answer's distinct item subjects in one
// call (Store.FactsMany: the local cache's at once, the others in one
// round trip). Anything that goes wrong leaves them to be read one by one
// during the rewrite, which decides as it always does (an invalid body is
// refused there).
func (p *itemPlanner) prefetch(m *redact.Map, body []byte) {
	seen := map[string]bool{}
	var refs []model.SubjectRef
	limit := p.g.cfg.Limits.MaxIDBytes
	err := m.Subjects(body, func(id []byte) {
		if len(refs) >= maxPrefetch || seen[string(id)] || limit > 0 && len(id) > limit {
			return
		}
		seen[string(id)] = true
		refs = append(refs, model.SubjectRef{Entity: p.entity, ID: string(id)})
	})
	if err != nil || len(refs) < 2 {
		return
	}
	ctx, span := observe.Start(p.ctx, "store.facts_many")
	defer span.End()
	fs, err := p.g.store.FactsMany(ctx, refs, p.at())
	if err != nil || len(fs) != len(refs) {
		return
	}
	p.pre = make(map[string]cache.Facts, len(refs))
	for i, ref := range refs {
		p.pre[ref.ID] = fs[i]
	}
}

func (p *itemPlanner) at() time.Time {
	if p.now.IsZero() {
		return p.g.now()
	}
	return p.now
}

func (p *itemPlanner) Visible(id []byte) (uint32, error) {
	if len(p.seen) > 0 {
		if m, ok := p.seen[string(id)]; ok {
			return m, nil
		}
	}
	if p.items == nil && p.pre == nil && p.cached != nil {
		// Warm: the local cache is the memory of this answer's
		// decisions, so an id is neither copied nor remembered here (a
		// 1 MB list's 2,300 distinct subjects cost a map of them, one
		// copy each, for repeats it mostly has not). A repeat reads the
		// same entry (or fresher facts, should the subject change
		// meanwhile) and the policy's memo decides it.
		if p.cached.CachedFactsTo(model.SubjectRef{Entity: p.entity, ID: unsafe.String(unsafe.SliceData(id), len(id))}, p.at(), &p.sf) {
			return p.mask(id, &p.sf, nil)
		}
	}
	// The one copy of the id, for the store, the memo and the origins.
	sid := string(id)
	if p.items != nil {
		// First subject: when the store has it at hand, so probably has
		// it the others of the list (read as they come); when not, they
		// are all read now, together.
		m, body := p.items, p.body
		p.items, p.body = nil, nil
		if c, ok := p.g.store.(localCache); !ok || !c.Cached(model.SubjectRef{Entity: p.entity, ID: sid}, p.at()) {
			p.prefetch(m, body)
		}
	}
	var (
		sf   cache.Facts
		ferr error
	)
	if pf, ok := p.pre[sid]; ok {
		sf = pf
	} else {
		sf, ferr = p.g.store.Facts(p.ctx, model.SubjectRef{Entity: p.entity, ID: sid}, p.at())
	}
	mask, err := p.mask(id, &sf, ferr)
	if err != nil {
		return 0, err
	}
	// Read from the store (or ahead): remembered, so that a repeat is
	// not read again.
	if p.seen == nil {
		p.seen = make(map[string]uint32)
	}
	p.seen[sid] = mask
	return mask, nil
}

// newItemPlanner is the planner of one answer's list items, whose
// subjects are entity's.
func (g *Gate) newItemPlanner(ctx context.Context, ex *Exchange, entity string) *itemPlanner {
	p := &itemPlanner{ctx: ctx, g: g, ex: ex, base: ex.base, entity: entity}
	p.cached, _ = g.store.(cachedFacts)
	return p
}

// itemKey is all of a subject's stored facts that an item's decision
// reads when the store answered: fillFacts (no communication) makes the
// policy's facts from the planner's base and these fields alone, so equal
// keys give equal policy.Facts, hence the same decision. Comparing them is
// a few words, where policy.Facts is 128 bytes with strings.
// TestItemKeyHoldsWhatFillFactsReads keeps it complete.
type itemKey struct {
	known, restricted bool
	coverage          lifecycle.Coverage
	active, archived  uint32
	expired           uint32
	obliviated        uint32
	explicit          uint32
	inherited         uint32
}

func itemKeyOf(sf *cache.Facts) itemKey {
	st := &sf.State
	return itemKey{known: sf.Known, restricted: sf.Restricted, coverage: st.Coverage,
		active: st.Active, archived: st.Archived, expired: st.Expired, obliviated: st.Obliviated,
		explicit: st.CoveredExplicit, inherited: st.CoveredInherited}
}

// mask decides an item whose subject's facts are sf (ferr: the store
// failed, and sf is not read).
func (p *itemPlanner) mask(id []byte, sf *cache.Facts, ferr error) (uint32, error) {
	if ferr != nil {
		// Not remembered: rare, and the policy's memo has it.
		f := p.base
		f.RouteKind = policy.KindList
		if _, err := fillFacts(&f, nil, ferr, 0, ""); !p.base.FailOpen {
			return 0, &plannerError{err}
		}
		return p.decideItem(f)
	}
	if sf.Origin < cache.OriginStated {
		p.unrecordedOrigin(id, sf.Origin)
	}
	k := itemKeyOf(sf)
	if p.hasLast && k == p.lastKey {
		return p.lastMask, nil
	}
	f := p.base
	f.RouteKind = policy.KindList
	_, _ = fillFacts(&f, sf, nil, 0, "")
	mask, err := p.decideItem(f)
	if err != nil {
		return 0, err
	}
	p.lastKey, p.lastMask, p.hasLast = k, mask, true
	return mask, nil
}

// decideItem is the mask the policy gives an item whose facts are f.
func (p *itemPlanner) decideItem(f policy.Facts) (uint32, error) {
	d, err := p.g.decide(p.ctx, f, nil, nil)
	if err != nil {
		return 0, &plannerError{err}
	}
	if !d.Allow {
		return 0, nil
	}
	return p.ex.narrow(d.VisibleMask), nil
}

// unrecordedOrigin notes a subject whose origin this answer may record.
func (p *itemPlanner) unrecordedOrigin(id []byte, src cache.OriginSource) {
	if _, ok := p.unrecorded[string(id)]; ok {
		return
	}
	ref := model.SubjectRef{Entity: p.entity, ID: string(id)}
	if p.g.originPending(ref, p.ex.route.cfg.Subject.OriginFrom != "") {
		return
	}
	if p.unrecorded == nil {
		p.unrecorded = map[string]cache.OriginSource{}
	}
	p.unrecorded[ref.ID] = src
}
