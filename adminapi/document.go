package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync"

	"github.com/gdprgate/gdprgate/policy/model"
)

// How a request body becomes a Go value. encoding/json is lenient where an
// admin API must not be: it leaves a field that is absent (or null) at its
// zero value, matches member names case-insensitively and lets the last of
// two equal names win. A PUT of {"suspend_wipes":true} then stores
// gdpr_enforced=false, and {"gdpr_enforced":true,"GDPR_ENFORCED":false} is
// read differently by us and by a proxy or log parser in front of us. So
// every body is first walked token by token against the type it will be
// decoded into (shape), and only then decoded.

// maxDepth bounds the nesting of a request document (the deepest register
// document is four levels deep).
const maxDepth = 32

// fieldInfo is one JSON member of a struct type.
type fieldInfo struct {
	t        reflect.Type
	nullable bool // a pointer: null is a value
	optional bool // omitempty: a whole document may leave it out
}

var fieldCache sync.Map // reflect.Type -> map[string]fieldInfo

// jsonFields lists the JSON members of struct type t as encoding/json sees
// them: tag names, embedded structs flattened, outer fields winning.
func jsonFields(t reflect.Type) map[string]fieldInfo {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]fieldInfo)
	}
	m := map[string]fieldInfo{}
	var embedded []reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" && opts == "" {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			embedded = append(embedded, f.Type)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = fieldInfo{t: f.Type, nullable: f.Type.Kind() == reflect.Pointer, optional: strings.Contains(","+opts+",", ",omitempty,")}
	}
	for _, et := range embedded {
		for name, fi := range jsonFields(et) {
			if _, outer := m[name]; !outer {
				m[name] = fi
			}
		}
	}
	fieldCache.Store(t, m)
	return m
}

// shapeOpts say what a document must look like besides its type.
type shapeOpts struct {
	// whole: every member that is not omitempty must be present (PUT).
	whole bool
	// absentNull: in a whole document, a missing nullable member counts as
	// null (the result of a merge patch, where null removes a member).
	absentNull bool
	// extra are top-level members the handler takes out itself ("confirm").
	extra map[string]bool
	// optional are top-level members a whole document may leave out (the
	// key, given by the URL).
	optional map[string]bool
}

// requestError is a refused body: 400 for what cannot be read one way only,
// 422 (fields) for what is readable but incomplete.
type requestError struct {
	status      int
	code, msg   string
	fields      []model.FieldError
	decodeError error // answered by answerDecodeError
}

func (e *requestError) Error() string { return e.msg }

func (e *requestError) answer(w http.ResponseWriter, limit int64) {
	switch {
	case e.decodeError != nil:
		answerDecodeError(w, e.decodeError, limit)
	case len(e.fields) > 0:
		writeValidation(w, e.fields)
	default:
		writeError(w, e.status, e.code, e.msg)
	}
}

// pending splits a parse result: nil or an incomplete document (its
// missing members, to report with the validation) is ok; anything else is
// a refusal to answer.
func (e *requestError) pending() ([]model.FieldError, bool) {
	if e == nil {
		return nil, true
	}
	if e.status == http.StatusUnprocessableEntity && e.decodeError == nil {
		return e.fields, true
	}
	return nil, false
}

func badShape(code, format string, args ...any) *requestError {
	return &requestError{status: http.StatusBadRequest, code: code, msg: fmt.Sprintf(format, args...)}
}

type shape struct {
	opts   shapeOpts
	fields []model.FieldError
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func where(path string) string {
	if path == "" {
		return " at the top level"
	}
	return " in " + path
}

func (s *shape) value(dec *json.Decoder, t reflect.Type, nullable bool, path string, depth int) error {
	if depth > maxDepth {
		return badShape("malformed_json", "the document is nested deeper than %d levels", maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return &requestError{decodeError: err}
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch v := tok.(type) {
	case nil:
		if depth == 0 {
			return badShape("malformed_json", "the body is null; a JSON object is expected")
		}
		// null for a list or map is the empty one (encoding/json writes nil
		// slices as null); for anything else it would silently become the
		// zero value: false, 0, "", an empty config.
		if !nullable && t != nil && t.Kind() != reflect.Slice && t.Kind() != reflect.Map {
			s.fields = append(s.fields, model.FieldError{Field: path, Reason: "must not be null"})
		}
	case json.Delim:
		switch v {
		case '{':
			return s.object(dec, t, path, depth)
		case '[':
			var et reflect.Type
			if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
				et = t.Elem()
			}
			for i := 0; dec.More(); i++ {
				if err := s.value(dec, et, et != nil && et.Kind() == reflect.Pointer, fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil {
				return &requestError{decodeError: err}
			}
		}
	}
	// Scalars of the wrong type are reported by the decoder.
	return nil
}

func (s *shape) object(dec *json.Decoder, t reflect.Type, path string, depth int) error {
	var fields map[string]fieldInfo
	var elem reflect.Type
	isStruct := t != nil && t.Kind() == reflect.Struct && t != timeType
	switch {
	case isStruct:
		fields = jsonFields(t)
	case t != nil && t.Kind() == reflect.Map:
		elem = t.Elem()
	}
	seen := map[string]bool{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return &requestError{decodeError: err}
		}
		key, _ := kt.(string)
		// Token unescapes: "typ\u0065" and "type" are the same member.
		if seen[key] {
			return badShape("duplicate_field", "member %q appears twice%s; a document must say each thing once", key, where(path))
		}
		seen[key] = true
		kp := joinPath(path, key)
		if !isStruct {
			if err := s.value(dec, elem, elem != nil && elem.Kind() == reflect.Pointer, kp, depth+1); err != nil {
				return err
			}
			continue
		}
		fi, ok := fields[key]
		if !ok {
			if depth == 0 && s.opts.extra[key] {
				if err := s.value(dec, nil, true, kp, depth+1); err != nil {
					return err
				}
				continue
			}
			for name := range fields {
				if strings.EqualFold(name, key) {
					return badShape("unknown_field", "unknown field %q%s (member names are case-sensitive: %q)", key, where(path), name)
				}
			}
			return badShape("unknown_field", "unknown field %q%s", key, where(path))
		}
		if err := s.value(dec, fi.t, fi.nullable, kp, depth+1); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return &requestError{decodeError: err}
	}
	if isStruct && s.opts.whole {
		var missing []string
		for name, fi := range fields {
			if seen[name] || fi.optional || (depth == 0 && s.opts.optional[name]) || (fi.nullable && s.opts.absentNull) {
				continue
			}
			missing = append(missing, name)
		}
		sort.Strings(missing)
		for _, name := range missing {
			reason := "is required: PUT replaces the whole document (send every member, null where allowed; PATCH changes part of one)"
			if s.opts.absentNull {
				reason = "is required and cannot be removed (null) by a merge patch"
			}
			s.fields = append(s.fields, model.FieldError{Field: joinPath(path, name), Reason: reason})
		}
	}
	return nil
}

// checkShape walks data as a document of type t.
func checkShape(data []byte, t reflect.Type, o shapeOpts) *requestError {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	s := &shape{opts: o}
	if err := s.value(dec, t, false, "", 0); err != nil {
		var re *requestError
		if errors.As(err, &re) {
			return re
		}
		return &requestError{decodeError: err}
	}
	if _, err := dec.Token(); err != io.EOF {
		return &requestError{decodeError: errors.New("unexpected data after the JSON value")}
	}
	if len(s.fields) > 0 {
		return &requestError{status: http.StatusUnprocessableEntity, fields: s.fields}
	}
	return nil
}

// parseDoc checks data's shape against out's type, takes out the top-level
// members named in o.extra (returned raw) and decodes the rest into out,
// refusing unknown fields. A document that is only incomplete (a 422 naming
// fields) is still decoded, so that the caller can report its invalid
// values together with its missing ones.
func parseDoc(data []byte, out any, o shapeOpts) (extra map[string]json.RawMessage, rerr *requestError) {
	t := reflect.TypeOf(out).Elem()
	incomplete := checkShape(data, t, o)
	if incomplete != nil && incomplete.status != http.StatusUnprocessableEntity {
		return nil, incomplete
	}
	if len(o.extra) > 0 {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, &requestError{decodeError: err}
		}
		for k := range o.extra {
			if v, ok := m[k]; ok {
				if extra == nil {
					extra = map[string]json.RawMessage{}
				}
				extra[k] = v
				delete(m, k)
			}
		}
		var err error
		if data, err = json.Marshal(m); err != nil {
			return nil, &requestError{decodeError: err}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return nil, &requestError{decodeError: err}
	}
	return extra, incomplete
}

// readBody reads the whole body, at most limit bytes. On failure it answers
// (400, 413) and returns errBadBody.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	data, err := io.ReadAll(r.Body)
	if err == nil && len(bytes.TrimSpace(data)) == 0 {
		err = io.EOF
	}
	if err != nil {
		answerDecodeError(w, err, limit)
		return nil, errBadBody
	}
	return data, nil
}

// confirmFlag reads the "confirm" member taken out of a body: absent is
// false, anything but a JSON boolean is refused.
func confirmFlag(extra map[string]json.RawMessage) (bool, *requestError) {
	raw, ok := extra["confirm"]
	if !ok {
		return false, nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, &requestError{status: http.StatusUnprocessableEntity, fields: []model.FieldError{{Field: "confirm", Reason: "must be true or false"}}}
	}
	return b, nil
}

// mergePatchType is the media type of RFC 7396.
const mergePatchType = "application/merge-patch+json"

// readPatch reads a JSON merge patch (RFC 7396) for a document of type t.
// The patch must be an object whose member names exist in t (checked like
// a body); the members named in extra are taken out and returned apart.
func readPatch(w http.ResponseWriter, r *http.Request, limit int64, t reflect.Type, extra map[string]bool) (patch map[string]any, taken map[string]json.RawMessage, err error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, perr := mime.ParseMediaType(ct)
		if perr != nil || (mt != mergePatchType && mt != "application/json") {
			// application/json-patch+json (RFC 6902) would be misread as a
			// merge patch: refuse every other type.
			writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type",
				"PATCH takes a JSON merge patch (RFC 7396): Content-Type "+mergePatchType)
			return nil, nil, errBadBody
		}
	}
	data, err := readBody(w, r, limit)
	if err != nil {
		return nil, nil, err
	}
	if rerr := checkShape(data, t, shapeOpts{extra: extra}); rerr != nil {
		// A patch may null anything (null removes a member); what the
		// merged document lacks is checked after merging.
		if rerr.status != http.StatusUnprocessableEntity {
			rerr.answer(w, limit)
			return nil, nil, errBadBody
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		answerDecodeError(w, err, limit)
		return nil, nil, errBadBody
	}
	patch, ok := v.(map[string]any)
	if !ok {
		writeError(w, http.StatusBadRequest, "malformed_json", "a merge patch must be a JSON object")
		return nil, nil, errBadBody
	}
	for k := range extra {
		if x, ok := patch[k]; ok {
			b, _ := json.Marshal(x)
			if taken == nil {
				taken = map[string]json.RawMessage{}
			}
			taken[k] = b
			delete(patch, k)
		}
	}
	return patch, taken, nil
}

// applyMergePatch applies patch to the JSON document cur as RFC 7396 says:
// objects merge member by member, null removes a member, anything else
// (arrays included) replaces. It returns the merged document.
func applyMergePatch(cur []byte, patch map[string]any) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(cur))
	dec.UseNumber()
	var target any
	if err := dec.Decode(&target); err != nil {
		return nil, fmt.Errorf("merge patch: current document: %w", err)
	}
	out, err := json.Marshal(mergeValue(target, patch))
	if err != nil {
		return nil, fmt.Errorf("merge patch: %w", err)
	}
	return out, nil
}

func mergeValue(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergeValue(t[k], v)
	}
	return t
}
