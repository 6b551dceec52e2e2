package redact

import (
	"fmt"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The field-path language is gjson's (github.com/tidwall/gjson), the subset
// of it that selects values in a document:
//
//	a.b        key b of the object at key a
//	fav\.movie a key containing a dot (any character after \ is literal)
//	friends.1  element 1 of an array (and the key "1" of an object)
//	data.#.id  key id of every element of the array data
//	child*.n?  keys matching a wildcard pattern: * any run, ? one character
//
// Everything else gjson reads — queries (#(...)), modifiers (@...), multipaths
// ([...], {...}), pipes (|), literals (!...), JSON lines (..) and a trailing #
// (an array's length, not a value of the document) — is refused with the
// reason, so that a path never silently selects nothing. Where gjson reads a
// component two ways the rewriter follows it: a number is an index on an
// array and a key on an object, and # is every element of an array and the
// key "#" of an object.

// segKind is the kind of one path component.
type segKind uint8

const (
	segKey  segKind = iota // a literal key; also an index when idx >= 0
	segWild                // a key pattern with * or ?
	segEach                // #: every array element (and the key "#" of an object)
)

// seg is one parsed path component.
type seg struct {
	kind segKind
	key  string // the unescaped key, the pattern, or "#"
	idx  int    // the array index of a plain number, else -1
	// lowered: key is ASCII and was lower-cased for matching under case
	// folding (subject paths only).
	lowered bool
}

// Path is a parsed field path.
type Path struct {
	raw  string
	segs []seg
}

// String returns the path as written.
func (p *Path) String() string { return p.raw }

// Each counts the path's # components.
func (p *Path) Each() int {
	n := 0
	for _, s := range p.segs {
		if s.kind == segEach {
			n++
		}
	}
	return n
}

// Wildcard reports whether a component of the path is a * or ? pattern.
func (p *Path) Wildcard() bool {
	for _, s := range p.segs {
		if s.kind == segWild {
			return true
		}
	}
	return false
}

// PathError says why a path is refused.
type PathError struct {
	Path   string
	Reason string
}

func (e *PathError) Error() string { return fmt.Sprintf("path %q: %s", e.Path, e.Reason) }

// ParsePath parses a field path (see the package documentation) or says why
// it is refused.
func ParsePath(p string) (*Path, error) {
	fail := func(format string, args ...any) (*Path, error) {
		return nil, &PathError{Path: p, Reason: fmt.Sprintf(format, args...)}
	}
	if p == "" {
		return fail("empty path")
	}
	if !utf8.ValidString(p) {
		return fail("not valid UTF-8")
	}
	out := &Path{raw: p}
	var key strings.Builder
	for i := 0; i <= len(p); {
		// One component: p[start:i] up to an unescaped '.' or the end.
		start := i
		key.Reset()
		escaped, wild := false, false
		for ; i < len(p) && p[i] != '.'; i++ {
			switch c := p[i]; c {
			case '\\':
				if i+1 == len(p) {
					return fail(`a \ at the end escapes nothing`)
				}
				_, size := utf8.DecodeRuneInString(p[i+1:])
				key.WriteString(p[i+1 : i+1+size])
				i += size
				escaped = true
			case '|':
				return fail("pipes (|) are not supported; escape a key containing | as \\|")
			case '*', '?':
				wild = true
				key.WriteByte(c)
			default:
				key.WriteByte(c)
			}
		}
		comp := p[start:i]
		switch {
		case comp == "":
			return fail("empty key at offset %d (a leading, trailing or doubled dot)", start)
		case comp == "#":
			out.segs = append(out.segs, seg{kind: segEach, key: "#", idx: -1})
		case strings.HasPrefix(comp, "#(") || strings.HasPrefix(comp, "#["):
			return fail("queries (#(...)) are not supported; map the array's items with #")
		case strings.Contains(comp, "#") && !escapedAll(comp, '#'):
			return fail("%q: # stands alone for every array item; escape a # inside a key as \\#", comp)
		case comp[0] == '@':
			return fail("modifiers (@...) are not supported; escape a key starting with @ as \\@")
		case comp[0] == '[' || comp[0] == '{':
			return fail("multipaths ([...] or {...}) are not supported; escape a key starting with %c as \\%c", comp[0], comp[0])
		case comp[0] == '!':
			return fail("literals (!...) are not supported; escape a key starting with ! as \\!")
		case wild && escaped:
			return fail("%q: a key with * or ? cannot also hold escapes (gjson drops them inside patterns)", comp)
		case wild:
			out.segs = append(out.segs, seg{kind: segWild, key: key.String(), idx: -1})
		default:
			s := seg{kind: segKey, key: key.String(), idx: -1}
			if !escaped {
				s.idx = parseIndex(s.key)
			}
			out.segs = append(out.segs, s)
		}
		i++ // past the '.'
	}
	if last := out.segs[len(out.segs)-1]; last.kind == segEach {
		arr := strings.TrimSuffix(p, ".#")
		if arr == "#" {
			return fail("a path cannot end with #: gjson reads it as the array's length, not its items; map the items' keys (#.key)")
		}
		return fail("a path cannot end with #: gjson reads it as the array's length, not its items; map the array itself (%q) to redact it whole", arr)
	}
	return out, nil
}

// escapedAll reports whether every c in the raw component s is escaped.
func escapedAll(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case c:
			return false
		}
	}
	return true
}

// parseIndex reads a component of decimal digits the way gjson reads an array
// index (leading zeros allowed, saturating), or -1.
func parseIndex(s string) int {
	if s == "" {
		return -1
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return -1
		}
		if n > (1<<31)/10 {
			n = math.MaxInt32 // beyond any array this rewriter can hold (and an int on 32-bit platforms too)
			continue
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// canonFold maps s to a form equal for exactly the strings equal under
// Unicode simple case folding (strings.EqualFold): every rune becomes the
// smallest rune of its folding orbit.
func canonFold(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(foldMin(r))
	}
	return b.String()
}

func foldMin(r rune) rune {
	m := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < m {
			m = f
		}
	}
	return m
}

// runeEq compares two runes, under simple case folding when fold is set.
func runeEq(a, b rune, fold bool) bool {
	if a == b {
		return true
	}
	if !fold {
		return false
	}
	if a < utf8.RuneSelf && b < utf8.RuneSelf {
		return lower[a] == lower[b]
	}
	return foldMin(a) == foldMin(b)
}

// globMatch reports whether key matches pattern, where * matches any run of
// characters and ? exactly one, as gjson's wildcard keys do. It runs in
// O(len(pattern)·len(key)) whatever the input (no exponential backtracking).
func globMatch(pattern, key string, fold bool) bool {
	p, k := 0, 0
	starP, starK := -1, 0
	for k < len(key) {
		if p < len(pattern) {
			switch pattern[p] {
			case '*':
				starP, starK = p, k
				p++
				continue
			case '?':
				_, size := utf8.DecodeRuneInString(key[k:])
				p++
				k += size
				continue
			default:
				pr, psize := utf8.DecodeRuneInString(pattern[p:])
				kr, ksize := utf8.DecodeRuneInString(key[k:])
				if runeEq(pr, kr, fold) {
					p += psize
					k += ksize
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last * absorb one more character and retry from there.
		_, size := utf8.DecodeRuneInString(key[starK:])
		starK += size
		p, k = starP+1, starK
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// lower maps ASCII upper-case letters to lower case and every other byte to
// itself.
var lower = func() (t [256]byte) {
	for i := range t {
		t[i] = byte(i)
		if 'A' <= i && i <= 'Z' {
			t[i] = byte(i + 'a' - 'A')
		}
	}
	return t
}()

// eqFoldASCII compares a body key with a lower-cased ASCII mapped key.
func eqFoldASCII(key []byte, mapped string) bool {
	if len(key) != len(mapped) {
		return false
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c != mapped[i] && lower[c] != mapped[i] {
			return false
		}
	}
	return true
}

// eqFold compares two keys under Unicode simple case folding.
func eqFold(key []byte, mapped string) bool {
	for len(key) > 0 && len(mapped) > 0 {
		kr, ks := utf8.DecodeRune(key)
		mr, ms := utf8.DecodeRuneInString(mapped)
		if !runeEq(kr, mr, true) {
			return false
		}
		key, mapped = key[ks:], mapped[ms:]
	}
	return len(key) == 0 && len(mapped) == 0
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func hasHighByte(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return true
		}
	}
	return false
}
