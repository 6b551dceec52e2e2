package gate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

// A denial's body is encoding/json's encoding of the pair, byte for byte,
// whether it is encoded now, served from the table, or past its bound.
func TestDenyBodyIsEncodingJSONsBytes(t *testing.T) {
	want := func(reason, message string) []byte {
		b, err := json.Marshal(map[string]string{"error": reason, "message": message})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pairs := [][2]string{
		{"forbidden", "the caller's role may not see this subject"},
		{"store_unavailable", "gdprgate cannot reach its store; failing closed"},
		{"html", `<script>&"quoted"</script>`},
		{"controls", "tab\there\nnewline\x00nul\u2028\u2029"},
		{"invalid_utf8", "bad \xff\xfe bytes"},
		{"", ""},
	}
	for _, p := range pairs {
		first := denyBody(p[0], p[1])
		again := denyBody(p[0], p[1])
		if !bytes.Equal(first, want(p[0], p[1])) || !bytes.Equal(again, first) {
			t.Errorf("%q: %s then %s, want %s", p, first, again, want(p[0], p[1]))
		}
		if cap(first) != len(first) {
			t.Errorf("%q: capacity %d beyond length %d: an append would write into the shared body", p, cap(first), len(first))
		}
	}
	// Past the bound: still the same bytes, the table no bigger.
	for i := range maxDenyBodies + 10 {
		r, m := fmt.Sprintf("r%d", i), fmt.Sprintf("message <%d>", i)
		if got := denyBody(r, m); !bytes.Equal(got, want(r, m)) {
			t.Fatalf("%s: %s", r, got)
		}
	}
	if n := len(*denyBodies.Load()); n > maxDenyBodies {
		t.Errorf("%d pairs kept, bound %d", n, maxDenyBodies)
	}
	if got := deny(0, "html", pairs[2][1]); got.Status != 403 || !bytes.Equal(got.Body, want("html", pairs[2][1])) {
		t.Errorf("deny: %d %s", got.Status, got.Body)
	}
}
