// Package onboard holds the tools that help put gdprgate in front of an
// existing API: Suggest reads the API's OpenAPI 3 or Swagger 2 document and
// drafts a route map — each route's kind, where its data subject is, and a
// proposed sensitivity for every property that looks personal, with the
// reason and a confidence — for a person to review (`gdprgate routes
// suggest`).
package onboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"

	"github.com/gdprgate/gdprgate/internal/yamlfile"
)

// Options tune Suggest.
type Options struct {
	// Source names the document in the draft's header.
	Source string
	// Entity, when set, is the entity of every person subject ("contact"),
	// as the registers' evidence names it; otherwise it is taken from the
	// API's names (contacts/{id} → contact, requester_id → requester).
	Entity string
	// Sensitivities maps each class to a sensitivity id of the registers;
	// missing classes keep the example registers' ids (auxiliary, contact,
	// significant, and health for special data).
	Sensitivities map[Class]string
}

// DefaultSensitivities are the example registers' ids.
var DefaultSensitivities = map[Class]string{
	Auxiliary: "auxiliary", Contact: "contact", Significant: "significant", Special: "health",
}

// Field is one proposed field of a route.
type Field struct {
	Path        string // gjson path into the body
	Class       Class
	Sensitivity string
	Confidence  Confidence
	Reason      string
}

// Subject says where a route's data subject is.
type Subject struct {
	Entity string
	From   string // path, query, header, body, response_body, item
	Name   string // path parameter
	Path   string // JSON path (body, response_body, item)
	// Confirm is where the answer states whom it is about (subject.confirm)
	// for a subject read from the path.
	Confirm string
	Reason  string
}

// Route is one drafted route.
type Route struct {
	Name         string
	Method       string
	Path         string
	Kind         string
	KindReason   string
	Subject      *Subject
	CommType     string
	CommTypeFrom string
	CommTypes    map[string]string
	CommReason   string
	Fields       []Field
	Unclassified []string // properties no rule classified: a person decides
	Notes        []string
}

// Draft is the whole suggestion.
type Draft struct {
	Source, Title, Version, Format string
	Routes                         []Route
	// Deletes are the API's DELETE routes: candidates for wipe steps.
	Deletes []string
	// Skipped are operations left out, with the reason.
	Skipped []string
	// Warnings are problems of the document itself.
	Warnings []string
}

// Suggest reads an OpenAPI 3.x or Swagger 2.0 document (YAML or JSON) and
// drafts a route map.
func Suggest(ctx context.Context, data []byte, o Options) (*Draft, error) {
	doc, format, err := load(ctx, data)
	if err != nil {
		return nil, err
	}
	s := &suggester{o: o, sens: map[Class]string{}}
	for c, id := range DefaultSensitivities {
		s.sens[c] = id
	}
	for c, id := range o.Sensitivities {
		s.sens[c] = id
	}
	d := &Draft{Source: o.Source, Format: format}
	if doc.Info != nil {
		d.Title, d.Version = doc.Info.Title, doc.Info.Version
	}
	if err := doc.Validate(ctx, openapi3.DisableExamplesValidation()); err != nil {
		d.Warnings = append(d.Warnings, "the document does not validate ("+firstLine(err.Error())+"); the draft was made anyway")
	}
	if doc.Paths == nil {
		return d, nil
	}
	paths := doc.Paths.InMatchingOrder()
	sort.Strings(paths)
	for _, p := range paths {
		item := doc.Paths.Value(p)
		for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
			op := item.GetOperation(m)
			if op == nil {
				continue
			}
			s.operation(d, prefixPath(doc, p), m, item, op)
		}
	}
	return d, nil
}

// load parses the document with kin-openapi, converting Swagger 2.0 to
// OpenAPI 3. YAML is read by gdprgate's own YAML reader (line and column on
// errors) and handed over as JSON.
func load(ctx context.Context, data []byte) (*openapi3.T, string, error) {
	js, err := yamlfile.ToJSON(data)
	if err != nil {
		return nil, "", fmt.Errorf("openapi document: %w", err)
	}
	var head struct {
		Swagger string `json:"swagger"`
		OpenAPI string `json:"openapi"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return nil, "", fmt.Errorf("openapi document: not an object: %w", err)
	}
	loader := openapi3.NewLoader()
	loader.Context = ctx
	loader.IsExternalRefsAllowed = false
	switch {
	case strings.HasPrefix(head.Swagger, "2."):
		var d2 openapi2.T
		if err := json.Unmarshal(js, &d2); err != nil {
			return nil, "", fmt.Errorf("swagger 2 document: %w", err)
		}
		d3, err := openapi2conv.ToV3(&d2)
		if err != nil {
			return nil, "", fmt.Errorf("swagger 2 document: %w", err)
		}
		// Reloaded so that every $ref is resolved as in an OpenAPI 3 file.
		b, err := json.Marshal(d3)
		if err != nil {
			return nil, "", fmt.Errorf("swagger 2 document: %w", err)
		}
		doc, err := loader.LoadFromData(b)
		if err != nil {
			return nil, "", fmt.Errorf("swagger 2 document: %w", err)
		}
		return doc, "Swagger " + head.Swagger, nil
	case strings.HasPrefix(head.OpenAPI, "3."):
		doc, err := loader.LoadFromData(js)
		if err != nil {
			return nil, "", fmt.Errorf("openapi document: %w", err)
		}
		return doc, "OpenAPI " + head.OpenAPI, nil
	}
	return nil, "", errors.New(`openapi document: neither "openapi: 3.x" nor "swagger: 2.0" at the top`)
}

// prefixPath puts the first server's path in front (a Swagger basePath
// becomes one), since gdprgate sees the full request path.
func prefixPath(doc *openapi3.T, p string) string {
	if len(doc.Servers) == 0 {
		return p
	}
	u, err := url.Parse(doc.Servers[0].URL)
	if err != nil || u.Path == "" || u.Path == "/" || strings.Contains(u.Path, "{") {
		return p
	}
	return strings.TrimRight(u.Path, "/") + p
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

type suggester struct {
	o    Options
	sens map[Class]string
}

// segments of a path template: literal words and {params}.
func segments(p string) []string {
	var out []string
	for _, s := range strings.Split(strings.Trim(p, "/"), "/") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func isParam(seg string) bool { return strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") }

// entityOf names the kind of thing a collection segment holds.
func (s *suggester) entityOf(collection string, person bool) string {
	if person && s.o.Entity != "" {
		return s.o.Entity
	}
	return singular(strings.ReplaceAll(strings.ToLower(collection), "-", "_"))
}

func (s *suggester) operation(d *Draft, path, method string, item *openapi3.PathItem, op *openapi3.Operation) {
	where := method + " " + path
	segs := segments(path)
	last := ""
	if len(segs) > 0 {
		last = segs[len(segs)-1]
	}
	switch method {
	case "HEAD", "OPTIONS":
		d.Skipped = append(d.Skipped, where+": no body to protect")
		return
	case "DELETE":
		d.Deletes = append(d.Deletes, where)
		return
	}
	r := Route{Name: routeName(op, method, path), Method: method, Path: path}
	// The last {param} and the collection before it.
	paramIdx := -1
	for i := len(segs) - 1; i >= 0; i-- {
		if isParam(segs[i]) {
			paramIdx = i
			break
		}
	}
	var param, collection string
	if paramIdx >= 0 {
		param = strings.Trim(segs[paramIdx], "{}")
		if paramIdx > 0 {
			collection = segs[paramIdx-1]
		}
	}
	lastWords := splitWords(last)
	switch method {
	case "GET":
		resp, ctype := responseSchema(op)
		switch {
		case hasWord(lastWords, "export", "download") || strings.Contains(strings.ToLower(op.OperationID), "export") ||
			ctype != "" && !strings.Contains(ctype, "json"):
			r.Kind = "export"
			r.KindReason = "an export (" + exportReason(lastWords, ctype) + ")"
		case isParam(last):
			r.Kind, r.KindReason = "read", "GET of one item ({"+param+"})"
		case paramIdx >= 0:
			r.Kind, r.KindReason = "read", "GET under one item ({"+param+"}): its data"
		default:
			r.Kind, r.KindReason = "list", "GET of a collection"
		}
		s.subjectAndFields(&r, resp, param, collection, false)
		if r.Kind == "export" && ctype != "" && !strings.Contains(ctype, "json") {
			r.Notes = append(r.Notes, "the answer is "+ctype+", not JSON: gdprgate cannot redact it; the export permission guards it")
			r.Fields = nil
		}
	case "PUT", "PATCH":
		r.Kind, r.KindReason = "write", method+" changes an item (audited as a rectification)"
		s.subjectAndFields(&r, requestSchema(op), param, collection, true)
	case "POST":
		body := requestSchema(op)
		if s.outbound(&r, path, lastWords, body) {
			break
		}
		r.Kind, r.KindReason = "write", "POST creates or changes data"
		s.subjectAndFields(&r, body, param, collection, true)
	}
	if r.Kind == "" {
		return
	}
	if r.Subject == nil && len(r.Fields) > 0 && r.Kind != "write" {
		// A route with fields needs a subject: without one it is left to a
		// person, the fields listed.
		for _, f := range r.Fields {
			r.Unclassified = append(r.Unclassified, f.Path+" (proposed "+string(f.Class)+")")
		}
		r.Fields = nil
		r.Notes = append(r.Notes, "no data subject found: give subject: (where the person's id is) and move the fields back")
	}
	d.Routes = append(d.Routes, r)
}

func exportReason(words []string, ctype string) string {
	if hasWord(words, "export", "download") {
		return "path ends in " + strings.Join(words, "_")
	}
	if ctype != "" && !strings.Contains(ctype, "json") {
		return "answers " + ctype
	}
	return "operationId says export"
}

func hasWord(words []string, any ...string) bool {
	for _, w := range words {
		for _, a := range any {
			if w == a || w == a+"s" {
				return true
			}
		}
	}
	return false
}

func routeName(op *openapi3.Operation, method, path string) string {
	if op.OperationID != "" {
		return op.OperationID
	}
	return method + " " + path
}

// responseSchema is the first 2xx answer's JSON schema (or the first
// content type, for exports).
func responseSchema(op *openapi3.Operation) (*openapi3.Schema, string) {
	if op.Responses == nil {
		return nil, ""
	}
	codes := make([]string, 0)
	for code := range op.Responses.Map() {
		codes = append(codes, code)
	}
	sort.Strings(codes)
	for _, code := range codes {
		if !strings.HasPrefix(code, "2") {
			continue
		}
		rr := op.Responses.Value(code)
		if rr == nil || rr.Value == nil {
			continue
		}
		return pickContent(rr.Value.Content)
	}
	return nil, ""
}

func requestSchema(op *openapi3.Operation) *openapi3.Schema {
	if op.RequestBody == nil || op.RequestBody.Value == nil {
		return nil
	}
	s, _ := pickContent(op.RequestBody.Value.Content)
	return s
}

func pickContent(c openapi3.Content) (*openapi3.Schema, string) {
	if len(c) == 0 {
		return nil, ""
	}
	types := make([]string, 0, len(c))
	for t := range c {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		if strings.Contains(t, "json") && c[t].Schema != nil {
			return c[t].Schema.Value, t
		}
	}
	mt := c[types[0]]
	if mt.Schema != nil {
		return mt.Schema.Value, types[0]
	}
	return nil, types[0]
}

// listWrapper finds the array of items in a collection's answer: the
// answer itself, or its property data/items/results/… (or its only array).
func listWrapper(s *openapi3.Schema) (prefix string, item *openapi3.Schema) {
	s = merged(s)
	if s == nil {
		return "", nil
	}
	if isType(s, "array") && s.Items != nil {
		return "#", merged(s.Items.Value)
	}
	var arrays []string
	for name, p := range s.Properties {
		if p.Value != nil && isType(merged(p.Value), "array") {
			arrays = append(arrays, name)
		}
	}
	sort.Strings(arrays)
	for _, pref := range []string{"data", "items", "results", "records", "content", "entries", "values", "list", "rows"} {
		for _, a := range arrays {
			if strings.EqualFold(a, pref) {
				return a + ".#", merged(merged(s.Properties[a].Value).Items.Value)
			}
		}
	}
	if len(arrays) == 1 {
		it := merged(s.Properties[arrays[0]].Value).Items
		if it != nil {
			return arrays[0] + ".#", merged(it.Value)
		}
	}
	return "", nil
}

// subjectAndFields finds the route's data subject and classifies the body's
// properties. request: the body is the request's (writes).
func (s *suggester) subjectAndFields(r *Route, body *openapi3.Schema, param, collection string, request bool) {
	personColl := collection != "" && personWords[singular(strings.ToLower(collection))]
	prefix, root := "", merged(body)
	if r.Kind == "list" {
		prefix, root = listWrapper(body)
		if root == nil {
			r.Notes = append(r.Notes, "no list of items found in the answer")
			return
		}
	}
	personBody := root != nil && s.looksPersonal(root)
	switch {
	case r.Kind == "list":
		if personBody {
			idProp := idProperty(root)
			if idProp != "" {
				r.Subject = &Subject{Entity: s.entityOf(lastLiteral(r.Path), true), From: "item", Path: joinPath(prefix, idProp),
					Reason: "each item is a person's record; its " + idProp + " names it"}
			}
		}
		if r.Subject == nil {
			if p, ent := personRef(root, ""); p != "" {
				r.Subject = &Subject{Entity: s.personEntity(ent), From: "item", Path: joinPath(prefix, p),
					Reason: "each item points at a person: " + p}
			}
		}
	case param != "" && (personColl || personBody && singular(strings.ToLower(collection)) == s.schemaEntity(root, collection)):
		r.Subject = &Subject{Entity: s.entityOf(collection, true), From: "path", Name: param,
			Reason: "the path parameter {" + param + "} names a " + singular(strings.ToLower(collection))}
	default:
		// Not a person's own route: a property may point at one.
		if p, ent := personRef(root, ""); p != "" {
			from, why := "response_body", "the answer's "+p+" names the person"
			if request {
				from, why = "body", "the request body's "+p+" names the person"
			}
			r.Subject = &Subject{Entity: s.personEntity(ent), From: from, Path: p, Reason: why}
		} else if param != "" && personBody {
			r.Subject = &Subject{Entity: s.entityOf(collection, true), From: "path", Name: param,
				Reason: "the item holds a person's data and {" + param + "} names it"}
		}
	}
	if root != nil {
		s.walk(r, root, prefix, personBody || personColl, 0, map[*openapi3.Schema]bool{})
	}
	if sub := r.Subject; sub != nil && sub.From == "path" && !request && root != nil {
		if c, why := confirmPath(body, root); c != "" && confirmCovers(c, r.Fields) {
			sub.Confirm = c
			sub.Reason += "; " + why
		}
	}
}

// confirmCovers reports whether a confirm path can judge every field: one
// read in a list's items ("calls.#.contact_id") says nothing about fields
// outside that list, and gdprgate refuses such a route map.
func confirmCovers(confirm string, fields []Field) bool {
	i := strings.Index(confirm, "#")
	if i < 0 {
		return true
	}
	for _, f := range fields {
		if !strings.HasPrefix(f.Path, confirm[:i+1]) {
			return false
		}
	}
	return true
}

// confirmPath finds where an answer states whom it is about: the record's
// own id, or a person reference in every item of its list.
func confirmPath(body, root *openapi3.Schema) (path, why string) {
	if id := idProperty(root); id != "" {
		return id, "the answer's " + id + " confirms it (confirm)"
	}
	if p, _ := personRef(root, ""); p != "" && !strings.Contains(p, "#") {
		return p, "the answer's " + p + " confirms it (confirm)"
	}
	if lp, item := listWrapper(body); item != nil {
		if p, _ := personRef(item, ""); p != "" {
			return joinPath(lp, p), "every item's " + p + " confirms it (confirm)"
		}
	}
	return "", ""
}

// schemaEntity guesses an entity name from a schema's title.
func (s *suggester) schemaEntity(sch *openapi3.Schema, fallback string) string {
	if sch != nil && sch.Title != "" {
		return singular(strings.ToLower(sch.Title))
	}
	return singular(strings.ToLower(fallback))
}

func (s *suggester) personEntity(word string) string {
	if s.o.Entity != "" {
		return s.o.Entity
	}
	return word
}

func lastLiteral(p string) string {
	segs := segments(p)
	for i := len(segs) - 1; i >= 0; i-- {
		if !isParam(segs[i]) {
			return segs[i]
		}
	}
	return "subject"
}

func joinPath(prefix, p string) string {
	if prefix == "" {
		return p
	}
	return prefix + "." + p
}

func hasProp(s *openapi3.Schema, name string) bool {
	_, ok := s.Properties[name]
	return ok
}

// idProperty is the property naming an item: id, or <something>_id / uuid.
func idProperty(s *openapi3.Schema) string {
	for _, n := range []string{"id", "uuid", "ID", "Id"} {
		if hasProp(s, n) {
			return n
		}
	}
	return ""
}

// personRef finds a property that points at a person: "<person>_id" or an
// object "<person>" with an id. It returns the JSON path and the person word.
func personRef(s *openapi3.Schema, prefix string) (string, string) {
	s = merged(s)
	if s == nil {
		return "", ""
	}
	names := sortedProps(s)
	for _, n := range names {
		words := splitWords(n)
		if len(words) == 2 && (words[1] == "id" || words[1] == "uuid") && personWords[words[0]] {
			return joinPath(prefix, n), words[0]
		}
	}
	for _, n := range names {
		words := splitWords(n)
		p := merged(s.Properties[n].Value)
		if len(words) == 1 && personWords[singular(words[0])] && p != nil && isType(p, "object") {
			if id := idProperty(p); id != "" {
				return joinPath(joinPath(prefix, n), id), singular(words[0])
			}
		}
	}
	return "", ""
}

// looksPersonal reports whether an object holds a person's own data: it has
// contact data at its top level.
func (s *suggester) looksPersonal(sch *openapi3.Schema) bool {
	if sch.Title != "" && personWords[singular(strings.ToLower(sch.Title))] {
		return true
	}
	n := 0
	for name, p := range sch.Properties {
		v := merged(p.Value)
		if v == nil {
			continue
		}
		if c, ok := classify(name, v.Format, isType(v, "object"), false); ok && (c.class == Contact || c.class == Significant) {
			n++
		}
	}
	return n >= 2
}

// maxDepth bounds the walk through nested (possibly recursive) schemas.
const maxDepth = 8

// walk classifies the properties of an object, descending into objects and
// arrays of objects.
func (s *suggester) walk(r *Route, sch *openapi3.Schema, prefix string, person bool, depth int, seen map[*openapi3.Schema]bool) {
	if sch == nil || depth > maxDepth || seen[sch] {
		return
	}
	seen[sch] = true
	defer delete(seen, sch)
	for _, name := range sortedProps(sch) {
		p := merged(sch.Properties[name].Value)
		if p == nil {
			continue
		}
		path := joinPath(prefix, escapeKey(name))
		isObj, isArr := isType(p, "object") || len(p.Properties) > 0, isType(p, "array")
		var elem *openapi3.Schema
		if isArr && p.Items != nil {
			elem = merged(p.Items.Value)
		}
		format := p.Format
		if elem != nil && format == "" {
			format = elem.Format
		}
		objLike := isObj || elem != nil && (isType(elem, "object") || len(elem.Properties) > 0)
		if v, ok := classify(name, format, objLike, person); ok {
			if r.Subject != nil && r.Subject.From != "path" && strings.HasSuffix(r.Subject.Path, path) && !objLike {
				continue
			}
			r.Fields = append(r.Fields, Field{Path: path, Class: v.class, Sensitivity: s.sens[v.class], Confidence: v.confidence, Reason: v.reason})
			continue
		}
		switch {
		case isObj:
			childPerson := personWords[singular(strings.ToLower(name))] || s.looksPersonal(p)
			s.walk(r, p, path, childPerson, depth+1, seen)
		case elem != nil && (isType(elem, "object") || len(elem.Properties) > 0):
			childPerson := personWords[singular(strings.ToLower(name))] || s.looksPersonal(elem)
			s.walk(r, elem, path+".#", childPerson, depth+1, seen)
		default:
			if r.Subject != nil && (r.Subject.Path == path || r.Subject.Confirm == path || r.Subject.From == "path" && name == "id" && prefix == "") {
				continue // the subject's own id
			}
			if path == "#" || strings.HasSuffix(path, ".#") {
				continue
			}
			r.Unclassified = append(r.Unclassified, path)
		}
	}
}

// escapeKey escapes a property name for a gjson path.
func escapeKey(k string) string {
	var b strings.Builder
	for _, c := range k {
		switch c {
		case '.', '*', '?', '#', '|', '@', '\\', '!', '=', '<', '>', '%':
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func sortedProps(s *openapi3.Schema) []string {
	names := make([]string, 0, len(s.Properties))
	for n := range s.Properties {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func isType(s *openapi3.Schema, t string) bool {
	return s != nil && s.Type != nil && s.Type.Is(t)
}

// merged folds allOf (and, for reading properties, oneOf/anyOf) into one
// schema, so that composed schemas are walked like plain ones.
func merged(s *openapi3.Schema) *openapi3.Schema {
	if s == nil || len(s.AllOf)+len(s.OneOf)+len(s.AnyOf) == 0 {
		return s
	}
	out := *s
	out.Properties = openapi3.Schemas{}
	for k, v := range s.Properties {
		out.Properties[k] = v
	}
	for _, group := range []openapi3.SchemaRefs{s.AllOf, s.OneOf, s.AnyOf} {
		for _, ref := range group {
			if ref == nil || ref.Value == nil {
				continue
			}
			m := merged(ref.Value)
			for k, v := range m.Properties {
				if _, ok := out.Properties[k]; !ok {
					out.Properties[k] = v
				}
			}
			if out.Type == nil && m.Type != nil {
				out.Type = m.Type
			}
			if out.Items == nil && m.Items != nil {
				out.Items = m.Items
			}
			if out.Title == "" {
				out.Title = m.Title
			}
		}
	}
	if out.Type == nil && len(out.Properties) > 0 {
		out.Type = &openapi3.Types{"object"}
	}
	return &out
}

// outbound recognises a route that contacts the subject (a call, an
// e-mail, a message) and needs a permitted communication type.
func (s *suggester) outbound(r *Route, path string, lastWords []string, body *openapi3.Schema) bool {
	words := splitWords(path)
	channel := ""
	switch {
	case hasWord(words, "call", "dial"):
		channel = "oc"
	case hasWord(words, "email", "mail", "newsletter"):
		channel = "m"
	case hasWord(words, "chat"):
		channel = "ch"
	case hasWord(words, "sms", "message", "notification"):
		channel = "m"
	}
	if channel == "" || !(hasWord(words, "outbound") || hasWord(lastWords, "call", "email", "mail", "sms", "message", "send", "dial", "chat")) {
		return false
	}
	body = merged(body)
	p, ent := personRef(body, "")
	if p == "" && !hasPersonParam(path) {
		return false
	}
	r.Kind = "outbound"
	r.KindReason = "POST that contacts a person (" + map[string]string{"oc": "a call", "m": "a message", "ch": "a chat"}[channel] + ")"
	r.Subject = &Subject{Entity: s.personEntity(ent), From: "body", Path: p, Reason: "the request body's " + p + " names the person contacted (Envoy must send the body: with_request_body)"}
	// A person's own {param} in the path is read before any body.
	segs := segments(path)
	for i := len(segs) - 1; i > 0; i-- {
		if isParam(segs[i]) && personWords[singular(strings.ToLower(segs[i-1]))] {
			name := strings.Trim(segs[i], "{}")
			r.Subject = &Subject{Entity: s.entityOf(segs[i-1], true), From: "path", Name: name,
				Reason: "the path parameter {" + name + "} names the " + singular(strings.ToLower(segs[i-1])) + " contacted"}
			break
		}
	}
	// An enum property (type, kind, channel, campaign) says which kind of
	// communication: each value mapped to the manual's type.
	if body == nil {
		body = &openapi3.Schema{}
	}
	for _, name := range sortedProps(body) {
		e := merged(body.Properties[name].Value)
		if e == nil || len(e.Enum) == 0 || !hasWord(splitWords(name), "type", "kind", "mode", "reason", "purpose") {
			continue
		}
		m := map[string]string{}
		var unknown []string
		for _, v := range e.Enum {
			sv := fmt.Sprint(v)
			if ct := commType(sv, channel); ct != "" {
				m[sv] = ct
			} else {
				unknown = append(unknown, sv)
			}
		}
		if len(m) > 0 {
			r.CommTypeFrom, r.CommTypes = name, m
			r.CommReason = "the body's " + name + " says which kind of " + map[string]string{"oc": "call", "m": "message", "ch": "chat"}[channel]
			if len(unknown) > 0 {
				r.Notes = append(r.Notes, "values of "+name+" with no communication type (refused until mapped): "+strings.Join(unknown, ", "))
			}
			return true
		}
	}
	r.CommType = "adhoc_" + channel
	r.CommReason = "a guess (low): nothing in the body says which kind; campaign_" + channel + " for campaigns"
	return true
}

func hasPersonParam(path string) bool {
	segs := segments(path)
	for i := 1; i < len(segs); i++ {
		if isParam(segs[i]) && personWords[singular(strings.ToLower(segs[i-1]))] {
			return true
		}
	}
	return false
}

// commType maps a body value to the manual's communication type.
func commType(v, channel string) string {
	words := splitWords(v)
	switch {
	case hasWord(words, "campaign", "marketing", "newsletter", "bulk"):
		if channel == "m" && hasWord(words, "bulk") {
			return "campaign_bm"
		}
		if channel == "ch" {
			return ""
		}
		return "campaign_" + channel
	case hasWord(words, "callback") && channel == "oc":
		return "callback_oc"
	case hasWord(words, "answer", "reply") && channel == "m":
		return "answer_m"
	case hasWord(words, "return") && channel == "ch":
		return "return_ch"
	case hasWord(words, "adhoc", "ad", "manual", "direct", "service", "transactional"):
		return "adhoc_" + channel
	}
	return ""
}
