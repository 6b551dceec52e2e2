// Package redact rewrites JSON response bodies in a single validating pass so
// that the fields a caller may not see are redacted, without building a
// generic document tree.
//
// A Spec maps dot-separated field paths ("email", "address.street",
// "data.#.email", where "#" stands for every element of an array) to a
// sensitivity bit and a redaction Action. Compile turns it into a Map whose
// Rewrite method copies every untouched span of the input byte for byte
// (whitespace included) and replaces only the values of mapped fields whose bit
// is not in the caller's visibility mask.
//
// Who the data is about (the subject) is either decided by the caller (no
// SubjectPath: the Planner is asked once with a nil id) or read from the body:
// a SubjectPath without "#" ("contact_id") names one subject for the whole
// body, a SubjectPath with "#" ("data.#.id") gives every element of that array
// its own subject, and the Planner is asked once per element. The subject id
// may appear after the fields it governs; the element is then scanned twice,
// which keeps the rewrite linear.
//
// Decisions worth knowing:
//   - Keys are matched by their decoded value: "em\u0061il" matches "email",
//     because every JSON consumer downstream will read it as "email".
//   - Every occurrence of a duplicate key is redacted.
//   - Input must be strict RFC 8259 JSON in UTF-8. Unlike encoding/json.Valid,
//     invalid UTF-8 inside strings is rejected (the gate fails closed rather
//     than pass bytes it cannot interpret). Nesting deeper than 10000 levels is
//     rejected, as encoding/json does.
//   - A field whose subject id is missing or null is redacted as if the caller
//     could see nothing (mask 0); the Planner is not asked.
//   - On any error the output is dst unchanged: no partial body ever escapes.
package redact

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Action says how a redacted value is replaced.
type Action uint8

const (
	// ActNull replaces the value with null (the default).
	ActNull Action = iota
	// ActRemove removes the member (key and value) or the array element.
	ActRemove
	// ActMask replaces the value with a fixed string (FieldSpec.Mask, "***" when empty).
	ActMask
	// ActHash replaces the value with "h:" and the hex of the first 16 bytes
	// of HMAC-SHA256(Spec.HashKey, value), so that values can be joined
	// without being disclosed. For a string the decoded content is hashed (so
	// "a@b" and "a\u0040b" give the same hash); for any other value its raw
	// JSON text.
	ActHash
)

var actionNames = [...]string{ActNull: "null", ActRemove: "remove", ActMask: "mask", ActHash: "hash"}

// String returns the action's config name.
func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// ParseAction parses a config name ("null", "remove", "mask", "hash"; empty
// means "null").
func ParseAction(s string) (Action, error) {
	if s == "" {
		return ActNull, nil
	}
	for i, n := range actionNames {
		if strings.EqualFold(s, n) {
			return Action(i), nil
		}
	}
	return 0, fmt.Errorf("redact: unknown action %q (want null, remove, mask or hash)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler so configs can name actions.
func (a *Action) UnmarshalText(b []byte) error {
	v, err := ParseAction(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// DefaultMask is the replacement string of ActMask when FieldSpec.Mask is empty.
const DefaultMask = "***"

// MaxBit is the highest sensitivity bit.
const MaxBit = 31

// FieldSpec maps one field path to a sensitivity bit.
type FieldSpec struct {
	// Path is dot-separated keys; "#" means every element of an array.
	// Keys containing "." or equal to "#" cannot be expressed.
	Path   string
	Bit    int
	Action Action
	// Mask is the replacement string for ActMask.
	Mask string
}

// Spec describes what to redact in one kind of body.
type Spec struct {
	Fields []FieldSpec
	// SubjectPath names where the subject id is in the body; see the package doc.
	SubjectPath string
	// HashKey is the HMAC key of ActHash; required when any field hashes.
	HashKey []byte
}

// Planner tells which sensitivity bits of a subject the caller may see.
type Planner interface {
	// Visible returns the mask of visible bits. subjectID is the raw JSON
	// scalar of the subject field (a string's decoded content or a number's
	// text), nil for bodies whose subject the caller decided. The slice is only
	// valid during the call. An error aborts the rewrite.
	Visible(subjectID []byte) (mask uint32, err error)
}

// PlannerFunc adapts a function to Planner.
type PlannerFunc func(subjectID []byte) (uint32, error)

// Visible calls f.
func (f PlannerFunc) Visible(subjectID []byte) (uint32, error) { return f(subjectID) }

// Fixed is a Planner that gives every subject the same mask.
type Fixed uint32

// Visible returns the fixed mask.
func (f Fixed) Visible([]byte) (uint32, error) { return uint32(f), nil }

// field is a compiled FieldSpec.
type field struct {
	path   string
	bit    uint32 // 1 << Bit
	action Action
	repl   []byte // replacement JSON text for ActNull and ActMask
}

// node is one trie node: the keys below an object, or "#" for array elements.
type node struct {
	keys  []child   // children by key, in spec order
	byLen [][]child // children bucketed by key length: one compare per key in practice
	elem  *node     // "#"

	field   int  // index into Map.fields, -1 when the node is not redacted
	subject bool // the subject id lives here
	scope   bool // an element with its own subject (the node of the last "#")
}

type child struct {
	key string
	n   *node
}

// lookup finds the child for a decoded key. Bucketing by length beats a map
// here: hashing every key of every object dominated the profile.
func (n *node) lookup(key []byte) *node {
	if len(key) >= len(n.byLen) {
		return nil
	}
	for _, c := range n.byLen[len(key)] {
		if c.key == string(key) {
			return c.n
		}
	}
	return nil
}

func (n *node) get(seg string) *node {
	if seg == "#" {
		if n.elem == nil {
			n.elem = &node{field: -1}
		}
		return n.elem
	}
	for _, c := range n.keys {
		if c.key == seg {
			return c.n
		}
	}
	c := &node{field: -1}
	n.keys = append(n.keys, child{seg, c})
	return c
}

func (n *node) finish() {
	for _, c := range n.keys {
		if len(c.key) >= len(n.byLen) {
			n.byLen = append(n.byLen, make([][]child, len(c.key)+1-len(n.byLen))...)
		}
		n.byLen[len(c.key)] = append(n.byLen[len(c.key)], c)
		c.n.finish()
	}
	if n.elem != nil {
		n.elem.finish()
	}
}

// Map is a compiled Spec. It is safe for concurrent use.
type Map struct {
	root       *node
	fields     []field
	sorted     []int // field indexes in path order, for Result.Redacted
	hashKey    []byte
	subjectRel []string // subject path below its scope
	perElement bool     // SubjectPath contains "#"
	hasSubject bool
	pool       pool
}

func splitPath(p string) ([]string, error) {
	if p == "" {
		return nil, errors.New("empty path")
	}
	segs := strings.Split(p, ".")
	for _, s := range segs {
		if s == "" {
			return nil, fmt.Errorf("empty key in path %q", p)
		}
	}
	return segs, nil
}

// Compile validates spec and builds the matcher.
func Compile(spec Spec) (*Map, error) {
	m := &Map{root: &node{field: -1}, hashKey: slices.Clone(spec.HashKey)}
	var scope []string // path segments up to and including the last "#"
	if spec.SubjectPath != "" {
		segs, err := splitPath(spec.SubjectPath)
		if err != nil {
			return nil, fmt.Errorf("redact: subject path: %w", err)
		}
		last := slices.Index(segs, "#")
		for i, s := range segs {
			if s == "#" {
				last = i
			}
		}
		if segs[len(segs)-1] == "#" {
			return nil, fmt.Errorf("redact: subject path %q must end with a key, not \"#\"", spec.SubjectPath)
		}
		m.hasSubject = true
		m.perElement = last >= 0
		scope = segs[:last+1]
		m.subjectRel = segs[last+1:]
		n := m.root
		for _, s := range segs {
			n = n.get(s)
		}
		n.subject = true
		if m.perElement {
			n = m.root
			for _, s := range scope {
				n = n.get(s)
			}
			n.scope = true
		}
	}
	seen := make(map[string]bool, len(spec.Fields))
	for i, f := range spec.Fields {
		segs, err := splitPath(f.Path)
		if err != nil {
			return nil, fmt.Errorf("redact: field %d: %w", i, err)
		}
		if f.Bit < 0 || f.Bit > MaxBit {
			return nil, fmt.Errorf("redact: field %q: bit %d out of 0..%d", f.Path, f.Bit, MaxBit)
		}
		if seen[f.Path] {
			return nil, fmt.Errorf("redact: field %q: duplicate path", f.Path)
		}
		seen[f.Path] = true
		if m.perElement && (len(segs) <= len(scope) || !slices.Equal(segs[:len(scope)], scope)) {
			return nil, fmt.Errorf("redact: field %q is not under the subject's array %q: its subject would be unknown",
				f.Path, strings.Join(scope, "."))
		}
		if spec.SubjectPath != "" && strings.HasPrefix(spec.SubjectPath, f.Path+".") {
			// The subject is read from the input, but a redacted ancestor would
			// hide a second, conflicting subject id from the duplicate check.
			return nil, fmt.Errorf("redact: field %q contains the subject path %q; redact the subject field itself instead",
				f.Path, spec.SubjectPath)
		}
		cf := field{path: f.Path, bit: 1 << uint(f.Bit), action: f.Action}
		switch f.Action {
		case ActNull:
			cf.repl = []byte("null")
		case ActRemove:
		case ActMask:
			mask := f.Mask
			if mask == "" {
				mask = DefaultMask
			}
			if !utf8.ValidString(mask) {
				return nil, fmt.Errorf("redact: field %q: mask is not valid UTF-8", f.Path)
			}
			cf.repl = appendQuoted(nil, mask)
		case ActHash:
			if len(spec.HashKey) == 0 {
				return nil, fmt.Errorf("redact: field %q: action hash needs Spec.HashKey", f.Path)
			}
		default:
			return nil, fmt.Errorf("redact: field %q: unknown action %d", f.Path, f.Action)
		}
		n := m.root
		for _, s := range segs {
			n = n.get(s)
		}
		n.field = len(m.fields)
		m.fields = append(m.fields, cf)
	}
	m.root.finish()
	m.sorted = make([]int, len(m.fields))
	for i := range m.sorted {
		m.sorted[i] = i
	}
	slices.SortFunc(m.sorted, func(a, b int) int { return strings.Compare(m.fields[a].path, m.fields[b].path) })
	m.pool.m = m
	return m, nil
}

// Paths returns the mapped field paths, sorted.
func (m *Map) Paths() []string {
	out := make([]string, len(m.sorted))
	for i, f := range m.sorted {
		out[i] = m.fields[f].path
	}
	return out
}

// appendQuoted appends s as a JSON string literal.
func appendQuoted(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

func newHMAC(key []byte) hmacHash { return hmac.New(sha256.New, key) }
