package redact

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting accepted, the same limit as encoding/json.
const MaxDepth = 10000

// SyntaxError reports input that is not strict RFC 8259 JSON.
type SyntaxError struct {
	Offset int // byte offset of the offending input
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("redact: invalid JSON at offset %d: %s", e.Offset, e.Msg)
}

// ErrInvalidJSON is matched by every *SyntaxError through errors.Is.
var ErrInvalidJSON = errors.New("redact: invalid JSON")

// Is lets callers test errors.Is(err, ErrInvalidJSON).
func (e *SyntaxError) Is(target error) bool { return target == ErrInvalidJSON }

// scanner validates JSON by positions over src. Every method takes the index
// of the first byte of a token and returns the index just after it, so that
// the rewriter can copy or cut spans without a token buffer.
type scanner struct {
	src   []byte
	depth int
	memo  *keyMemos // nil: keys are always scanned
}

func (s *scanner) errAt(i int, msg string) error {
	return &SyntaxError{Offset: i, Msg: msg}
}

func (s *scanner) unexpected(i int, want string) error {
	if i >= len(s.src) {
		return s.errAt(i, "unexpected end of input, want "+want)
	}
	return s.errAt(i, fmt.Sprintf("unexpected %q, want %s", s.src[i], want))
}

// ws skips JSON whitespace. Compact JSON has none: one compare says so
// (every whitespace byte is at most ' ').
func (s *scanner) ws(i int) int {
	if uint(i) < uint(len(s.src)) && s.src[i] > ' ' {
		return i
	}
	return s.wsSlow(i)
}

//go:noinline // keeps ws small enough to inline everywhere
func (s *scanner) wsSlow(i int) int {
	src := s.src
	for i < len(src) {
		switch src[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// special returns a word whose lowest set 0x80 bit marks the first byte of x
// that ends a fast string run: '"', '\\', a control character or a non-ASCII
// byte. Higher bits may be false positives (borrows), the lowest never is:
// below the first such byte every byte is ASCII from ' ' on and neither
// quote nor backslash, so no subtraction borrows there and none sets a high
// bit; at it, x-0x20 underflows for a control byte, x^'"'-1 and
// x^'\\'-1 underflow for a quote or backslash, and x's own high bit marks a
// byte outside ASCII.
func special(x uint64) uint64 {
	return ((x - lsb*0x20) | ((x ^ (lsb * '"')) - lsb) | ((x ^ (lsb * '\\')) - lsb) | x) & msb
}

// String flags returned by str.
const (
	strEsc  = 1 << iota // the string has escapes
	strHigh             // the string has bytes outside ASCII (before unescaping)
)

// str validates the string starting at the quote at i. It returns the index
// after the closing quote and its flags (strEsc, strHigh).
func (s *scanner) str(i int) (end int, flags uint8, err error) {
	src := s.src
	j := i + 1
	for {
		// Eight bytes at a time through plain text, the bulk of most bodies.
		for j >= 0 && j <= len(src)-8 {
			x := binary.LittleEndian.Uint64(src[j : j+8 : j+8])
			m := special(x)
			if m == 0 {
				j += 8
				continue
			}
			t := bits.TrailingZeros64(m)
			j += t >> 3
			if byte(x>>(t&56)) == '"' {
				// Most strings end at their first special byte.
				return j + 1, flags, nil
			}
			goto slow
		}
		for j < len(src) && src[j] >= 0x20 && src[j] < 0x80 && src[j] != '"' && src[j] != '\\' {
			j++
		}
	slow:
		if j >= len(src) {
			return 0, 0, s.errAt(i, "unterminated string")
		}
		switch c := src[j]; {
		case c == '"':
			return j + 1, flags, nil
		case c == '\\':
			flags |= strEsc
			if j+1 >= len(src) {
				return 0, 0, s.errAt(i, "unterminated string")
			}
			switch src[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if j+6 > len(src) {
					return 0, 0, s.errAt(j, "truncated \\u escape")
				}
				for k := j + 2; k < j+6; k++ {
					if hexVal(src[k]) < 0 {
						return 0, 0, s.errAt(k, "invalid hex digit in \\u escape")
					}
				}
				j += 6
			default:
				return 0, 0, s.errAt(j, fmt.Sprintf("invalid escape \\%c", src[j+1]))
			}
		case c < 0x20:
			return 0, 0, s.errAt(j, "control character in string")
		default:
			flags |= strHigh
			if c >= 0xc2 && c < 0xe0 && j+1 < len(src) && src[j+1]&0xc0 == 0x80 {
				// Two bytes (Latin, Greek, Cyrillic…): what
				// utf8.DecodeRune accepts, without the call.
				j += 2
				continue
			}
			r, size := utf8.DecodeRune(src[j:])
			if r == utf8.RuneError && size <= 1 {
				return 0, 0, s.errAt(j, "invalid UTF-8 in string")
			}
			j += size
		}
	}
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// num validates the number starting at i.
func (s *scanner) num(i int) (int, error) {
	src := s.src
	j := i
	if src[j] == '-' {
		j++
	}
	switch {
	case j < len(src) && src[j] == '0':
		j++
	case j < len(src) && src[j] >= '1' && src[j] <= '9':
		for j++; j < len(src) && isDigit(src[j]); j++ {
		}
	default:
		return 0, s.unexpected(j, "a digit")
	}
	if j < len(src) && src[j] == '.' {
		j++
		if j >= len(src) || !isDigit(src[j]) {
			return 0, s.unexpected(j, "a digit after the decimal point")
		}
		for j++; j < len(src) && isDigit(src[j]); j++ {
		}
	}
	if j < len(src) && (src[j] == 'e' || src[j] == 'E') {
		j++
		if j < len(src) && (src[j] == '+' || src[j] == '-') {
			j++
		}
		if j >= len(src) || !isDigit(src[j]) {
			return 0, s.unexpected(j, "a digit in the exponent")
		}
		for j++; j < len(src) && isDigit(src[j]); j++ {
		}
	}
	return j, nil
}

func (s *scanner) lit(i int, word string) (int, error) {
	if len(s.src)-i < len(word) || string(s.src[i:i+len(word)]) != word {
		return 0, s.errAt(i, "invalid literal, want "+word)
	}
	return i + len(word), nil
}

// value validates the value starting at i (whitespace already skipped).
func (s *scanner) value(i int) (int, error) {
	if uint(i) >= uint(len(s.src)) {
		return 0, s.unexpected(i, "a value")
	}
	c := s.src[i]
	if c == '"' { // most values
		end, _, err := s.str(i)
		return end, err
	}
	switch c {
	case '{':
		return s.object(i)
	case '[':
		return s.array(i)
	case 't':
		return s.lit(i, "true")
	case 'f':
		return s.lit(i, "false")
	case 'n':
		return s.lit(i, "null")
	default:
		if c == '-' || isDigit(c) {
			return s.num(i)
		}
		return 0, s.unexpected(i, "a value")
	}
}

func (s *scanner) enter(i int) error {
	s.depth++
	if s.depth > MaxDepth {
		return s.errAt(i, fmt.Sprintf("nesting deeper than %d", MaxDepth))
	}
	return nil
}

// object validates the object whose '{' is at i.
func (s *scanner) object(i int) (int, error) {
	if err := s.enter(i); err != nil {
		return 0, err
	}
	src := s.src
	j := s.ws(i + 1)
	if uint(j) < uint(len(src)) && src[j] == '}' {
		s.depth--
		return j + 1, nil
	}
	km := s.memoFor(nil)
	for k := 0; ; k++ {
		if uint(j) >= uint(len(src)) || src[j] != '"' {
			if j = s.ws(j); j >= len(src) || src[j] != '"' {
				return 0, s.unexpected(j, "a string key")
			}
		}
		var end int
		var err error
		if km != nil && k < len(km.keys) && s.memoHit(j, &km.keys[k]) {
			end = j + 2 + km.keys[k].l
		} else {
			var flags uint8
			if end, flags, err = s.str(j); err != nil {
				return 0, err
			}
			if km != nil {
				km.remember(k, src, j+1, end-j-2, flags, nil)
			}
		}
		// Compact JSON has the separators right after the tokens: they
		// are looked for before any whitespace.
		if j = end; uint(j) >= uint(len(src)) || src[j] != ':' {
			if j = s.ws(j); j >= len(src) || src[j] != ':' {
				return 0, s.unexpected(j, "':'")
			}
		}
		if v := j + 1; uint(v) < uint(len(src)) && src[v] == '"' { // most values: one call less
			if j, _, err = s.str(v); err != nil {
				return 0, err
			}
		} else if j, err = s.value(s.ws(v)); err != nil {
			return 0, err
		}
		if uint(j) < uint(len(src)) && src[j] == ',' { // compact JSON: the comma right after the value
			j++ // the key's quote is looked for before any whitespace
			continue
		}
		if j = s.ws(j); uint(j) < uint(len(src)) {
			switch src[j] {
			case ',':
				j++
				continue
			case '}':
				s.depth--
				return j + 1, nil
			}
		}
		return 0, s.unexpected(j, "',' or '}'")
	}
}

// array validates the array whose '[' is at i.
func (s *scanner) array(i int) (int, error) {
	if err := s.enter(i); err != nil {
		return 0, err
	}
	src := s.src
	j := s.ws(i + 1)
	if uint(j) < uint(len(src)) && src[j] == ']' {
		s.depth--
		return j + 1, nil
	}
	for {
		var err error
		if j, err = s.value(j); err != nil {
			return 0, err
		}
		if j = s.ws(j); uint(j) < uint(len(src)) {
			switch src[j] {
			case ',':
				j = s.ws(j + 1)
				continue
			case ']':
				s.depth--
				return j + 1, nil
			}
		}
		return 0, s.unexpected(j, "',' or ']'")
	}
}

// unescape appends the decoded content of a validated string literal's
// content (without quotes) to dst. Lone surrogates decode to U+FFFD, as in
// encoding/json.
func unescape(dst, lit []byte) []byte {
	for i := 0; i < len(lit); {
		c := lit[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch lit[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := rune(hex4(lit[i+2:]))
			i += 6
			if utf16IsHigh(r) && i+6 <= len(lit) && lit[i] == '\\' && lit[i+1] == 'u' {
				if lo := rune(hex4(lit[i+2:])); utf16IsLow(lo) {
					r = (r-0xd800)<<10 + (lo - 0xdc00) + 0x10000
					i += 6
				} else {
					r = utf8.RuneError
				}
			} else if utf16IsHigh(r) || utf16IsLow(r) {
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, lit[i+1])
		}
		i += 2
	}
	return dst
}

func hex4(b []byte) int {
	return hexVal(b[0])<<12 | hexVal(b[1])<<8 | hexVal(b[2])<<4 | hexVal(b[3])
}

func utf16IsHigh(r rune) bool { return r >= 0xd800 && r < 0xdc00 }
func utf16IsLow(r rune) bool  { return r >= 0xdc00 && r < 0xe000 }

// Valid reports whether src is one strict RFC 8259 JSON document in UTF-8,
// as Rewrite reads it.
func Valid(src []byte) bool {
	s := scanner{src: src}
	i, err := s.value(s.ws(0))
	return err == nil && s.ws(i) == len(src)
}
