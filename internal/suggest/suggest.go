// Package suggest finds the name a person probably meant when they typed a
// name that does not exist: a flag, a subcommand, a field of a YAML file.
package suggest

import (
	"sort"
	"strings"
)

// Closest returns the candidates nearest to typed, best first: those within
// an edit distance of max(2, len/4) (case-insensitive), plus those that
// typed is a prefix of (or that are a prefix of typed) and those that differ
// only in '-' versus '_'. At most three.
func Closest(typed string, candidates []string) []string {
	t := strings.ToLower(typed)
	limit := max(2, len(t)/4)
	type hit struct {
		name string
		d    int
	}
	var hits []hit
	seen := map[string]bool{}
	for _, c := range candidates {
		if seen[c] || c == typed {
			continue
		}
		seen[c] = true
		lc := strings.ToLower(c)
		d := Distance(t, lc)
		switch {
		case normalise(lc) == normalise(t):
			d = 0
		case len(t) >= 3 && strings.HasPrefix(lc, t), len(lc) >= 4 && strings.HasPrefix(t, lc):
			d = min(d, 1) // a name cut short, or one with a word too many
		}
		if d <= limit {
			hits = append(hits, hit{c, d})
		}
	}
	sort.SliceStable(hits, func(i, j int) bool {
		if hits[i].d != hits[j].d {
			return hits[i].d < hits[j].d
		}
		return hits[i].name < hits[j].name
	})
	var out []string
	for i := 0; i < len(hits) && i < 3; i++ {
		out = append(out, hits[i].name)
	}
	return out
}

// DidYouMean formats Closest as " (did you mean x?)", or "" when nothing is
// close. quote formats one name (a flag gets its dashes).
func DidYouMean(typed string, candidates []string, quote func(string) string) string {
	c := Closest(typed, candidates)
	if len(c) == 0 {
		return ""
	}
	if quote == nil {
		quote = func(s string) string { return s }
	}
	q := make([]string, len(c))
	for i, s := range c {
		q[i] = quote(s)
	}
	return " (did you mean " + strings.Join(q, " or ") + "?)"
}

func normalise(s string) string { return strings.ReplaceAll(s, "-", "_") }

// Distance is the optimal-string-alignment edit distance (insertions,
// deletions, substitutions and transpositions of neighbours each cost 1),
// the usual model of typing mistakes.
func Distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
