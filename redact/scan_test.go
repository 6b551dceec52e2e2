package redact

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestScannerStringsAtEveryWordOffset: the string scanner reads eight
// bytes at a time and takes two-byte UTF-8 sequences without decoding
// them; each special byte — quote, backslash and every escape, control
// bytes, each kind of UTF-8 sequence valid or not (overlong, surrogate,
// truncated, stray continuation) — at every offset within and across a
// word, and at the end of the input, is judged as encoding/json judges
// strict UTF-8 JSON, and the scanner ends the string where it ends.
func TestScannerStringsAtEveryWordOffset(t *testing.T) {
	specials := []string{
		`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, `\u00e9`, `\uD83D\uDE00`, `\u12`, `\u12G4`, `\x`, `\`, `\'`,
		"\x00", "\x01", "\x1f", "\x7f", " ", "~",
		"é", "\u07ff", "\u0800", "€", "\uffff", "😀", "\U0010ffff",
		"\xc0\x80", "\xc1\xbf", "\xc2", "\xc2\x7f", "\xc2\xc0", "\xdf", "\xdf\xbf", "\xe0\x80\x80", "\xed\xa0\x80",
		"\xe2\x82", "\xf0\x9f\x98", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\x80", "\xbf", "\xff", "\xfe",
		`"`, `""`, "a\"b",
	}
	for _, sp := range specials {
		for before := range 18 {
			for after := range 10 {
				for _, tail := range []string{`"`, `"]`, `" `, ""} {
					body := `["` + strings.Repeat("a", before) + sp + strings.Repeat("b", after) + tail
					if tail == `"` || tail == `" ` {
						body += "]"
					}
					want := json.Valid([]byte(body)) && utf8.ValidString(body)
					if got := Valid([]byte(body)); got != want {
						t.Fatalf("Valid(%q) = %v, want %v", body, got, want)
					}
					if !want {
						continue
					}
					s := scanner{src: []byte(body)}
					end, _, err := s.str(1)
					if err != nil {
						t.Fatalf("str(%q): %v", body, err)
					}
					var v []string
					if err := json.Unmarshal([]byte(body), &v); err != nil || len(v) == 0 {
						continue // the special byte made it two strings or more
					}
					lit, _ := json.Marshal(v[0])
					var back string
					if err := json.Unmarshal([]byte(body[1:end]), &back); err != nil || back != v[0] {
						t.Fatalf("str(%q) ended at %d (%q), want the literal of %s", body, end, body[1:end], lit)
					}
				}
			}
		}
	}
}

// TestScannerWhitespaceBetweenTokens: every JSON whitespace byte, and the
// bytes at most ' ' that are not whitespace, between every pair of tokens.
func TestScannerWhitespaceBetweenTokens(t *testing.T) {
	for c := range 0x21 {
		for _, ws := range []string{string(rune(c)), " " + string(rune(c)), string(rune(c)) + "\t"} {
			for _, form := range []string{`%s{%s"a"%s:%s[%s1%s,%s"x"%s]%s}%s`} {
				args := make([]any, strings.Count(form, "%s"))
				for k := range args {
					args[k] = ""
				}
				for k := range args {
					args[k] = ws
					body := fmt.Sprintf(form, args...)
					want := json.Valid([]byte(body))
					if got := Valid([]byte(body)); got != want {
						t.Fatalf("Valid(%q) = %v, want %v", body, got, want)
					}
					args[k] = ""
				}
			}
		}
	}
}
