package redact

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// replaceCase is a list whose items hold mapped keys of every length
// around kept members of every length, so that the runs kept between two
// replacements are 0 to ~40 bytes long (replace's word stores take those
// of at most 32), with replacements of every length from 0 (removed) to 12
// (masks), the last item's values up to the end of the body.
type replaceCase struct {
	spec Spec
	body []byte
	want []byte // the redacted body, built member by member
}

func replaceCases(t *testing.T) []replaceCase {
	var cases []replaceCase
	for _, mask := range []string{"", "m", "mm", "mmmm", "mmmmm", "mmmmmm", "mmmmmmm", "mmmmmmmmmm", "é"} {
		for _, act := range []Action{ActNull, ActMask, ActRemove} {
			var fields []FieldSpec
			for l := 1; l <= 14; l++ {
				fields = append(fields, FieldSpec{Path: "d.#." + strings.Repeat("r", l), Bit: 0, Action: act, Mask: mask})
			}
			repl := map[Action]string{ActNull: "null", ActMask: string(appendQuoted(nil, cmp(mask, DefaultMask)))}[act]
			var body, want bytes.Buffer
			body.WriteString(`{"d":[`)
			want.WriteString(`{"d":[`)
			for item := 0; item < 30; item++ {
				if item > 0 {
					body.WriteByte(',')
					want.WriteByte(',')
				}
				var in, out []string
				for m := 0; m < 8; m++ {
					l := 1 + (item*3+m*5)%14
					mapped := fmt.Sprintf(`"%s":%s`, strings.Repeat("r", l), []string{`"v"`, `1`, `""`, `"0123456789abcdef"`, `{"x":1}`, `[true]`, `null`}[(item+m)%7])
					in = append(in, mapped)
					if act != ActRemove {
						out = append(out, fmt.Sprintf(`"%s":%s`, strings.Repeat("r", l), repl))
					}
					if (item+m)%3 == 0 {
						continue // two mapped members in a row
					}
					kept := fmt.Sprintf(`"%s":"%s"`, strings.Repeat("k", (item+m)%13), strings.Repeat("x", (item*7+m)%19))
					in = append(in, kept)
					out = append(out, kept)
				}
				body.WriteString("{" + strings.Join(in, ",") + "}")
				want.WriteString("{" + strings.Join(out, ",") + "}")
			}
			body.WriteString(`]}`)
			want.WriteString(`]}`)
			cases = append(cases, replaceCase{Spec{Fields: fields}, body.Bytes(), want.Bytes()})
		}
	}
	return cases
}

func cmp(s, or string) string {
	if s == "" {
		return or
	}
	return s
}

// TestRewriteReplacementsWhateverTheOutputBuffer: every replacement is
// written as the member-by-member reference says, whatever the output
// buffer — none, one just large enough, one with spare capacity full of
// other bytes, after a prefix — and the body cut short at any point fails
// with the output untouched.
func TestRewriteReplacementsWhateverTheOutputBuffer(t *testing.T) {
	for ci, c := range replaceCases(t) {
		m, err := Compile(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		for _, prefix := range []string{"", "P", "prefix-of-17-byte"} {
			for _, spare := range []int{-1, 0, 7, 24, 4096} {
				var dst []byte
				if spare >= 0 {
					dst = bytes.Repeat([]byte{0xaa}, len(prefix)+len(c.body)+spare)[:0]
				}
				dst = append(dst, prefix...)
				out, res, err := m.Rewrite(dst, c.body, Fixed(0))
				if err != nil {
					t.Fatalf("case %d: %v", ci, err)
				}
				if want := prefix + string(c.want); string(out) != want {
					t.Fatalf("case %d, prefix %q, spare %d:\n got %s\nwant %s", ci, prefix, spare, out, want)
				}
				if res.Values != 30*8 {
					t.Fatalf("case %d: %d values replaced, want %d", ci, res.Values, 30*8)
				}
			}
		}
		for cut := len(c.body) - 40; cut < len(c.body); cut++ {
			dst := append(make([]byte, 0, 2*len(c.body)), "keep"...)
			out, _, err := m.Rewrite(dst, c.body[:cut], Fixed(0))
			if err == nil || string(out) != "keep" {
				t.Fatalf("case %d cut at %d: %q, %v", ci, cut, out, err)
			}
		}
	}
}
