// Package yamlfile reads gdprgate's YAML files (the --config file, the
// registers/seed file, route maps) with one YAML library
// (go.yaml.in/yaml/v3) and one behaviour: every mistake is reported with
// its line and column, an unknown field names the field probably meant, a
// key given twice is refused (a YAML reader that keeps the first and one
// that keeps the last would read different files), and a value of the wrong
// kind says what was expected.
//
// Decode checks a document against the Go type it is read into, field by
// field, before decoding: types tagged `yaml:` are then decoded by the YAML
// library, types tagged `json:` (the registers, shared with the admin API)
// are converted to JSON and decoded strictly by encoding/json.
package yamlfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gdprgate/gdprgate/internal/suggest"
)

// Error is one problem in a file, with where it is.
type Error struct {
	Line, Column int
	Path         string // the field, as a JSON path ("evidence[3].origin"); may be ""
	Msg          string
}

func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.Line > 0 && e.Column > 0:
		fmt.Fprintf(&b, "line %d, column %d: ", e.Line, e.Column)
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a file, in file order.
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n  ")
}

// maxErrors bounds the problems reported for one file: past that the file
// is probably not of the expected kind at all.
const maxErrors = 25

// Options tune Decode.
type Options struct {
	// Tag is the struct tag naming fields: "yaml" (decoded by the YAML
	// library) or "json" (converted to JSON and decoded by encoding/json).
	Tag string
	// Time parses a value given for a time.Time field. Nil: RFC 3339 only.
	// Its error is shown as the reason, so it should explain the syntax.
	Time func(string) (time.Time, error)
}

// Parse reads a YAML document into its node tree. An empty document gives
// a nil node. A syntax error carries the line.
func Parse(data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, syntaxError(err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// syntaxError rewrites the YAML library's "yaml: line 3: ..." (and its list
// of "line N: ..." decoding errors) as Errors.
func syntaxError(err error) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var es Errors
	for _, msg := range msgs {
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			n, _ := strconv.Atoi(m[1])
			es = append(es, &Error{Line: n, Msg: m[2]})
		} else {
			es = append(es, &Error{Msg: msg})
		}
	}
	if len(es) == 1 {
		return es[0]
	}
	return es
}

// Decode checks data against out's type and decodes it into out. An empty
// document leaves out as it is.
func Decode(data []byte, out any, o Options) error {
	root, err := Parse(data)
	if err != nil || root == nil {
		return err
	}
	return DecodeNode(root, out, o)
}

// DecodeNode is Decode of an already parsed document.
func DecodeNode(root *yaml.Node, out any, o Options) error {
	if o.Tag == "" {
		o.Tag = "yaml"
	}
	w := &walker{o: o}
	var js *bytes.Buffer
	if o.Tag == "json" {
		js = &bytes.Buffer{}
	}
	w.walk(root, reflect.TypeOf(out).Elem(), "", js)
	if len(w.errs) > 0 {
		sort.SliceStable(w.errs, func(i, j int) bool {
			a, b := w.errs[i], w.errs[j]
			return a.Line < b.Line || a.Line == b.Line && a.Column < b.Column
		})
		return w.errs
	}
	if o.Tag == "yaml" {
		if err := root.Decode(out); err != nil {
			return syntaxError(err)
		}
		return nil
	}
	dec := json.NewDecoder(js)
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		// The walk checks what encoding/json checks; this is a backstop.
		return &Error{Line: root.Line, Column: root.Column, Msg: strings.TrimPrefix(err.Error(), "json: ")}
	}
	return nil
}

type walker struct {
	o    Options
	errs Errors
}

func (w *walker) fail(n *yaml.Node, path, format string, args ...any) {
	if len(w.errs) >= maxErrors {
		return
	}
	w.errs = append(w.errs, &Error{Line: n.Line, Column: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

var (
	timeType     = reflect.TypeFor[time.Time]()
	durationType = reflect.TypeFor[time.Duration]()
	rawType      = reflect.TypeFor[json.RawMessage]()
)

// walk checks n against t and, when js is not nil, writes n as JSON for t.
func (w *walker) walk(n *yaml.Node, t reflect.Type, path string, js *bytes.Buffer) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if isNull(n) {
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface:
		default:
			if t != timeType && w.o.Tag == "json" {
				w.fail(n, path, "cannot be null (want %s)", describe(t))
			}
		}
		put(js, "null")
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		w.scalarTime(n, path, js)
		return
	case t == durationType && w.o.Tag == "yaml":
		if w.scalar(n, path, t) {
			if _, err := time.ParseDuration(n.Value); err != nil {
				if _, ierr := strconv.ParseInt(n.Value, 10, 64); ierr != nil {
					w.fail(n, path, "%q is not a duration: write it like 30s, 500ms, 2m or 1h30m", n.Value)
				}
			}
		}
		return
	case t == rawType:
		w.any(n, js)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		w.mapping(n, t, path, js)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.fail(n, path, "want a mapping (key: value lines), got %s", kindOf(n))
			return
		}
		put(js, "{")
		first := true
		w.pairs(n, path, func(k, v *yaml.Node) {
			if !first {
				put(js, ",")
			}
			first = false
			putString(js, k.Value)
			put(js, ":")
			w.walk(v, t.Elem(), join(path, k.Value), js)
		})
		put(js, "}")
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			w.fail(n, path, "want a list, got %s", kindOf(n))
			return
		}
		put(js, "[")
		for i, e := range n.Content {
			if i > 0 {
				put(js, ",")
			}
			w.walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), js)
		}
		put(js, "]")
	case reflect.Interface:
		w.any(n, js)
	case reflect.String:
		if w.scalar(n, path, t) {
			putString(js, n.Value)
		}
	case reflect.Bool:
		if w.scalar(n, path, t) {
			if n.Value != "true" && n.Value != "false" {
				w.fail(n, path, "want true or false, got %q", n.Value)
			}
			put(js, n.Value)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if w.scalar(n, path, t) {
			v, ok := w.integer(n, path, t)
			if ok {
				put(js, v)
			}
		}
	case reflect.Float32, reflect.Float64:
		if w.scalar(n, path, t) {
			f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
			if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
				w.fail(n, path, "want a number, got %q", n.Value)
				return
			}
			put(js, strconv.FormatFloat(f, 'g', -1, 64))
		}
	default:
		w.fail(n, path, "cannot be read from YAML (%s)", t)
	}
}

// scalar reports whether n is a scalar, failing otherwise.
func (w *walker) scalar(n *yaml.Node, path string, t reflect.Type) bool {
	if n.Kind == yaml.ScalarNode {
		return true
	}
	w.fail(n, path, "want %s, got %s", describe(t), kindOf(n))
	return false
}

func (w *walker) integer(n *yaml.Node, path string, t reflect.Type) (string, bool) {
	s := strings.ReplaceAll(n.Value, "_", "")
	unsigned := t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64
	bits := t.Bits()
	if unsigned {
		v, err := strconv.ParseUint(strings.TrimPrefix(s, "+"), 0, bits)
		if err != nil {
			w.fail(n, path, "want a whole number from 0 to %d, got %q", uint64(1)<<bits-1, n.Value)
			return "", false
		}
		return strconv.FormatUint(v, 10), true
	}
	v, err := strconv.ParseInt(s, 0, bits)
	if err != nil {
		w.fail(n, path, "want a whole number, got %q", n.Value)
		return "", false
	}
	return strconv.FormatInt(v, 10), true
}

func (w *walker) scalarTime(n *yaml.Node, path string, js *bytes.Buffer) {
	if n.Kind != yaml.ScalarNode {
		w.fail(n, path, "want a time, got %s", kindOf(n))
		return
	}
	parse := w.o.Time
	if parse == nil {
		parse = func(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }
	}
	t, err := parse(n.Value)
	if err != nil {
		w.fail(n, path, "%v", err)
		return
	}
	putString(js, t.UTC().Format(time.RFC3339Nano))
}

// mapping checks a struct's keys: each known, none twice.
func (w *walker) mapping(n *yaml.Node, t reflect.Type, path string, js *bytes.Buffer) {
	if n.Kind != yaml.MappingNode {
		w.fail(n, path, "want a mapping (key: value lines), got %s", kindOf(n))
		return
	}
	fields := structFields(t, w.o.Tag)
	put(js, "{")
	first := true
	w.pairs(n, path, func(k, v *yaml.Node) {
		f, ok := fields[k.Value]
		if !ok {
			names := make([]string, 0, len(fields))
			for name := range fields {
				names = append(names, name)
			}
			sort.Strings(names)
			hint := suggest.DidYouMean(k.Value, names, nil)
			if hint == "" {
				hint = " (known: " + strings.Join(names, ", ") + ")"
			}
			w.fail(k, path, "unknown field %q%s", k.Value, hint)
			return
		}
		if !first {
			put(js, ",")
		}
		first = false
		putString(js, k.Value)
		put(js, ":")
		w.walk(v, f, join(path, k.Value), js)
	})
	put(js, "}")
}

// pairs calls fn for each key and value of a mapping, merges (<<) applied,
// refusing a key given twice and keys that are not plain scalars.
func (w *walker) pairs(n *yaml.Node, path string, fn func(k, v *yaml.Node)) {
	seen := map[string]*yaml.Node{}
	var merged [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			w.fail(k, path, "a key must be a plain word, not %s", kindOf(k))
			continue
		}
		if k.Value == "<<" && k.Tag == "!!merge" {
			merged = append(merged, w.mergeSources(v, path)...)
			continue
		}
		if first, dup := seen[k.Value]; dup {
			w.fail(k, path, "%q is given twice (first at line %d)", k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		fn(k, v)
	}
	// Merged keys count only where the mapping does not set them itself.
	for _, kv := range merged {
		if _, own := seen[kv[0].Value]; own {
			continue
		}
		seen[kv[0].Value] = kv[0]
		fn(kv[0], kv[1])
	}
}

func (w *walker) mergeSources(v *yaml.Node, path string) [][2]*yaml.Node {
	for v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	var out [][2]*yaml.Node
	switch v.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(v.Content); i += 2 {
			out = append(out, [2]*yaml.Node{v.Content[i], v.Content[i+1]})
		}
	case yaml.SequenceNode:
		for _, e := range v.Content {
			out = append(out, w.mergeSources(e, path)...)
		}
	default:
		w.fail(v, path, "<< merges a mapping (or a list of them), not %s", kindOf(v))
	}
	return out
}

// any writes a node whose Go type is not fixed as the YAML library types it.
func (w *walker) any(n *yaml.Node, js *bytes.Buffer) {
	if js == nil {
		return
	}
	var v any
	if err := n.Decode(&v); err != nil {
		for _, e := range AsErrors(syntaxError(err)) {
			if len(w.errs) < maxErrors {
				w.errs = append(w.errs, e)
			}
		}
		return
	}
	b, err := json.Marshal(jsonable(v))
	if err != nil {
		w.fail(n, "", "cannot be written as JSON: %v", err)
		return
	}
	js.Write(b)
}

// jsonable turns the YAML library's map[string]any trees (with non-string
// keys possible) into JSON-marshalable values.
func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = jsonable(e)
		}
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	}
	return v
}

// structFields maps a struct's field names (by tag) to their types,
// embedded structs' fields included.
func structFields(t reflect.Type, tag string) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get(tag), ",")
		if name == "-" && opts == "" {
			continue
		}
		inline := strings.Contains(","+opts+",", ",inline,")
		if f.Anonymous && (name == "" || inline) {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range structFields(ft, tag) {
					if _, ok := out[k]; !ok {
						out[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
			if tag == "yaml" {
				name = strings.ToLower(name)
			}
		}
		out[name] = f.Type
	}
	return out
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindOf(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func describe(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a text"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Slice, reflect.Array:
		return "a list"
	}
	return t.String()
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func put(js *bytes.Buffer, s string) {
	if js != nil {
		js.WriteString(s)
	}
}

func putString(js *bytes.Buffer, s string) {
	if js != nil {
		b, _ := json.Marshal(s)
		js.Write(b)
	}
}

// Locate finds the node at a JSON path such as "legalisations[2].purpose_id"
// or "config.default_sensitivity" and returns its position. For a path that
// ends in a key the document does not have ("subjects[0].origin" when the
// origin is missing), it returns the position of the deepest node found.
func Locate(root *yaml.Node, path string) (line, col int) {
	n := root
	if n == nil {
		return 0, 0
	}
	line, col = n.Line, n.Column
	for _, step := range splitPath(path) {
		for n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		var next *yaml.Node
		if idx, ok := step.index(); ok {
			if n.Kind == yaml.SequenceNode && idx < len(n.Content) {
				next = n.Content[idx]
			}
		} else if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == string(step) {
					next = n.Content[i+1]
					break
				}
			}
		}
		if next == nil {
			return line, col
		}
		n = next
		line, col = n.Line, n.Column
	}
	return line, col
}

type pathStep string

func (s pathStep) index() (int, bool) {
	if !strings.HasPrefix(string(s), "[") {
		return 0, false
	}
	i, err := strconv.Atoi(strings.Trim(string(s), "[]"))
	return i, err == nil
}

// splitPath splits "a[2].b.c[0]" into a, [2], b, c, [0].
func splitPath(p string) []pathStep {
	var out []pathStep
	for _, part := range strings.Split(p, ".") {
		for part != "" {
			i := strings.IndexByte(part, '[')
			switch {
			case i < 0:
				out = append(out, pathStep(part))
				part = ""
			case i > 0:
				out = append(out, pathStep(part[:i]))
				part = part[i:]
			default:
				j := strings.IndexByte(part, ']')
				if j < 0 {
					out = append(out, pathStep(part))
					part = ""
					continue
				}
				out = append(out, pathStep(part[:j+1]))
				part = part[j+1:]
			}
		}
	}
	return out
}

// AsErrors returns err's Errors (one Error counts as a list of one), or nil
// when err is of another kind.
func AsErrors(err error) Errors {
	var es Errors
	if errors.As(err, &es) {
		return es
	}
	var e *Error
	if errors.As(err, &e) {
		return Errors{e}
	}
	return nil
}

// ToJSON converts one YAML document, whatever its shape, to JSON (for
// documents read by another program's JSON decoder, such as an Envoy
// bootstrap for protojson). A key given twice is refused.
func ToJSON(data []byte) ([]byte, error) {
	root, err := Parse(data)
	if err != nil {
		return nil, err
	}
	if root == nil {
		return []byte("null"), nil
	}
	return nodeJSON(root)
}

func nodeJSON(n *yaml.Node) ([]byte, error) {
	w := &walker{}
	var js bytes.Buffer
	w.any(n, &js)
	if len(w.errs) > 0 {
		return nil, w.errs
	}
	return js.Bytes(), nil
}

// Documents splits a stream of YAML documents (separated by ---) and
// converts each non-empty one to JSON.
func Documents(data []byte) ([][]byte, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out [][]byte
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, syntaxError(err)
		}
		if len(doc.Content) == 0 || isNull(doc.Content[0]) {
			continue
		}
		js, err := nodeJSON(doc.Content[0])
		if err != nil {
			return nil, err
		}
		out = append(out, js)
	}
}
