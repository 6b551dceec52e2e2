package redact

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestStreamOverTheBoundKeepsWhatItReleased: a Write that releases bytes
// and then finds the held item over MaxHeld returns those bytes as they
// were released, whatever the capacity of dst — the held item's rewrite
// (run to find the error Rewrite would give) must not write over them,
// nor the word stores of a redacted value leave its raw bytes in them (the
// proxy serves what Write returned before the error).
func TestStreamOverTheBoundKeepsWhatItReleased(t *testing.T) {
	m, err := Compile(Spec{
		Fields:      []FieldSpec{{Path: "data.#.email", Bit: 1, Action: ActNull}},
		SubjectPath: "data.#.id",
	})
	if err != nil {
		t.Fatal(err)
	}
	head := `{"meta":"` + strings.Repeat("m", 60) + `","data":[`
	item := `{"email":"SECRETSECRETSECRETSECRETSECRET","id":"c-1","pad":"` + strings.Repeat("p", 200)
	in := []byte(head + item)
	var want []byte
	for _, c := range []int{0, 1, 40, 64, 128, 4096} {
		s, err := m.NewStream(Fixed(0), StreamOptions{MaxHeld: 64})
		if err != nil {
			t.Fatal(err)
		}
		out, err := s.Write(make([]byte, 0, c), in)
		if !errors.Is(err, ErrHeldTooLarge) {
			t.Fatalf("cap %d: err %v, want ErrHeldTooLarge", c, err)
		}
		if bytes.Contains(out, []byte("SECRET")) || bytes.Contains(out, []byte("CRET")) {
			t.Fatalf("cap %d: the output holds the redacted value's bytes: %q", c, out)
		}
		if c == 0 {
			want = out
		} else if string(out) != string(want) {
			t.Fatalf("cap %d: output %q, want %q (as with no capacity)", c, out, want)
		}
		if !strings.HasPrefix(head, string(out)) {
			t.Fatalf("cap %d: output %q is not a prefix of the head", c, out)
		}
	}
}
