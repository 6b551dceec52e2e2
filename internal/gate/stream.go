package gate

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/redact"
)

// ErrStreamAborted is matched (errors.Is) by every error of a BodyStream:
// the answer cannot be finished safely and the front-end must abort the
// response (reset the stream, close the connection). What was released
// before holds only rewritten items.
var ErrStreamAborted = errors.New("gate: streamed answer aborted")

// StreamError is a BodyStream's error; Reason is the metric label and the
// logged reason (never personal data).
type StreamError struct {
	Reason string
	err    error
}

func (e *StreamError) Error() string { return "gate: streamed answer aborted: " + e.Reason }

// Is lets callers test errors.Is(err, ErrStreamAborted).
func (e *StreamError) Is(target error) bool { return target == ErrStreamAborted }

// Unwrap gives the cause (it may name a subject id: do not log it).
func (e *StreamError) Unwrap() error { return e.err }

// streamSeenMax bounds the decisions a streamed list remembers: a body of
// millions of subjects is decided again for a subject seen more than this
// many distinct subjects ago.
const streamSeenMax = 16384

// BodyStream rewrites one answer's body as it arrives, chunk by chunk,
// with bounded memory. Its output is byte-identical to what Rewrite would
// have produced for the whole body. It is used by one goroutine.
type BodyStream struct {
	g     *Gate
	ex    *Exchange
	start time.Time
	// rs is nil for an answer passed through unchanged.
	rs      *redact.Stream
	root    *route
	checked bool // the body's first byte was checked against the route's shape
	matched []uint64
	status  int
	// some: a body byte arrived (before any decoding). An empty body is no
	// body, as Rewrite reads it: passed, not refused as invalid JSON.
	some  bool
	codec *streamCodec
	err   error
	done  bool
}

// RewriteStream prepares the streamed rewrite of an answer whose headers
// (resp.Status, resp.Header, resp.Head; resp.Body nil) have arrived.
//
// ok == false: this answer needs the whole body (a subject confirmed by or
// read from the answer without a list, a communication route, origin_from,
// shadow mode…) — the front-end buffers it and calls Rewrite as before.
// ok == true with head.Replace: the answer is refused from its headers
// alone (send head.Status/head.Body instead; s is nil). Otherwise the
// front-end applies head's header changes (content-length is always among
// RemoveHeaders: the length changes), then passes every body chunk through
// s.Write and the end of the body through s.Close. An error from either
// (errors.Is ErrStreamAborted) means the front-end aborts the response —
// never finish it normally. A streamed answer has no x-gdpr-redacted
// header: which fields were redacted is known at the end only.
func (g *Gate) RewriteStream(ctx context.Context, ex *Exchange, resp *Response) (s *BodyStream, head Rewritten, ok bool) {
	if ex == nil || ex.Shadow() || ex.comm != nil {
		return nil, Rewritten{}, false
	}
	set := ex.coverageSet()
	s = &BodyStream{g: g, ex: ex, start: time.Now(), status: resp.Status}
	pass := Rewritten{SetHeaders: set, Reason: "no_body"}
	if !ex.NeedsBody() || resp.Head || resp.Status == 204 || resp.Status == 304 {
		g.Observe(ex, resp.Status)
		s.done = true // nothing to count at Close: counted here
		g.metrics.decision("response", "allow", pass.Reason).Inc()
		return s, pass, true
	}
	r := ex.route
	if r.confirmIn != nil && ex.hasSubj {
		return nil, Rewritten{}, false
	}
	if !isJSON(resp.Header("content-type")) {
		if g.cfg.Body.NonJSON == "pass" {
			one(&g.metrics.bodySeries, g.metrics.bodies, "passed_non_json").Inc()
			s.done = true
			g.metrics.decision("response", "allow", "non_json_passed").Inc()
			return s, Rewritten{SetHeaders: set, Reason: "non_json_passed"}, true
		}
		return nil, s.refused(g.refuse(502, "body_not_json", "the backend's answer is not JSON and cannot be checked")), true
	}
	enc := strings.TrimSpace(strings.ToLower(resp.Header("content-encoding")))
	if enc != "" && enc != "identity" {
		if g.cfg.Body.Compressed == "refuse" {
			return nil, s.refused(g.refuse(502, "body_compressed", "compressed answers are refused by configuration")), true
		}
		c, err := newStreamCodec(enc)
		if err != nil {
			// An encoding gdprgate cannot stream: buffered, Rewrite
			// decides (and refuses what it cannot decode).
			return nil, Rewritten{}, false
		}
		s.codec = c
	}
	var (
		planner redact.Planner
		item    func([]byte)
	)
	m := r.fields
	switch {
	case r.cfg.Subject != nil && r.cfg.Subject.From == config.FromResponseBody:
		return nil, Rewritten{}, false
	case r.cfg.Subject != nil && r.cfg.Subject.From == config.FromItem:
		sp := &streamItemPlanner{ip: *g.newItemPlanner(ctx, ex, r.cfg.Subject.Entity), r: r, record: ok2xx(resp.Status)}
		planner = sp
		item = sp.item
	default:
		if r.originIn != nil {
			return nil, Rewritten{}, false
		}
		if ex.hasSubj && ok2xx(resp.Status) {
			g.noteOrigin(ex.subject, ex.origin, nil, nil)
		}
		planner = redact.Fixed(ex.visible)
	}
	head = Rewritten{SetHeaders: set, RemoveHeaders: append([]string{"content-length"}, contentDerived...), Reason: "streamed"}
	if m == nil {
		s.done = true
		g.metrics.decision("response", "allow", "no_fields").Inc()
		head.RemoveHeaders, head.Reason = nil, "no_fields"
		return s, head, true
	}
	opt := redact.StreamOptions{MaxHeld: g.cfg.Body.StreamItemMaxBytes, Item: item}
	if u := r.unseen; u.active() && resp.Status < 300 {
		s.matched = make([]uint64, m.MatchedWords())
		opt.Matched = s.matched
	}
	rs, err := m.NewStream(planner, opt)
	if err != nil {
		return nil, Rewritten{}, false
	}
	s.rs, s.root = rs, r
	if s.codec != nil {
		s.codec.start(ctx, s)
	}
	return s, head, true
}

// refused counts a refusal decided from the headers.
func (s *BodyStream) refused(rw Rewritten) Rewritten {
	s.g.metrics.decision("response", "deny", rw.Reason).Inc()
	return rw
}

// Write appends to dst the redacted output of chunk that can be released
// now and returns the extended slice. chunk is not retained.
func (s *BodyStream) Write(dst, chunk []byte) ([]byte, error) {
	if s.err != nil {
		return dst, s.err
	}
	if s.rs == nil {
		return append(dst, chunk...), nil
	}
	if len(chunk) > 0 {
		s.some = true
	}
	if s.codec != nil {
		var err error
		if dst, err = s.codec.write(dst, chunk); err != nil {
			return dst, s.fail(err)
		}
		return dst, nil
	}
	dst, err := s.rewrite(dst, chunk)
	if err != nil {
		return dst, s.fail(err)
	}
	return dst, nil
}

// rewrite passes decoded bytes through the redact stream.
func (s *BodyStream) rewrite(dst, chunk []byte) ([]byte, error) {
	if !s.checked {
		for _, c := range chunk {
			switch c {
			case ' ', '\t', '\n', '\r':
				continue
			}
			s.checked = true
			if !s.root.rootFits([]byte{c}) {
				return dst, &StreamError{Reason: "body_shape"}
			}
			break
		}
	}
	return s.rs.Write(dst, chunk)
}

// Close ends the body: it appends the rest of the output to dst. An error
// means the body was invalid or could not be checked; the front-end aborts
// the response.
func (s *BodyStream) Close(dst []byte) ([]byte, error) {
	if s.err != nil {
		return dst, s.err
	}
	if s.rs == nil {
		return dst, nil
	}
	if !s.some {
		return s.empty(dst), nil
	}
	var (
		res redact.Result
		err error
	)
	if s.codec != nil {
		dst, res, err = s.codec.close(dst)
	} else {
		dst, res, err = s.rs.Close(dst)
	}
	if err != nil {
		return dst, s.fail(err)
	}
	s.rs = nil
	g := s.g
	if s.matched != nil {
		s.root.unseen.observe(s.matched, g.metrics.unseen, g.log)
	}
	reason := "nothing_redacted"
	if res.Values > 0 {
		reason = "redacted"
	}
	one(&g.metrics.bodySeries, g.metrics.bodies, "rewritten").Inc()
	g.metrics.decision("response", "allow", reason).Inc()
	g.metrics.latencyOf("response").Observe(time.Since(s.start).Seconds())
	return dst, nil
}

// empty ends a stream that got no body byte at all: Rewrite passes an
// empty body (no_body), so the stream does too, with nothing to append.
func (s *BodyStream) empty(dst []byte) []byte {
	if s.codec != nil {
		s.codec.abandon()
	}
	_, _, _ = s.rs.Close(nil) // it fails (no value), which frees it
	s.rs = nil
	g := s.g
	g.metrics.decision("response", "allow", "no_body").Inc()
	g.metrics.latencyOf("response").Observe(time.Since(s.start).Seconds())
	return dst
}

// fail ends the stream: counted, logged without the cause's text (a
// planner's error names the subject), and returned from every later call.
func (s *BodyStream) fail(err error) error {
	var se *StreamError
	if !errors.As(err, &se) {
		se = &StreamError{Reason: bodyErrorReason(err), err: err}
	}
	s.err = se
	s.rs = nil
	g := s.g
	one(&g.metrics.bodySeries, g.metrics.bodies, "aborted").Inc()
	g.metrics.decision("response", "deny", se.Reason).Inc()
	g.metrics.streamAborted.WithLabelValues(se.Reason).Inc()
	g.log.Warn("streamed answer aborted", "decision_id", s.ex.DecisionID, "route", s.ex.RouteName(), "reason", se.Reason)
	return se
}

// streamItemPlanner is itemPlanner with a bounded memory of decisions and
// origins recorded as the items pass.
type streamItemPlanner struct {
	ip     itemPlanner
	r      *route
	record bool // a 2xx answer: first-seen origins are recorded
}

func (p *streamItemPlanner) Visible(id []byte) (uint32, error) {
	if len(p.ip.seen) >= streamSeenMax {
		clear(p.ip.seen)
	}
	return p.ip.Visible(id)
}

// item is called with each list item once rewritten: the origins of its
// subject, first met, are recorded (from origin_from when the route has it).
func (p *streamItemPlanner) item(b []byte) {
	if len(p.ip.unrecorded) == 0 {
		return
	}
	if p.record {
		var stated map[string][]byte
		if sc := p.r.cfg.Subject; sc.OriginFrom != "" {
			stated = map[string][]byte{}
			if id, v, ok := itemValue(b, sc.Path, sc.OriginFrom); ok {
				stated[id] = v
			}
		}
		p.ip.g.noteOrigins(p.r, p.ip.unrecorded, stated)
	}
	clear(p.ip.unrecorded)
}
