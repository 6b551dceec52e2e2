package canon

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Target is a request target read the one way gdprgate reads it.
type Target struct {
	// Path is the canonical path: "/" and the decoded segments joined by
	// "/", without empty, "." or ".." segments, without ";params" and
	// without a trailing slash; "/" for the root and "*" for an
	// asterisk-form target (OPTIONS *). Segments never contain "/".
	Path string
	// RawQuery is the query as sent, without "?"; read it with Query.
	RawQuery string
}

// Parse reads a request target (origin-form "/path?query", absolute-form
// "http://host/path?query" or "*") into its canonical path:
//
//   - an absolute-form target's scheme and authority are dropped;
//   - a "#" anywhere is refused (no client sends a fragment; servers
//     disagree on whether it ends the path);
//   - the path is split into segments at "/" and at "\" (IIS and ASP.NET
//     treat a backslash as a separator);
//   - each segment loses its ";params" (Tomcat, Spring, Jetty strip them),
//     then is percent-decoded once (hex in either case). An encoded "/",
//     "\" or NUL, a malformed escape, a "%xx" left after decoding (double
//     encoding), invalid or overlong UTF-8, and control characters, raw or
//     encoded, are refused;
//   - empty segments (repeated slashes) are dropped, "." is dropped and ".."
//     removes the segment before it (never above the root), after decoding,
//     so "%2e%2e" and "..;x" are dot segments too.
//
// Literal segments are compared with a route template case-insensitively
// by Match; the values of parameters keep their case. A path that needs
// none of this (the common case) is returned without allocating.
func Parse(target string) (Target, error) {
	if strings.IndexByte(target, '#') >= 0 {
		return Target{}, errorf(ReasonFragment, "a request target must not contain #")
	}
	if target == "*" {
		return Target{Path: "*"}, nil
	}
	if !strings.HasPrefix(target, "/") {
		rest, ok := stripAbsolute(target)
		if !ok {
			return Target{}, errorf(ReasonBadTarget, "a request target must be a path starting with /")
		}
		target = rest
	}
	path, query, _ := strings.Cut(target, "?")
	if p, ok := plainPath(path); ok {
		return Target{Path: p, RawQuery: query}, nil
	}
	p, err := slowPath(path)
	if err != nil {
		return Target{}, err
	}
	return Target{Path: p, RawQuery: query}, nil
}

// stripAbsolute drops "scheme://authority" from an absolute-form target and
// returns the path and query that follow ("/" when there is no path).
func stripAbsolute(t string) (string, bool) {
	i := 0
	for i < len(t) && (isAlpha(t[i]) || i > 0 && (isDigit(t[i]) || t[i] == '+' || t[i] == '-' || t[i] == '.')) {
		i++
	}
	if i == 0 || !strings.HasPrefix(t[i:], "://") {
		return "", false
	}
	rest := t[i+3:]
	j := strings.IndexAny(rest, "/?")
	switch {
	case j < 0:
		return "/", true
	case rest[j] == '?':
		return "/" + rest[j:], true
	default:
		return rest[j:], true
	}
}

// plainPath reports whether p is already canonical but for one trailing
// slash, and returns it without that slash. Only ASCII letters, digits and
// the pchar punctuation other than "%" and ";" may appear; no segment may be
// empty, "." or "..".
func plainPath(p string) (string, bool) {
	if p == "/" {
		return p, true
	}
	segStart := 1
	for i := 1; i < len(p); i++ {
		c := p[i]
		if c == '/' {
			if i == segStart || dotSegment(p[segStart:i]) {
				return "", false
			}
			segStart = i + 1
			continue
		}
		if !plainByte[c] {
			return "", false
		}
	}
	if segStart == len(p) {
		// A trailing slash: fine once, and only after a plain segment.
		return p[:len(p)-1], true
	}
	if dotSegment(p[segStart:]) {
		return "", false
	}
	return p, true
}

func dotSegment(s string) bool { return s == "." || s == ".." }

// plainByte marks the bytes a canonical path may hold as they are.
var plainByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~!$&'()*+,=:@" {
		t[c] = true
	}
	return t
}()

// slowPath builds the canonical path of a path that plainPath refused.
func slowPath(p string) (string, error) {
	buf := make([]byte, 0, len(p))
	rest := p
	for len(rest) > 0 {
		// Every target here starts with "/"; segments end at "/" or "\".
		if rest[0] == '/' || rest[0] == '\\' {
			rest = rest[1:]
		}
		end := strings.IndexAny(rest, `/\`)
		if end < 0 {
			end = len(rest)
		}
		seg := rest[:end]
		rest = rest[end:]
		if k := strings.IndexByte(seg, ';'); k >= 0 {
			seg = seg[:k]
		}
		mark := len(buf)
		buf = append(buf, '/')
		var err error
		if buf, err = decodeSegment(buf, seg); err != nil {
			return "", err
		}
		switch string(buf[mark+1:]) {
		case "", ".":
			buf = buf[:mark]
		case "..":
			buf = buf[:mark]
			if k := lastSlash(buf); k >= 0 {
				buf = buf[:k]
			}
		}
	}
	if len(buf) == 0 {
		return "/", nil
	}
	return string(buf), nil
}

func lastSlash(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '/' {
			return i
		}
	}
	return -1
}

// decodeSegment appends the percent-decoded seg to buf and checks it.
func decodeSegment(buf []byte, seg string) ([]byte, error) {
	start := len(buf)
	ascii := true
	for k := 0; k < len(seg); k++ {
		c := seg[k]
		switch {
		case c == '%':
			if k+2 >= len(seg) {
				return nil, errorf(ReasonBadEscape, "a %% in the path is not followed by two hex digits")
			}
			h, l := unhex(seg[k+1]), unhex(seg[k+2])
			if h < 0 || l < 0 {
				return nil, errorf(ReasonBadEscape, "a %% in the path is not followed by two hex digits")
			}
			d := byte(h<<4 | l)
			switch {
			case d == '/':
				return nil, errorf(ReasonEncodedSlash, "an encoded / (%%2F) in the path is ambiguous")
			case d == '\\':
				return nil, errorf(ReasonEncodedBSlash, "an encoded \\ (%%5C) in the path is ambiguous")
			case d == 0:
				return nil, errorf(ReasonNUL, "an encoded NUL (%%00) in the path is refused")
			case d < 0x20 || d == 0x7f:
				return nil, errorf(ReasonControlChar, "the path contains a control character")
			}
			if d >= 0x80 {
				ascii = false
			}
			buf = append(buf, d)
			k += 2
		case c <= 0x20 || c == 0x7f:
			return nil, errorf(ReasonControlChar, "the path contains a space or control character")
		default:
			if c >= 0x80 {
				ascii = false
			}
			buf = append(buf, c)
		}
	}
	dec := buf[start:]
	for i := 0; i+2 < len(dec); i++ {
		if dec[i] == '%' && unhex(dec[i+1]) >= 0 && unhex(dec[i+2]) >= 0 {
			return nil, errorf(ReasonDoubleEncoding, "the path is percent-encoded twice (%%25 followed by hex digits)")
		}
	}
	if !ascii {
		if !utf8.Valid(dec) {
			return nil, errorf(ReasonInvalidUTF8, "the decoded path is not valid UTF-8")
		}
		for i := 0; i < len(dec); {
			r, n := utf8.DecodeRune(dec[i:])
			if r >= 0x80 && r <= 0x9f {
				return nil, errorf(ReasonControlChar, "the path contains a control character")
			}
			i += n
		}
	}
	return buf, nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// Segments calls fn for each segment of a canonical path; it stops early
// when fn returns false.
func Segments(path string, fn func(seg string) bool) {
	if path == "/" || path == "*" {
		return
	}
	rest := path[1:]
	for {
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			fn(rest)
			return
		}
		if !fn(rest[:i]) {
			return
		}
		rest = rest[i+1:]
	}
}

// Fold returns s with every rune case-folded the way the most lenient
// common router compares it: ToLower(ToUpper(r)). That maps "K" (Kelvin),
// "ſ" (long s) and "ı" (dotless i) to their ASCII letters, as Java's
// equalsIgnoreCase and .NET's OrdinalIgnoreCase do, so a literal route
// segment written in ASCII also matches them. Route templates are folded once
// at compile time; requests are compared with FoldEqual without allocating.
func Fold(s string) string {
	folded := true
	for i := 0; i < len(s) && folded; i++ {
		folded = s[i] < utf8.RuneSelf && (s[i] < 'A' || s[i] > 'Z')
	}
	if folded {
		// ASCII without capitals (most JSON keys): already folded.
		return s
	}
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(foldRune(r))
	}
	return b.String()
}

func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		return r
	}
	return unicode.ToLower(unicode.ToUpper(r))
}

// FoldEqual reports whether s folds to folded (a string already passed
// through Fold).
func FoldEqual(folded, s string) bool {
	i, j := 0, 0
	for i < len(s) && j < len(folded) {
		c := s[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != folded[j] {
				return false
			}
			i++
			j++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		fr, fn := utf8.DecodeRuneInString(folded[j:])
		if foldRune(r) != fr {
			return false
		}
		i += n
		j += fn
	}
	return i == len(s) && j == len(folded)
}
