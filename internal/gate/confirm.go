package gate

import (
	"context"
	"errors"
	"log/slog"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/canon"
	"github.com/gdprgate/gdprgate/policy"
	"github.com/gdprgate/gdprgate/policy/model"
)

// Subject confirmation. The id gdprgate reads from a request is not always
// the subject the backend answers about: a backend may look ids up
// case-insensitively ("C-2" finds c-2), strip a format suffix (Rails'
// "c-2.json"), ignore leading zeros or whitespace, accept an e-mail address
// for an id, or redirect to a merged record. gdprgate would then judge a
// subject it has never seen — inside its grace period, every bit active —
// and let the real subject's data through.
//
// A route whose subject comes from the request may name where its answer
// states the subject's id (subject.confirm). The response stage reads the
// answer with that path as its subject path, in the same single pass that
// redacts it:
//
//   - an id equal to the request's (byte for byte: the stored subject's id
//     is the truth) costs nothing more;
//   - another id is decided again, as a subject of its own, and the answer
//     shows only what both decisions allow (the request's visible mask AND
//     the answer subject's); a denial for the answer's subject (wiped,
//     restricted, obliviated) replaces the answer with that denial;
//   - a 2xx JSON answer that does not state the id is refused (502
//     subject_missing); an error answer without it has every mapped field
//     hidden; a second id in the same scope is 502 subject_ambiguous.
//
// Origins are learnt only from ids the answer states. The backend acts on a
// write or an outbound call before it answers, so confirmation protects what
// such an answer shows, not the action: subject.id_pattern is the guard
// there (Gate.subjectID).

// ConfirmsSubject reports whether the allowed request's answer will say
// whom it is about (subject.confirm): its coverage headers are then those
// of the response stage (Rewrite), which may differ from the request's.
func (ex *Exchange) ConfirmsSubject() bool {
	return ex.Mapped() && ex.Verdict.Allow && ex.hasSubj && ex.route.confirmIn != nil
}

// SpellingUnguarded reports whether only the answer (subject.confirm) can
// tell which subject the allowed request is about, the route having no
// subject.id_pattern: a front-end that never sees the answer (the HTTP
// authz mode) then judges another spelling of an id as a subject never
// seen.
func (ex *Exchange) SpellingUnguarded() bool {
	return ex.ConfirmsSubject() && ex.route.idPattern == nil
}

// errAnswerDenied aborts a rewrite whose answer is about a subject the
// caller may not see at all.
var errAnswerDenied = errors.New("gate: the answer's subject is denied")

// errAnswerID refuses an answer whose subject id gdprgate would not accept
// in a request (too long, control characters).
var errAnswerID = errors.New("gate: the answer's subject id is not usable")

// confirmPlanner is the redact.Planner of a confirmed route's answer.
type confirmPlanner struct {
	ctx context.Context
	g   *Gate
	ex  *Exchange
	// called: the answer stated an id (single subject: it has one).
	called bool
	// matched: some stated id was the request's.
	matched bool
	// others are the stated ids that were not, in order of appearance.
	others []answerSubject
	// denied is the decision that refused one of them, deniedID its id.
	denied   *policy.Decision
	deniedID string
}

// answerSubject is a subject the answer named under an id the request did
// not.
type answerSubject struct {
	id      string
	mask    uint32
	src     cache.OriginSource
	headers map[string]string
}

func (p *confirmPlanner) Visible(id []byte) (uint32, error) {
	p.called = true
	if string(id) == p.ex.subject.ID {
		p.matched = true
		return p.ex.visible, nil
	}
	for i := range p.others {
		if p.others[i].id == string(id) {
			return p.others[i].mask, nil
		}
	}
	ref := model.SubjectRef{Entity: p.ex.subject.Entity, ID: string(id)}
	if canon.ID(ref.ID, p.g.cfg.Limits.MaxIDBytes) != nil {
		return 0, errAnswerID
	}
	f := p.ex.base
	src, err := p.g.subjectFacts(p.ctx, &f, ref, 0, "")
	if err != nil {
		p.g.metrics.storeErrors.Inc()
		if !p.ex.base.FailOpen {
			return 0, &plannerError{err}
		}
	}
	d, err := p.g.decide(p.ctx, f, nil, nil)
	if err != nil {
		return 0, &plannerError{err}
	}
	if !d.Allow {
		p.denied, p.deniedID = &d, ref.ID
		return 0, errAnswerDenied
	}
	a := answerSubject{id: ref.ID, mask: p.ex.visible & p.ex.narrow(d.VisibleMask), src: src, headers: d.Headers}
	p.others = append(p.others, a)
	return a.mask, nil
}

// confirmOutcome finishes the response stage of a confirmed route once the
// answer has been read: nil to go on with the rewritten answer, else the
// replacement. set receives the coverage headers of the subject the answer
// turned out to be about; remove names those the front-end may already
// have sent for the request's subject and that no longer apply.
func (g *Gate) confirmOutcome(ex *Exchange, p *confirmPlanner, err error, resp *Response, body []byte, set map[string]string) (replace *Rewritten, remove []string) {
	r := ex.route
	switch {
	case p.denied != nil:
		g.noteAlias(ex, p.deniedID, "denied")
		// The request was, in effect, about this subject: its denial.
		v := deny(p.denied.Status, p.denied.Reason, p.denied.Message)
		one(&g.metrics.bodySeries, g.metrics.bodies, "refused").Inc()
		return &Rewritten{Replace: true, Status: v.Status, Body: v.Body, Reason: v.Reason,
			SetHeaders:    map[string]string{"content-type": "application/json"},
			RemoveHeaders: append([]string{"content-encoding", "etag"}, coverageHeaders[:]...)}, nil
	case errors.Is(err, errAnswerID):
		out := g.refuse(502, "subject_invalid", "the backend's answer states a subject id gdprgate cannot use")
		return &out, nil
	case err != nil:
		out := g.bodyError(err)
		return &out, nil
	case !p.called && !r.confirmIn.PerElement() && ok2xx(resp.Status):
		g.metrics.confirm.WithLabelValues(r.cfg.Name, "missing").Inc()
		out := g.refuse(502, "subject_missing", "the backend's answer does not state which subject it is about")
		return &out, nil
	}
	if len(p.others) > 0 {
		g.noteAlias(ex, p.others[0].id, "alias")
		for _, h := range coverageHeaders {
			delete(set, h)
		}
		remove = coverageHeaders[:]
		if !p.matched && len(p.others) == 1 {
			// About one subject, under another id: its coverage.
			for _, h := range coverageHeaders {
				if c := p.others[0].headers[h]; c != "" {
					set[h] = c
				}
			}
		}
	}
	if ok2xx(resp.Status) {
		single := !r.confirmIn.PerElement()
		if p.matched {
			g.noteOrigin(ex.subject, ex.origin, bodyIf(single, body), r.originIn)
		}
		for _, a := range p.others {
			g.noteOrigin(model.SubjectRef{Entity: ex.subject.Entity, ID: a.id}, a.src, bodyIf(single, body), r.originIn)
		}
	}
	return nil, remove
}

// bodyIf gives the body to origin_from only when the answer is about one
// subject.
func bodyIf(single bool, body []byte) []byte {
	if single {
		return body
	}
	return nil
}

// noteAlias counts and logs an answer about another subject (id) than the
// request named. A write has already acted on it: a warning.
func (g *Gate) noteAlias(ex *Exchange, id, result string) {
	g.metrics.confirm.WithLabelValues(ex.route.cfg.Name, result).Inc()
	level := slog.LevelInfo
	if ex.route.cfg.Kind == policy.KindWrite {
		level = slog.LevelWarn
	}
	if !g.log.Enabled(context.Background(), level) {
		return
	}
	g.log.LogAttrs(context.Background(), level, "the answer is about another subject than the request named",
		slog.String("decision_id", ex.DecisionID), slog.String("route", ex.RouteName()),
		slog.String("requested", g.subjectLabel(ex.subject)),
		slog.String("answered", g.subjectLabel(model.SubjectRef{Entity: ex.subject.Entity, ID: id})),
		slog.String("result", result))
}
