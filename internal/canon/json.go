package canon

import (
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Field kinds of a value read from a JSON body.
const (
	KindString = 's'
	KindNumber = 'n'
	KindOther  = 'o' // object, array, true, false or null
)

// Field is a value read from a JSON request body.
type Field struct {
	Found bool
	Kind  byte
	// Value is a string's decoded text, a number's literal, or true, false
	// or null (KindOther); "" for an object or an array.
	Value string
}

// BodyPath splits a JSON path ("contact_id", "call.contact\.id", "items.0.id")
// into its keys: "." separates, "\." is a dot inside a key, and a key of
// digits also selects that index of an array. Keys are case-folded, as
// BodyFields compares them.
func BodyPath(p string) []string {
	var keys []string
	var cur strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '\\' && i+1 < len(p):
			i++
			cur.WriteByte(p[i])
		case p[i] == '.':
			keys = append(keys, Fold(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(p[i])
		}
	}
	return append(keys, Fold(cur.String()))
}

// maxJSONDepth bounds the nesting of a request body gdprgate reads.
const maxJSONDepth = 64

// BodyFields reads the values at paths (from BodyPath) in a JSON request
// body, after checking that the whole body is one JSON document that every
// parser reads the same way:
//
//   - strict JSON (RFC 8259): no comments, trailing commas, single quotes,
//     byte order mark or trailing data; strings valid UTF-8 without lone
//     surrogates;
//   - no object with two keys that are equal after unescaping ("typ\u0065"
//     is "type") or under case folding ("CONTACT_ID" is "contact_id"):
//     parsers keep the first, the last, or match keys case-insensitively;
//   - no key holding a control character (C parsers stop at "\u0000").
//
// Keys are then looked up case-insensitively, so "CONTACT_ID" alone is read
// as contact_id, as backends that bind JSON case-insensitively read it
// (ASP.NET Core's web defaults, Jackson with
// ACCEPT_CASE_INSENSITIVE_PROPERTIES).
func BodyFields(body []byte, paths [][]string) ([]Field, error) {
	if len(paths) > 64 {
		paths = paths[:64]
	}
	r := &jsonReader{b: body, paths: paths, out: make([]Field, len(paths))}
	r.ws()
	all := uint64(1)<<len(paths) - 1
	if err := r.value(all, 0); err != nil {
		return nil, err
	}
	r.ws()
	if r.i != len(r.b) {
		return nil, r.bad("data after the JSON document")
	}
	return r.out, nil
}

type jsonReader struct {
	b     []byte
	i     int
	paths [][]string
	out   []Field
}

func (r *jsonReader) bad(what string) error {
	return errorf(ReasonBadBody, "the request body is not valid JSON: %s (at byte %d)", what, r.i)
}

func (r *jsonReader) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// value reads one value; mask holds the paths whose first depth keys led
// here.
func (r *jsonReader) value(mask uint64, depth int) error {
	if depth > maxJSONDepth {
		return r.bad("nested too deeply")
	}
	if r.i >= len(r.b) {
		return r.bad("unexpected end")
	}
	start := r.i
	var kind byte = KindOther
	var str string
	var err error
	switch c := r.b[r.i]; {
	case c == '{':
		err = r.object(mask, depth)
	case c == '[':
		err = r.array(mask, depth)
	case c == '"':
		kind = KindString
		str, err = r.str()
	case c == '-' || '0' <= c && c <= '9':
		kind = KindNumber
		err = r.number()
	case c == 't':
		str, err = "true", r.literal("true")
	case c == 'f':
		str, err = "false", r.literal("false")
	case c == 'n':
		str, err = "null", r.literal("null")
	default:
		return r.bad("unexpected character")
	}
	if err != nil {
		return err
	}
	for m := mask; m != 0; m &= m - 1 {
		i := trailingZeros(m)
		if len(r.paths[i]) != depth {
			continue
		}
		f := Field{Found: true, Kind: kind, Value: str}
		if kind == KindNumber {
			f.Value = string(r.b[start:r.i])
		}
		r.out[i] = f
	}
	return nil
}

func trailingZeros(m uint64) int {
	n := 0
	for m&1 == 0 {
		m >>= 1
		n++
	}
	return n
}

func (r *jsonReader) object(mask uint64, depth int) error {
	r.i++             // {
	var keys []string // folded, to find duplicates
	r.ws()
	if r.i < len(r.b) && r.b[r.i] == '}' {
		r.i++
		return nil
	}
	for {
		r.ws()
		if r.i >= len(r.b) || r.b[r.i] != '"' {
			return r.bad("expected a key")
		}
		key, err := r.str()
		if err != nil {
			return err
		}
		for j := 0; j < len(key); j++ {
			if key[j] < 0x20 || key[j] == 0x7f {
				return errorf(ReasonAmbiguousBody, "a key of the request body holds a control character")
			}
		}
		fk := Fold(key)
		for _, k := range keys {
			if k == fk {
				return errorf(ReasonAmbiguousBody, "the request body repeats the key %q (after unescaping and case folding)", key)
			}
		}
		keys = append(keys, fk)
		r.ws()
		if r.i >= len(r.b) || r.b[r.i] != ':' {
			return r.bad("expected :")
		}
		r.i++
		r.ws()
		var next uint64
		for m := mask; m != 0; m &= m - 1 {
			i := trailingZeros(m)
			if p := r.paths[i]; len(p) > depth && p[depth] == fk {
				next |= 1 << i
			}
		}
		if err := r.value(next, depth+1); err != nil {
			return err
		}
		r.ws()
		if r.i >= len(r.b) {
			return r.bad("unexpected end")
		}
		switch r.b[r.i] {
		case ',':
			r.i++
		case '}':
			r.i++
			return nil
		default:
			return r.bad("expected , or }")
		}
	}
}

func (r *jsonReader) array(mask uint64, depth int) error {
	r.i++ // [
	r.ws()
	if r.i < len(r.b) && r.b[r.i] == ']' {
		r.i++
		return nil
	}
	for idx := 0; ; idx++ {
		r.ws()
		var next uint64
		if mask != 0 {
			is := strconv.Itoa(idx)
			for m := mask; m != 0; m &= m - 1 {
				i := trailingZeros(m)
				if p := r.paths[i]; len(p) > depth && p[depth] == is {
					next |= 1 << i
				}
			}
		}
		if err := r.value(next, depth+1); err != nil {
			return err
		}
		r.ws()
		if r.i >= len(r.b) {
			return r.bad("unexpected end")
		}
		switch r.b[r.i] {
		case ',':
			r.i++
		case ']':
			r.i++
			return nil
		default:
			return r.bad("expected , or ]")
		}
	}
}

func (r *jsonReader) literal(lit string) error {
	if !strings.HasPrefix(string(r.b[r.i:min(len(r.b), r.i+len(lit))]), lit) {
		return r.bad("unexpected character")
	}
	r.i += len(lit)
	return nil
}

func (r *jsonReader) number() error {
	b, i := r.b, r.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		r.i = i
		return r.bad("malformed number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			r.i = i
			return r.bad("malformed number")
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			r.i = i
			return r.bad("malformed number")
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	r.i = i
	return nil
}

// str reads a string at r.i (its opening quote) and returns it decoded.
func (r *jsonReader) str() (string, error) {
	r.i++
	start := r.i
	// Fast path: no escapes, ASCII or valid UTF-8.
	for r.i < len(r.b) {
		c := r.b[r.i]
		switch {
		case c == '"':
			s := r.b[start:r.i]
			r.i++
			if !utf8.Valid(s) {
				return "", r.bad("invalid UTF-8 in a string")
			}
			return string(s), nil
		case c == '\\':
			return r.strSlow(start)
		case c < 0x20:
			return "", r.bad("control character in a string")
		}
		r.i++
	}
	return "", r.bad("unterminated string")
}

func (r *jsonReader) strSlow(start int) (string, error) {
	out := append([]byte(nil), r.b[start:r.i]...)
	for r.i < len(r.b) {
		c := r.b[r.i]
		switch {
		case c == '"':
			r.i++
			if !utf8.Valid(out) {
				return "", r.bad("invalid UTF-8 in a string")
			}
			return string(out), nil
		case c < 0x20:
			return "", r.bad("control character in a string")
		case c != '\\':
			out = append(out, c)
			r.i++
			continue
		}
		r.i++
		if r.i >= len(r.b) {
			break
		}
		e := r.b[r.i]
		r.i++
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			c1, ok := r.hex4()
			if !ok {
				return "", r.bad("malformed \\u escape")
			}
			rn := rune(c1)
			if utf16.IsSurrogate(rn) {
				if c1 >= 0xdc00 || r.i+1 >= len(r.b) || r.b[r.i] != '\\' || r.b[r.i+1] != 'u' {
					return "", r.bad("lone surrogate in a string")
				}
				r.i += 2
				c2, ok := r.hex4()
				if !ok || c2 < 0xdc00 || c2 > 0xdfff {
					return "", r.bad("lone surrogate in a string")
				}
				rn = utf16.DecodeRune(rn, rune(c2))
			}
			out = utf8.AppendRune(out, rn)
		default:
			return "", r.bad("unknown escape in a string")
		}
	}
	return "", r.bad("unterminated string")
}

func (r *jsonReader) hex4() (int, bool) {
	if r.i+4 > len(r.b) {
		return 0, false
	}
	v := 0
	for k := 0; k < 4; k++ {
		h := unhex(r.b[r.i+k])
		if h < 0 {
			return 0, false
		}
		v = v<<4 | h
	}
	r.i += 4
	return v, true
}
