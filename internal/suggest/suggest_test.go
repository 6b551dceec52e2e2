package suggest

import (
	"slices"
	"testing"
)

func TestDistanceCountsTypingMistakes(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"abc", "abc", 0},
		{"grpc-adr", "grpc-addr", 1},        // a missing letter
		{"legalisaiton", "legalisation", 1}, // two neighbours swapped
		{"kitten", "sitting", 3},
		{"", "abc", 3},
	} {
		if got := Distance(c.a, c.b); got != c.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestClosestSuggestsNearNamesOnly(t *testing.T) {
	names := []string{"grpc-addr", "admin-addr", "redis-url", "legalisation_id", "evidence_key", "origin"}
	for _, c := range []struct {
		typed string
		want  []string
	}{
		{"grpc-adr", []string{"grpc-addr"}},
		{"legalisation-id", []string{"legalisation_id"}}, // dash for underscore
		{"Origin", []string{"origin"}},                   // case
		{"redis", []string{"redis-url"}},                 // a prefix
		{"evidencekey", []string{"evidence_key"}},
		{"origin_time", []string{"origin"}}, // a word too many
		{"zzzzzz", nil},
		{"grpc-addr", nil}, // exact names need no suggestion
	} {
		if got := Closest(c.typed, names); !slices.Equal(got, c.want) {
			t.Errorf("Closest(%q) = %v, want %v", c.typed, got, c.want)
		}
	}
	if got := DidYouMean("grpc-adr", names, func(s string) string { return "--" + s }); got != " (did you mean --grpc-addr?)" {
		t.Errorf("DidYouMean = %q", got)
	}
}
