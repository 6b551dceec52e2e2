package policy

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"strconv"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
)

// Request is the HTTP request a decision is about. Only policies that read
// input.attributes, input.parsed_*, input.version, input.truncated_body or
// input.now need it; the default policy does not, and a nil *Request is
// then fine.
type Request struct {
	// Attributes is Envoy's CheckRequest.attributes, or one a front-end
	// synthesised in the same shape (proxy, HTTP authz mode, ext_proc).
	// When it is nil the fields below describe the request instead.
	Attributes *authv3.AttributeContext

	Method string
	// Path is the request path, optionally with "?query" (as Envoy sends it).
	Path   string
	Host   string
	Scheme string
	// Headers are lower-cased header names with their (joined) values.
	Headers map[string]string
	// RawQuery is the query string without '?', used when Path has none.
	RawQuery string
	// Body is an already parsed JSON request body (nil: none or not JSON);
	// it is used as parsed_body when Attributes carry no body.
	Body any
	// Now is input.now; zero means the time of the decision.
	Now time.Time
}

// InputError is a request that cannot be turned into the policy input (an
// undecodable path or query, a body that does not parse as its
// content-type says). opa-envoy-plugin answers these with 400; so does
// gdprgate.
type InputError struct{ Err error }

func (e *InputError) Error() string { return "policy input: " + e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// versionV3 is input.version as opa-envoy-plugin sets it for ext_authz v3.
var versionV3 = ast.NewObject(
	ast.Item(ast.StringTerm("ext_authz"), ast.StringTerm("v3")),
	ast.Item(ast.StringTerm("encoding"), ast.StringTerm("protojson")),
)

// factsInput is gdprgate's facts as input objects. They appear both at the
// top level (route, caller, subject, config, store: what the default
// policy reads) and under input.gdpr.
func factsInput(f *Facts) ast.Object {
	roles := []*ast.Term{}
	if f.Roles != "" {
		for r := range strings.SplitSeq(f.Roles, ",") {
			roles = append(roles, ast.StringTerm(r))
		}
	}
	return ast.NewObject(
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
		ast.Item(ast.StringTerm("write"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("mask"), maskTerm(f.WriteMask)),
		)),
	)
}

// buildInput builds the policy input directly as an ast.Value: gdprgate's
// facts (f may be nil on routes outside the route map) at the top level and
// under input.gdpr, plus, with a request, everything opa-envoy-plugin puts
// into its input, in its shape.
func buildInput(f *Facts, req *Request) (ast.Value, error) {
	obj := ast.NewObject()
	if f != nil {
		obj = factsInput(f)
		// input.gdpr holds the same terms as the top level: every fact
		// key, including ones added to factsInput later.
		gdpr := ast.NewObject()
		obj.Foreach(func(k, v *ast.Term) { gdpr.Insert(k, v) })
		obj.Insert(ast.StringTerm("gdpr"), ast.NewTerm(gdpr))
	}
	if req == nil {
		return obj, nil
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	obj.Insert(ast.StringTerm("now"), ast.StringTerm(now.UTC().Format(time.RFC3339Nano)))

	attrs := req.Attributes
	if attrs == nil {
		attrs = synthesise(req)
	}
	obj.Insert(ast.StringTerm("attributes"), ast.NewTerm(protoValue(attrs.ProtoReflect())))
	obj.Insert(ast.StringTerm("version"), ast.NewTerm(versionV3))

	h := attrs.GetRequest().GetHttp()
	parsedPath, parsedQuery, err := parsePathAndQuery(h.GetPath())
	if err != nil {
		return nil, &InputError{err}
	}
	obj.Insert(ast.StringTerm("parsed_path"), ast.NewTerm(parsedPath))
	obj.Insert(ast.StringTerm("parsed_query"), ast.NewTerm(parsedQuery))

	body, truncated, err := parseBody(h.GetHeaders(), h.GetBody(), h.GetRawBody())
	if err != nil {
		return nil, &InputError{err}
	}
	if body == nil && req.Body != nil && req.Attributes == nil {
		if body, err = ast.InterfaceToValue(req.Body); err != nil {
			return nil, &InputError{err}
		}
	}
	if body == nil {
		body = ast.Null{}
	}
	obj.Insert(ast.StringTerm("parsed_body"), ast.NewTerm(body))
	obj.Insert(ast.StringTerm("truncated_body"), ast.BooleanTerm(truncated))
	if p := attrs.GetSource().GetPrincipal(); p != "" {
		obj.Insert(ast.StringTerm("source_principal"), ast.StringTerm(p))
	}
	return obj, nil
}

// synthesise gives a request described by fields the shape of Envoy's
// attributes.
func synthesise(req *Request) *authv3.AttributeContext {
	p, rawQuery, hasQuery := strings.Cut(req.Path, "?")
	if !hasQuery {
		rawQuery = req.RawQuery
	}
	full := p
	if rawQuery != "" {
		full = p + "?" + rawQuery
	}
	headers := make(map[string]string, len(req.Headers))
	for k, v := range req.Headers {
		headers[strings.ToLower(k)] = v
	}
	return &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
		Method: req.Method, Path: full, Host: req.Host, Scheme: req.Scheme, Headers: headers,
	}}}
}

// parsePathAndQuery gives parsed_path and parsed_query as opa-envoy-plugin
// does: the whole path percent-decoded, then split on "/" after the leading
// slashes; the query as name -> list of values. Undecodable input is an
// error, not a guess.
func parsePathAndQuery(path string) (ast.Value, ast.Value, error) {
	rawPath, rawQuery, _ := strings.Cut(path, "?")
	decoded, err := url.PathUnescape(rawPath)
	if err != nil {
		return nil, nil, fmt.Errorf("path: %w", err)
	}
	parts := strings.Split(strings.TrimLeft(decoded, "/"), "/")
	segs := make([]*ast.Term, len(parts))
	for i, s := range parts {
		segs[i] = ast.StringTerm(s)
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, nil, fmt.Errorf("query: %w", err)
	}
	return ast.NewArray(segs...), valuesObject(q), nil
}

func valuesObject(q map[string][]string) ast.Object {
	obj := ast.NewObject()
	for k, vs := range q {
		vals := make([]*ast.Term, len(vs))
		for i, v := range vs {
			vals[i] = ast.StringTerm(v)
		}
		obj.Insert(ast.StringTerm(k), ast.ArrayTerm(vals...))
	}
	return obj
}

// parseBody gives parsed_body and truncated_body with opa-envoy-plugin's
// rules: JSON, URL-encoded forms and multipart forms are parsed when the
// content-type says so; a body shorter than its content-length, or marked
// partial by Envoy, is truncated and not parsed.
func parseBody(headers map[string]string, body string, raw []byte) (ast.Value, bool, error) {
	if headers["x-envoy-auth-partial-body"] == "true" {
		return nil, true, nil
	}
	ct, ok := headers["content-type"]
	if !ok {
		return nil, false, nil
	}
	if body == "" {
		body = string(raw)
	}
	if body == "" {
		return nil, false, nil
	}
	if cl, ok := headers["content-length"]; ok {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil {
			return nil, false, fmt.Errorf("content-length: %w", err)
		}
		if n != -1 && n > int64(len(body)) {
			return nil, true, nil
		}
	}
	switch {
	case strings.Contains(ct, "application/json"):
		var v any
		if err := util.UnmarshalJSON([]byte(body), &v); err != nil {
			return nil, false, fmt.Errorf("JSON body: %w", err)
		}
		val, err := ast.InterfaceToValue(v)
		return val, false, err
	case strings.Contains(ct, "application/x-www-form-urlencoded"):
		q, err := url.ParseQuery(body)
		if err != nil {
			return nil, false, fmt.Errorf("form body: %w", err)
		}
		return valuesObject(q), false, nil
	case strings.Contains(ct, "multipart/form-data"):
		return parseMultipart(ct, body)
	}
	return nil, false, nil
}

func parseMultipart(ct, body string) (ast.Value, bool, error) {
	_, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil, false, fmt.Errorf("multipart body: %w", err)
	}
	boundary, ok := params["boundary"]
	if !ok {
		return nil, false, nil
	}
	values := ast.NewObject()
	mr := multipart.NewReader(strings.NewReader(body), boundary)
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, false, fmt.Errorf("multipart body: %w", err)
		}
		name := p.FormName()
		if name == "" {
			continue
		}
		data, err := io.ReadAll(p)
		if err != nil {
			return nil, false, fmt.Errorf("multipart body: %w", err)
		}
		var v *ast.Term
		if strings.Contains(p.Header.Get("Content-Type"), "application/json") {
			var x any
			if err := util.UnmarshalJSON(data, &x); err != nil {
				return nil, false, fmt.Errorf("multipart body part %q: %w", name, err)
			}
			val, err := ast.InterfaceToValue(x)
			if err != nil {
				return nil, false, err
			}
			v = ast.NewTerm(val)
		} else {
			v = ast.StringTerm(string(data))
		}
		key := ast.StringTerm(name)
		if prev := values.Get(key); prev != nil {
			values.Insert(key, ast.NewTerm(prev.Value.(*ast.Array).Append(v)))
		} else {
			values.Insert(key, ast.ArrayTerm(v))
		}
	}
	return values, false, nil
}

// protoValue converts a message the way opa-envoy-plugin presents
// CheckRequests to policies: JSON (lowerCamelCase) field names, only the
// fields that are set, Structs as plain objects, bytes as standard base64,
// enums as numbers and other messages (Timestamp too) field by field.
func protoValue(m protoreflect.Message) ast.Value {
	if s, ok := m.Interface().(*structpb.Struct); ok {
		v, err := ast.InterfaceToValue(s.AsMap())
		if err != nil {
			return ast.NewObject()
		}
		return v
	}
	obj := ast.NewObject()
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		key := ast.StringTerm(fd.JSONName())
		switch {
		case fd.IsMap():
			mv := ast.NewObject()
			v.Map().Range(func(k protoreflect.MapKey, x protoreflect.Value) bool {
				mv.Insert(ast.StringTerm(k.String()), ast.NewTerm(scalarOrMessage(fd.MapValue(), x)))
				return true
			})
			obj.Insert(key, ast.NewTerm(mv))
		case fd.IsList():
			l := v.List()
			terms := make([]*ast.Term, l.Len())
			for i := range l.Len() {
				terms[i] = ast.NewTerm(scalarOrMessage(fd, l.Get(i)))
			}
			obj.Insert(key, ast.ArrayTerm(terms...))
		default:
			obj.Insert(key, ast.NewTerm(scalarOrMessage(fd, v)))
		}
		return true
	})
	return obj
}

func scalarOrMessage(fd protoreflect.FieldDescriptor, v protoreflect.Value) ast.Value {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return protoValue(v.Message())
	case protoreflect.BoolKind:
		return ast.Boolean(v.Bool())
	case protoreflect.StringKind:
		return ast.String(v.String())
	case protoreflect.BytesKind:
		return ast.String(base64.StdEncoding.EncodeToString(v.Bytes()))
	case protoreflect.EnumKind:
		return ast.Number(strconv.FormatInt(int64(v.Enum()), 10))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return ast.Number(strconv.FormatInt(v.Int(), 10))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return ast.Number(strconv.FormatUint(v.Uint(), 10))
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return ast.Number(strconv.FormatFloat(v.Float(), 'g', -1, 64))
	}
	return ast.Null{}
}

func maskTerm(m uint32) *ast.Term { return ast.IntNumberTerm(int(m)) }

// InputJSON is the input the policy sees for f and req, as a JSON value
// (for decision logs).
func InputJSON(f *Facts, req *Request) (map[string]any, error) {
	v, err := buildInput(f, req)
	if err != nil {
		return nil, err
	}
	j, err := ast.JSON(v)
	if err != nil {
		return nil, err
	}
	m, _ := j.(map[string]any)
	return m, nil
}
