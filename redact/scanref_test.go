package redact

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// The reference scanner: the byte-at-a-time reading the word-at-a-time
// scanner must agree with on every input — end, flags, error offset and
// message. It is the scanner as it was before strings were read by words,
// with whitespace looked for before every separator; keep it simple, not
// fast.
type refScanner struct {
	src   []byte
	depth int
}

func (s *refScanner) errAt(i int, msg string) error { return &SyntaxError{Offset: i, Msg: msg} }

func (s *refScanner) unexpected(i int, want string) error {
	if i >= len(s.src) {
		return s.errAt(i, "unexpected end of input, want "+want)
	}
	return s.errAt(i, fmt.Sprintf("unexpected %q, want %s", s.src[i], want))
}

func (s *refScanner) ws(i int) int {
	for i < len(s.src) {
		switch s.src[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func (s *refScanner) str(i int) (end int, flags uint8, err error) {
	src := s.src
	for j := i + 1; ; {
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
		case c >= 0x80:
			flags |= strHigh
			r, size := utf8.DecodeRune(src[j:])
			if r == utf8.RuneError && size <= 1 {
				return 0, 0, s.errAt(j, "invalid UTF-8 in string")
			}
			j += size
		default:
			j++
		}
	}
}

func (s *refScanner) num(i int) (int, error) {
	sc := scanner{src: s.src}
	return sc.num(i)
}

func (s *refScanner) lit(i int, word string) (int, error) {
	if len(s.src)-i < len(word) || string(s.src[i:i+len(word)]) != word {
		return 0, s.errAt(i, "invalid literal, want "+word)
	}
	return i + len(word), nil
}

func (s *refScanner) value(i int) (int, error) {
	if i >= len(s.src) {
		return 0, s.unexpected(i, "a value")
	}
	switch c := s.src[i]; c {
	case '"':
		end, _, err := s.str(i)
		return end, err
	case '{', '[':
		s.depth++
		if s.depth > MaxDepth {
			return 0, s.errAt(i, fmt.Sprintf("nesting deeper than %d", MaxDepth))
		}
		closer, want := byte('}'), "',' or '}'"
		if c == '[' {
			closer, want = ']', "',' or ']'"
		}
		j := s.ws(i + 1)
		if j < len(s.src) && s.src[j] == closer {
			s.depth--
			return j + 1, nil
		}
		for {
			var err error
			if c == '{' {
				if j >= len(s.src) || s.src[j] != '"' {
					return 0, s.unexpected(j, "a string key")
				}
				if j, _, err = s.str(j); err != nil {
					return 0, err
				}
				if j = s.ws(j); j >= len(s.src) || s.src[j] != ':' {
					return 0, s.unexpected(j, "':'")
				}
				j = s.ws(j + 1)
			}
			if j, err = s.value(j); err != nil {
				return 0, err
			}
			if j = s.ws(j); j < len(s.src) {
				switch s.src[j] {
				case ',':
					j = s.ws(j + 1)
					continue
				case closer:
					s.depth--
					return j + 1, nil
				}
			}
			return 0, s.unexpected(j, want)
		}
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

// scanDoc reads src as one document with the scanner (the key memo on when
// memo) or the reference, and returns its error.
func scanDoc(src []byte, memo, ref bool) error {
	if ref {
		s := refScanner{src: src}
		i, err := s.value(s.ws(0))
		if err == nil && s.ws(i) != len(src) {
			err = s.errAt(s.ws(i), "trailing data after the JSON value")
		}
		return err
	}
	s := scanner{src: src}
	if memo {
		s.memo = &keyMemos{}
	}
	i, err := s.value(s.ws(0))
	if err == nil && s.ws(i) != len(src) {
		err = s.errAt(s.ws(i), "trailing data after the JSON value")
	}
	return err
}

// assertScansAsReference fails unless the scanner reads src as the
// reference does: the document's error (memo on and off), and the string
// at every quote of src — end, flags and error.
func assertScansAsReference(t *testing.T, src []byte) {
	t.Helper()
	want := fmt.Sprint(scanDoc(src, false, true))
	for _, memo := range []bool{false, true} {
		if got := fmt.Sprint(scanDoc(src, memo, false)); got != want {
			t.Fatalf("scan %q (memo %v): %s, reference %s", src, memo, got, want)
		}
	}
	if Valid(src) != (want == "<nil>") {
		t.Fatalf("Valid(%q) = %v, reference error %s", src, Valid(src), want)
	}
	s, r := scanner{src: src}, refScanner{src: src}
	for i, c := range src {
		if c != '"' {
			continue
		}
		e, f, err := s.str(i)
		we, wf, werr := r.str(i)
		if e != we || f != wf || fmt.Sprint(err) != fmt.Sprint(werr) {
			t.Fatalf("str(%q, %d) = %d %b %v, reference %d %b %v", src, i, e, f, err, we, wf, werr)
		}
	}
}

// stringSpecials are the bytes and sequences that end or interrupt a word
// of plain string bytes.
var stringSpecials = []string{
	`"`, `\"`, `\\`, `\/`, `\b`, `\u00e9`, `\uD83D\uDE00`, `\u12`, `\u12G4`, `\x`, `\`,
	"\x00", "\x01", "\x1f", " ", "\x7f", "!", "#", "[", "]", "\xa2", "\xdc",
	"é", "\u07ff", "\u0800", "€", "\uffff", "😀", "\U0010ffff",
	"\xc0\x80", "\xc1\xbf", "\xc2", "\xc2\x7f", "\xc2\xc0", "\xdf", "\xe0\x80\x80", "\xed\xa0\x80",
	"\xe2\x82", "\xf0\x9f\x98", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\x80", "\xbf", "\xff", "\xfe",
}

// TestScannerAgreesWithTheByteReader: a special byte or sequence at every
// offset 0..17 of strings of every length 0..40, as a value, as a key, and
// followed by the end of the input or by whitespace, scans as the
// byte-at-a-time reference reads it.
func TestScannerAgreesWithTheByteReader(t *testing.T) {
	n := 0
	for _, sp := range stringSpecials {
		for length := 0; length <= 40; length++ {
			for off := 0; off <= min(length, 17); off++ {
				str := strings.Repeat("a", off) + sp + strings.Repeat("b", max(length-off-len(sp), 0))
				for _, form := range []string{`"%s"`, `["%s"]`, `{"%s":1}`, `{"k":"%s" }`, `["%s`, `{"%s"`, `["x","%s",1]`} {
					assertScansAsReference(t, []byte(fmt.Sprintf(form, str)))
					n++
				}
			}
		}
	}
	t.Logf("%d bodies", n)
}

// TestScannerTruncatedAtEveryOffset: a list body cut at every byte scans
// as the reference reads it (the same error at the same offset), and so do
// the strings in it.
func TestScannerTruncatedAtEveryOffset(t *testing.T) {
	body := listBody(3)
	body = append(body[:len(body)-1], `,"x":["\u00e9\t", true , false,null ,-1.5e+3,{"a" : [ ] } , "Dlouhá 😀"]}`...)
	for k := 0; k <= len(body); k++ {
		assertScansAsReference(t, body[:k])
	}
}

// TestScannerInvalidUTF8AtEveryOffset: a list body with each of its bytes
// in turn replaced by an invalid or special byte scans as the reference
// reads it.
func TestScannerInvalidUTF8AtEveryOffset(t *testing.T) {
	body := listBody(2)
	for k := range body {
		for _, c := range []byte{0x80, 0xc2, 0xe2, 0xf0, 0xff, '"', '\\', 0x1f, ' ', ':', ','} {
			b := append([]byte(nil), body...)
			b[k] = c
			assertScansAsReference(t, b)
		}
	}
}

func FuzzScanner(f *testing.F) {
	for _, s := range []string{
		`{"a":"b","c":[1,2.5e3,true,false,null],"d":{"e":"\u00e9\n"}}`, "\"Nováková\xff\"", `"aaaaaaa\"bbbbbbbb"`,
		` [ "x" , { "y" : "z" } ] `, `"\ud800\udc00"`, string(listBody(2)),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) { assertScansAsReference(t, in) })
}

// TestRewriteWhitespaceAtEveryOffset: the rewriter looks for separators
// and quotes before whitespace; a list body with whitespace inserted at
// any offset rewrites to what the compact body does (compacted, the
// whitespace is kept where it stands), and is refused exactly when it is
// not JSON (whitespace inside a token).
func TestRewriteWhitespaceAtEveryOffset(t *testing.T) {
	m := benchMap(t)
	p := alternating()
	body := listBody(2)
	want, _, err := m.Rewrite(nil, body, p)
	if err != nil {
		t.Fatal(err)
	}
	// inside[k]: an insert before body[k] lands inside a string.
	inside := make([]bool, len(body)+1)
	for k, in, esc := 0, false, false; k < len(body); k++ {
		inside[k] = in
		switch c := body[k]; {
		case esc:
			esc = false
		case in && c == '\\':
			esc = true
		case c == '"':
			in = !in
		}
	}
	compared := 0
	for k := 0; k <= len(body); k++ {
		if inside[k] {
			continue
		}
		for _, ws := range []string{" ", "\n\t ", "\r"} {
			in := append(append(append([]byte(nil), body[:k]...), ws...), body[k:]...)
			got, _, err := m.Rewrite(nil, in, p)
			if valid := json.Valid(in); (err == nil) != valid {
				t.Fatalf("offset %d: error %v, json.Valid %v", k, err, valid)
			}
			if err != nil {
				assertScansAsReference(t, in)
				continue
			}
			var a, b bytes.Buffer
			if json.Compact(&a, got) != nil || json.Compact(&b, want) != nil || !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Fatalf("offset %d %q:\n got %s\nwant %s", k, ws, got, want)
			}
			compared++
		}
	}
	if compared < 3*150 {
		t.Fatalf("only %d bodies compared", compared)
	}
}
