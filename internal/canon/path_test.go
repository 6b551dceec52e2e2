package canon

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestParseReadsEveryRouterVariantAsOnePath(t *testing.T) {
	cases := []struct {
		target, path, query string
	}{
		{"/api/contacts/c-2", "/api/contacts/c-2", ""},
		{"/", "/", ""},
		{"*", "*", ""},
		{"/api/contacts/c-2?x=1", "/api/contacts/c-2", "x=1"},
		{"/api/contacts/c-2/", "/api/contacts/c-2", ""},
		{"/api/contacts/c%2D2", "/api/contacts/c-2", ""},
		{"/api/contacts/c%2d2", "/api/contacts/c-2", ""},
		{"/api/contacts/%63-2", "/api/contacts/c-2", ""},
		{"/api/%63ontacts/c-2", "/api/contacts/c-2", ""},
		{"/api//contacts/c-2", "/api/contacts/c-2", ""},
		{"//api/contacts/c-2", "/api/contacts/c-2", ""},
		{"/api/contacts/c-2//", "/api/contacts/c-2", ""},
		{"/api/contacts/./c-2", "/api/contacts/c-2", ""},
		{"/api/x/../contacts/c-2", "/api/contacts/c-2", ""},
		{"/api/x/%2e%2e/contacts/c-2", "/api/contacts/c-2", ""},
		{"/api/x/.%2E/contacts/c-2", "/api/contacts/c-2", ""},
		{"/api/x/..;y=1/contacts/c-2", "/api/contacts/c-2", ""},
		{"/../../api/contacts/c-2", "/api/contacts/c-2", ""},
		{"/api/contacts/c-2/..", "/api/contacts", ""},
		{"/api/contacts/c-2;jsessionid=1", "/api/contacts/c-2", ""},
		{"/api;v=1/contacts;x/c-2;y", "/api/contacts/c-2", ""},
		{"/api/contacts/c%3B2", "/api/contacts/c;2", ""},
		{`/api\contacts\c-2`, "/api/contacts/c-2", ""},
		{`/api/x\..\contacts/c-2`, "/api/contacts/c-2", ""},
		{"/API/Contacts/c-2", "/API/Contacts/c-2", ""},
		{"/api/contacts/a+b", "/api/contacts/a+b", ""},
		{"/api/contacts/a%20b", "/api/contacts/a b", ""},
		{"/api/contacts/100%25", "/api/contacts/100%", ""},
		{"/api/contacts/%C3%A9", "/api/contacts/é", ""},
		{"/api/contacts/é", "/api/contacts/é", ""},
		{"http://crm.local/api/contacts/c-2?x", "/api/contacts/c-2", "x"},
		{"HTTPS://crm.local:8443//api/contacts/c%2D2", "/api/contacts/c-2", ""},
		{"http://crm.local", "/", ""},
		{"http://crm.local?x=1", "/", "x=1"},
		{"/api/contacts/c-2?a=%2F&b=..", "/api/contacts/c-2", "a=%2F&b=.."},
	}
	for _, tc := range cases {
		got, err := Parse(tc.target)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.target, err)
			continue
		}
		if got.Path != tc.path || got.RawQuery != tc.query {
			t.Errorf("Parse(%q) = %q ? %q, want %q ? %q", tc.target, got.Path, got.RawQuery, tc.path, tc.query)
		}
	}
}

func TestParseRefusesAmbiguousTargets(t *testing.T) {
	cases := []struct {
		target, reason string
	}{
		{"/api/contacts/c%2F2", ReasonEncodedSlash},
		{"/api/contacts/c%2f2", ReasonEncodedSlash},
		{"/api%2Fcontacts/c-2", ReasonEncodedSlash},
		{"/api/contacts/c%5C2", ReasonEncodedBSlash},
		{"/api/contacts/c-2%00", ReasonNUL},
		{"/api/contacts/c%252D2", ReasonDoubleEncoding},
		{"/api/contacts/%252e%252e", ReasonDoubleEncoding},
		{"/api/contacts/c%25%32%44", ReasonDoubleEncoding},
		{"/api/contacts/c%2", ReasonBadEscape},
		{"/api/contacts/c%", ReasonBadEscape},
		{"/api/contacts/c%zz", ReasonBadEscape},
		{"/api/contacts/%u0063-2", ReasonBadEscape},
		{"/api/contacts/%C0%AF", ReasonInvalidUTF8},
		{"/api/contacts/%C0%AE%C0%AE", ReasonInvalidUTF8},
		{"/api/contacts/%FF", ReasonInvalidUTF8},
		{"/api/contacts/\xff", ReasonInvalidUTF8},
		{"/api/contacts/%ED%A0%80", ReasonInvalidUTF8},
		{"/api/contacts/c%0A2", ReasonControlChar},
		{"/api/contacts/c%7F2", ReasonControlChar},
		{"/api/contacts/c%C2%852", ReasonControlChar},
		{"/api/contacts/c 2", ReasonControlChar},
		{"/api/contacts/c\t2", ReasonControlChar},
		{"/api/contacts/c-2#x", ReasonFragment},
		{"/api/contacts/c-2?x#y", ReasonFragment},
		{"api/contacts/c-2", ReasonBadTarget},
		{"", ReasonBadTarget},
		{"mailto:x", ReasonBadTarget},
	}
	for _, tc := range cases {
		got, err := Parse(tc.target)
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("Parse(%q) = %q, %v; want refusal %s", tc.target, got.Path, err, tc.reason)
			continue
		}
		if ce.Reason != tc.reason {
			t.Errorf("Parse(%q): reason %s, want %s (%s)", tc.target, ce.Reason, tc.reason, ce.Message)
		}
	}
}

func TestParseDoesNotAllocateForCanonicalPaths(t *testing.T) {
	for _, target := range []string{"/api/contacts/c-1", "/api/contacts/c-1/", "/api/contacts?page=2&per_page=50", "/"} {
		n := testing.AllocsPerRun(100, func() {
			if _, err := Parse(target); err != nil {
				t.Fatal(err)
			}
		})
		if n != 0 {
			t.Errorf("Parse(%q): %v allocations, want 0", target, n)
		}
	}
}

func TestFoldEqualMatchesWhatLenientRoutersMatch(t *testing.T) {
	cases := []struct {
		tmpl, seg string
		want      bool
	}{
		{"contacts", "contacts", true},
		{"contacts", "CONTACTS", true},
		{"contacts", "Contacts", true},
		{"contacts", "contact\u017f", true}, // ſ: Java and .NET upper-case it to S
		{"kit", "\u212Ait", true},           // Kelvin sign
		{"id", "\u0131d", true},             // dotless i
		{"id", "\u0130d", true},             // dotted capital I
		{"contacts", "contact", false},
		{"contacts", "contactss", false},
		{"contacts", "ｃontacts", false}, // fullwidth: no common router folds it
		{"é", "É", true},
	}
	for _, tc := range cases {
		if got := FoldEqual(Fold(tc.tmpl), tc.seg); got != tc.want {
			t.Errorf("FoldEqual(%q, %q) = %v, want %v", tc.tmpl, tc.seg, got, tc.want)
		}
	}
}

func TestIDRefusesWhatCannotBeASubject(t *testing.T) {
	cases := []struct {
		id, reason string
	}{
		{"c-1", ""},
		{"é", ""},
		{strings.Repeat("x", 256), ""},
		{strings.Repeat("x", 257), ReasonIDTooLong},
		{"a\x00b", ReasonControlChar},
		{"a\nb", ReasonControlChar},
		{"a\u0085b", ReasonControlChar},
		{"a\xffb", ReasonInvalidUTF8},
	}
	for _, tc := range cases {
		err := ID(tc.id, 0)
		var ce *Error
		switch {
		case tc.reason == "" && err != nil:
			t.Errorf("ID(%q): %v", tc.id, err)
		case tc.reason != "" && (!errors.As(err, &ce) || ce.Reason != tc.reason):
			t.Errorf("ID(%q) = %v, want %s", tc.id, err, tc.reason)
		}
	}
	if err := ID("abcd", 3); err == nil {
		t.Error("a configured bound of 3 bytes let a 4-byte id through")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"/api/contacts/c-1", "/api//x/../c%2D1;p", `/a\b`, "http://h/x?y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		got, err := Parse(target)
		if err != nil {
			return
		}
		if got.Path == "*" {
			return
		}
		// A canonical path is a fixed point, has no empty or dot
		// segment, and every segment survives as it is.
		again, err := Parse(escapeCanonical(got.Path))
		if err != nil || again.Path != got.Path {
			t.Fatalf("Parse(%q) = %q, not stable: %q %v", target, got.Path, again.Path, err)
		}
		Segments(got.Path, func(seg string) bool {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("Parse(%q) = %q has segment %q", target, got.Path, seg)
			}
			return true
		})
	})
}

// escapeCanonical re-encodes a canonical path so that Parse reads it back:
// every byte outside the plain set is percent-encoded.
func escapeCanonical(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '/' || plainByte[c] {
			b.WriteByte(c)
			continue
		}
		const hex = "0123456789ABCDEF"
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// BenchmarkParse: the canonical path on the hot path. A canonical path
// must cost no allocation; a variant pays for its rewrite.
func BenchmarkParse(b *testing.B) {
	for _, tc := range []struct{ name, target string }{
		{"canonical", "/api/contacts/c-1"},
		{"canonical_query", "/api/contacts?page=2&per_page=50"},
		{"variant", "/API//contacts/./c%2D1;jsessionid=1"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(tc.target); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Fold's shortcut for ASCII without capitals returns what folding rune by
// rune returns, and allocates nothing.
func TestFoldShortcutIsTheRuneByRuneFold(t *testing.T) {
	slow := func(s string) string {
		var b strings.Builder
		for _, r := range s {
			if r < utf8.RuneSelf {
				b.WriteRune(unicode.ToLower(r))
			} else {
				b.WriteRune(unicode.ToLower(unicode.ToUpper(r)))
			}
		}
		return b.String()
	}
	for _, s := range []string{"", "first_name", "email", "a-b.c/1", "First_Name", "ſ", "K", "\xff", "ok\xffx", "\x00\x7f", "@[`{"} {
		if got, want := Fold(s), slow(s); got != want {
			t.Errorf("Fold(%q) = %q, want %q", s, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = Fold("first_name") }); n != 0 {
		t.Errorf("Fold of a folded key: %v allocations", n)
	}
}
