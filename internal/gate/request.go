package gate

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/gdprgate/gdprgate/internal/canon"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/identity"
)

// reading is a request as gdprgate reads it: the method a backend acts on
// and the canonical target (internal/canon). Every front-end goes through
// it, so Check, ext_proc, the proxy and the HTTP authz mode cannot read the
// same request differently.
type reading struct {
	method string
	target canon.Target
}

// badRequest answers a request gdprgate refuses to read.
func badRequest(err error) Verdict {
	var ce *canon.Error
	if errors.As(err, &ce) {
		return deny(http.StatusBadRequest, ce.Reason, ce.Message)
	}
	return deny(http.StatusBadRequest, "bad_request", "the request cannot be read")
}

// read canonicalises the method and the target.
func read(req *Request) (reading, error) {
	m, err := canon.Method(req.Method)
	if err != nil {
		return reading{}, err
	}
	t, err := canon.Parse(req.Path)
	if err != nil {
		return reading{}, err
	}
	return reading{method: m, target: t}, nil
}

// errOverrideUnseen: a form POST to a path mapped for other methods, whose
// body (and so its _method field) gdprgate was not given.
var errOverrideUnseen = &canon.Error{Reason: "method_override_unverifiable",
	Message: "a form POST to this path may override its method in its body, which gdprgate did not receive (send the request body to gdprgate)"}

// effectiveMethod applies method overrides (canon.ReadOverride): the
// request is judged as the method the backend acts on, or refused.
func (rd *reading) effectiveMethod(tbl *table, req *Request) error {
	ov, err := canon.ReadOverride(req.Header, rd.target.RawQuery)
	if err != nil {
		return err
	}
	if rd.method == http.MethodPost {
		haveBody := len(req.Body) > 0 || strings.TrimSpace(req.Header("content-length")) == "0"
		ok, err := ov.AddForm(req.Header("content-type"), req.Body, haveBody)
		if err != nil {
			return err
		}
		if !ok && ov.Method == "" && tbl.mappedElsewhere(http.MethodPost, rd.target.Path) {
			if !req.ResponseOnly {
				return errOverrideUnseen
			}
			// The response plan (ext_proc): the request decision was made
			// with the body, or refused. Plan for the reading that shows
			// the most, a GET of the path: over-redacting a POST's answer
			// costs nothing.
			if r, _ := tbl.match(http.MethodGet, rd.target.Path); r != nil {
				rd.method = http.MethodGet
				return nil
			}
		}
	}
	m, err := ov.Effective(rd.method)
	if err != nil {
		return err
	}
	rd.method = m
	return nil
}

// bodyFields reads the route's subject and communication type from the
// request body (canon.BodyFields). A query parameter named like the first
// key of one of those paths must agree with it: Rails merges query
// parameters over body parameters, PHP's $_REQUEST body over query.
func (r *route) bodyFields(body []byte, rawQuery string) ([]canon.Field, error) {
	f, err := canon.BodyFields(body, r.bodyPaths)
	if err != nil {
		return nil, err
	}
	if rawQuery == "" {
		return f, nil
	}
	for i, p := range r.bodyPaths {
		v, found, err := canon.Query(rawQuery, p[0])
		if err != nil {
			return nil, err
		}
		if found && (len(p) > 1 || !f[i].Found || v != f[i].Value) {
			return nil, &canon.Error{Reason: canon.ReasonAmbiguousQuery,
				Message: "the query and the body both name " + p[0] + ", and backends merge them differently"}
		}
	}
	return f, nil
}

// subjectID reads the subject id of a request whose subject the request
// names (path, query, header or body). "" with a nil error means the
// request does not name it.
func (g *Gate) subjectID(r *route, rd *reading, req *Request, param string, body []canon.Field) (string, error) {
	s := r.cfg.Subject
	var id string
	switch s.From {
	case config.FromPath:
		id = param
	case config.FromQuery:
		v, _, err := canon.Query(rd.target.RawQuery, s.Name)
		if err != nil {
			return "", err
		}
		id = v
	case config.FromHeader:
		v, err := canon.Header(req.Header(strings.ToLower(s.Name)), s.Name)
		if err != nil {
			return "", err
		}
		id = v
	case config.FromBody:
		f := body[r.bodySubject]
		switch {
		case !f.Found:
			return "", nil
		case f.Kind == canon.KindString:
			id = f.Value
		case f.Kind == canon.KindNumber && isInteger(f.Value):
			id = f.Value
		default:
			return "", &canon.Error{Reason: "subject_invalid", Message: "the request body's subject must be a string or an integer"}
		}
	}
	if id == "" {
		return "", nil
	}
	if err := canon.ID(id, g.cfg.Limits.MaxIDBytes); err != nil {
		return "", err
	}
	if r.idPattern != nil && !r.idPattern.MatchString(id) {
		// Another spelling of an id may reach the same record (a backend
		// that looks ids up case-insensitively, strips a format suffix or
		// leading zeros) while gdprgate would judge a subject never seen.
		return "", errNotCanonical
	}
	return id, nil
}

// errNotCanonical refuses a request id the route's subject.id_pattern does
// not admit.
var errNotCanonical = &canon.Error{Reason: "subject_id_not_canonical",
	Message: "the subject id is not spelled the way the backend spells its ids"}

// isInteger accepts the one spelling every parser reads as the same
// integer: no fraction, exponent, sign or leading zero.
func isInteger(s string) bool {
	if s == "" || s[0] == '0' && len(s) > 1 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// project is the caller's project for same_project legalisations, judged
// like the roles header: from a verified token's project claim, or from the
// project header where identity headers are trusted (no JWT, or
// trust_roles_header); a repeated header is refused.
func (g *Gate) project(req *Request, caller identity.Caller) (string, error) {
	if caller.Project != "" {
		return caller.Project, nil
	}
	if !g.ident.HeadersTrusted() {
		return "", nil
	}
	return canon.Header(req.Header(g.cfg.Identity.ProjectHeader), g.cfg.Identity.ProjectHeader)
}

// IdentityHeaders are the request headers the decision reads the caller
// from (roles, caller, project, archive mode), lower-case. Front-ends that
// run before another gdprgate stage (ext_authz before ext_proc) leave them
// in the request for it.
func (g *Gate) IdentityHeaders() []string { return g.identityHeaders }

// RequestBodyMatters reports whether the decision on a request (its method
// and request target, as a front-end received them) may depend on its
// body, so that the front-end must read the body before Check. It is false
// only when the path is mapped under no method (no override read from a
// form body can lead to a route either) and nothing else reads requests
// whole: no policy entry point, no decision log. A front-end may then pass
// the body to the backend as it streams in, unread. Anything unusual (an
// unreadable target, no registers) answers true: Check decides as always.
func (g *Gate) RequestBodyMatters(ctx context.Context, method, target string) bool {
	if g.engine.Layered() || g.dlog != nil {
		return true
	}
	if _, err := canon.Method(method); err != nil {
		return true
	}
	t, err := canon.Parse(target)
	if err != nil {
		return true
	}
	ix, err := g.store.Registers(ctx)
	if err != nil {
		return true
	}
	tbl, err := g.routes(ix)
	if err != nil {
		return true
	}
	return tbl.mappedAny(t.Path)
}

// MaxBodyBytes is body.max_bytes: the largest answer Rewrite checks. A
// front-end that collects a streamed answer for Rewrite stops there.
func (g *Gate) MaxBodyBytes() int { return g.cfg.Body.MaxBytes }

// StreamAbove is body.stream_above: a mapped answer known to be at most
// this long is rewritten whole rather than streamed (-1: never streamed).
func (g *Gate) StreamAbove() int { return g.cfg.Body.StreamAbove }
