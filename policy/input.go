package policy

import (
	"net/url"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Request is the HTTP request a decision is about. Only policies that read
// input.attributes, input.parsed_* or input.now need it; the default policy
// does not, and a nil *Request is then fine.
type Request struct {
	Method string
	// Path is the request path, optionally with "?query" (as Envoy sends it).
	Path   string
	Host   string
	Scheme string
	// Headers are lower-cased header names with their (joined) values.
	Headers map[string]string
	// RawQuery is the query string without '?', used when Path has none.
	RawQuery string
	// Body is the parsed JSON request body (nil: none or not JSON).
	Body any
	// Now is input.now; zero means the time of the decision.
	Now time.Time
}

// buildInput builds the policy input directly as an ast.Value, in the shape
// of the opa-envoy-plugin input plus gdprgate's facts.
func buildInput(f *Facts, req *Request) (ast.Value, error) {
	roles := []*ast.Term{}
	if f.Roles != "" {
		for r := range strings.SplitSeq(f.Roles, ",") {
			roles = append(roles, ast.StringTerm(r))
		}
	}
	obj := ast.NewObject(
		ast.Item(ast.StringTerm("route"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("kind"), ast.StringTerm(f.RouteKind)),
			ast.Item(ast.StringTerm("comm_type"), ast.StringTerm(f.CommType)),
		)),
		ast.Item(ast.StringTerm("caller"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("authenticated"), ast.BooleanTerm(f.Authenticated)),
			ast.Item(ast.StringTerm("roles"), ast.ArrayTerm(roles...)),
			ast.Item(ast.StringTerm("sensitivity_mask"), maskTerm(f.SensitivityMask)),
			ast.Item(ast.StringTerm("view_archived"), ast.BooleanTerm(f.ViewArchived)),
			ast.Item(ast.StringTerm("view_expired"), ast.BooleanTerm(f.ViewExpired)),
			ast.Item(ast.StringTerm("export_evidence"), ast.BooleanTerm(f.ExportEvidence)),
			ast.Item(ast.StringTerm("edit_items"), ast.BooleanTerm(f.EditItems)),
			ast.Item(ast.StringTerm("edit_evidence"), ast.BooleanTerm(f.EditEvidence)),
			ast.Item(ast.StringTerm("gdpr_permission"), ast.BooleanTerm(f.GdprPermission)),
			ast.Item(ast.StringTerm("archive_mode"), ast.BooleanTerm(f.ArchiveMode)),
		)),
		ast.Item(ast.StringTerm("subject"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("present"), ast.BooleanTerm(f.SubjectPresent)),
			ast.Item(ast.StringTerm("known"), ast.BooleanTerm(f.SubjectKnown)),
			ast.Item(ast.StringTerm("restricted"), ast.BooleanTerm(f.Restricted)),
			ast.Item(ast.StringTerm("active"), maskTerm(f.Active)),
			ast.Item(ast.StringTerm("archived"), maskTerm(f.Archived)),
			ast.Item(ast.StringTerm("expired"), maskTerm(f.Expired)),
			ast.Item(ast.StringTerm("obliviated"), maskTerm(f.Obliviated)),
			ast.Item(ast.StringTerm("coverage"), ast.StringTerm(f.Coverage)),
			ast.Item(ast.StringTerm("coverage_explicit"), maskTerm(f.CoverageExplicit)),
			ast.Item(ast.StringTerm("coverage_inherited"), maskTerm(f.CoverageInherited)),
			ast.Item(ast.StringTerm("comm_permitted"), ast.BooleanTerm(f.CommPermitted)),
		)),
		ast.Item(ast.StringTerm("config"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("gdpr_enforced"), ast.BooleanTerm(f.Enforced)),
			ast.Item(ast.StringTerm("fail_open"), ast.BooleanTerm(f.FailOpen)),
		)),
		ast.Item(ast.StringTerm("store"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("unavailable"), ast.BooleanTerm(f.Unavailable)),
		)),
	)
	if req == nil {
		return obj, nil
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	obj.Insert(ast.StringTerm("now"), ast.StringTerm(now.UTC().Format(time.RFC3339Nano)))

	p, rawQuery, hasQuery := strings.Cut(req.Path, "?")
	if !hasQuery {
		rawQuery = req.RawQuery
	}
	fullPath := p
	if rawQuery != "" {
		fullPath = p + "?" + rawQuery
	}
	headers := ast.NewObject()
	for k, v := range req.Headers {
		headers.Insert(ast.StringTerm(strings.ToLower(k)), ast.StringTerm(v))
	}
	obj.Insert(ast.StringTerm("attributes"), ast.ObjectTerm(
		ast.Item(ast.StringTerm("request"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("http"), ast.ObjectTerm(
				ast.Item(ast.StringTerm("method"), ast.StringTerm(req.Method)),
				ast.Item(ast.StringTerm("path"), ast.StringTerm(fullPath)),
				ast.Item(ast.StringTerm("host"), ast.StringTerm(req.Host)),
				ast.Item(ast.StringTerm("scheme"), ast.StringTerm(req.Scheme)),
				ast.Item(ast.StringTerm("headers"), ast.NewTerm(headers)),
			)),
		)),
	))

	// parsed_path: the path's segments, unescaped, without the leading "/".
	segs := []*ast.Term{}
	if trimmed := strings.TrimPrefix(p, "/"); trimmed != "" {
		for s := range strings.SplitSeq(trimmed, "/") {
			if u, err := url.PathUnescape(s); err == nil {
				s = u
			}
			segs = append(segs, ast.StringTerm(s))
		}
	}
	obj.Insert(ast.StringTerm("parsed_path"), ast.ArrayTerm(segs...))

	query := ast.NewObject()
	if q, err := url.ParseQuery(rawQuery); err == nil {
		for k, vs := range q {
			vals := make([]*ast.Term, len(vs))
			for i, v := range vs {
				vals[i] = ast.StringTerm(v)
			}
			query.Insert(ast.StringTerm(k), ast.ArrayTerm(vals...))
		}
	}
	obj.Insert(ast.StringTerm("parsed_query"), ast.NewTerm(query))

	if req.Body != nil {
		body, err := ast.InterfaceToValue(req.Body)
		if err != nil {
			return nil, err
		}
		obj.Insert(ast.StringTerm("parsed_body"), ast.NewTerm(body))
	}
	return obj, nil
}

func maskTerm(m uint32) *ast.Term { return ast.IntNumberTerm(int(m)) }
