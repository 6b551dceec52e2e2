package redact

// The rewriter against gjson (github.com/tidwall/gjson), the library whose
// path language the route map speaks: on generated bodies and paths, the
// values the rewriter redacts are exactly the values gjson.GetBytes selects,
// except where the rewriter deliberately redacts more:
//
//   - gjson returns the FIRST member matching a path component (a duplicate
//     key, or several keys matching one wildcard); the rewriter redacts
//     every one, because a backend or a browser may read any of them.
//   - gjson compares keys byte for byte; the rewriter matches them under
//     case folding unless the spec asks for ExactCase ("HEALTH_NOTES" is
//     redacted like "health_notes").
//
// So the tests check: the rewriter in ExactCase mode redacts exactly what an
// all-matches reader (ref below, built on encoding/json and gjson's own
// wildcard matcher) selects; gjson's selection is a subset of it, and equal
// to it whenever no object on the way has two members matching one
// component; and the case-folding rewriter redacts a superset of the exact
// one, exactly what the reference selects under folding.
//
// Bodies are first normalised: every scalar and every empty container
// becomes a unique number, so that a selected value is identified by the
// numbers inside it (keys, with their escapes, are kept as written).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/tidwall/gjson"
	"github.com/tidwall/match"
)

// normalize re-encodes valid JSON compactly with unique numbers for leaves.
func normalize(src []byte) []byte {
	s := &scanner{src: src}
	var out []byte
	n := 1000
	leaf := func() {
		n++
		out = strconv.AppendInt(out, int64(n), 10)
	}
	var walk func(i int) int
	walk = func(i int) int {
		i = s.ws(i)
		switch src[i] {
		case '{', '[':
			open, shut := src[i], byte('}')
			if open == '[' {
				shut = ']'
			}
			j := s.ws(i + 1)
			if src[j] == shut {
				leaf()
				return j + 1
			}
			out = append(out, open)
			for {
				if open == '{' {
					end, _, _ := s.str(j)
					out = append(out, src[j:end]...)
					out = append(out, ':')
					j = s.ws(end) + 1
				}
				j = s.ws(walk(j))
				if src[j] == ',' {
					out = append(out, ',')
					j++
					continue
				}
				out = append(out, shut)
				return j + 1
			}
		default:
			end, _ := s.value(i)
			leaf()
			return end
		}
	}
	walk(0)
	return out
}

// leaves returns the numbers in a JSON text (the leaves of a normalised body).
func leaves(t testing.TB, raw []byte) map[string]bool {
	out := map[string]bool{}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("leaves of %s: %v", raw, err)
		}
		if n, ok := tok.(json.Number); ok {
			out[string(n)] = true
		}
	}
}

// jnode is a decoded document that keeps member order and duplicates.
type jnode struct {
	keys []string
	kids []*jnode
	obj  bool
	arr  bool
	leaf string
}

func decodeTree(t testing.TB, raw []byte) *jnode {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var read func() *jnode
	read = func() *jnode {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("decode %s: %v", raw, err)
		}
		switch tok := tok.(type) {
		case json.Delim:
			n := &jnode{obj: tok == '{', arr: tok == '['}
			for dec.More() {
				if n.obj {
					k, _ := dec.Token()
					n.keys = append(n.keys, k.(string))
				}
				n.kids = append(n.kids, read())
			}
			_, _ = dec.Token()
			return n
		case json.Number:
			return &jnode{leaf: string(tok)}
		}
		t.Fatalf("unexpected token %v", tok)
		return nil
	}
	return read()
}

func (n *jnode) collect(out map[string]bool) {
	if n.leaf != "" {
		out[n.leaf] = true
	}
	for _, k := range n.kids {
		k.collect(out)
	}
}

// keyMatches is the reference's reading of one path component against an
// object key: gjson's own wildcard matcher when exact, a case-insensitive
// regular expression otherwise (Go's (?i) folds like strings.EqualFold).
func keyMatches(s seg, key string, fold bool) bool {
	switch {
	case s.kind == segWild && !fold:
		return match.Match(key, s.key)
	case s.kind == segWild:
		if re, ok := foldPatterns.Load(s.key); ok {
			return re.(*regexp.Regexp).MatchString(key)
		}
		var re strings.Builder
		re.WriteString(`(?is)^`)
		for _, r := range s.key {
			switch r {
			case '*':
				re.WriteString(`.*`)
			case '?':
				re.WriteString(`.`)
			default:
				re.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
		re.WriteString(`$`)
		c := regexp.MustCompile(re.String())
		foldPatterns.Store(s.key, c)
		return c.MatchString(key)
	case fold:
		return strings.EqualFold(s.key, key)
	default:
		return s.key == key
	}
}

var foldPatterns sync.Map // wildcard pattern -> compiled case-insensitive regexp

// ref selects every value the path reaches (all matches), and reports
// through amb whether some object had two members matching one component
// on the way (where gjson would pick the first).
func ref(n *jnode, segs []seg, fold bool, out map[string]bool, amb *bool) {
	if len(segs) == 0 {
		n.collect(out)
		return
	}
	s, rest := segs[0], segs[1:]
	switch {
	case n.obj:
		hits := 0
		for i, k := range n.keys {
			if keyMatches(s, k, fold) {
				hits++
				ref(n.kids[i], rest, fold, out, amb)
			}
		}
		if hits > 1 {
			*amb = true
		}
	case n.arr && s.kind == segEach:
		for _, k := range n.kids {
			ref(k, rest, fold, out, amb)
		}
	case n.arr && s.kind == segKey && s.idx >= 0 && s.idx < len(n.kids):
		ref(n.kids[s.idx], rest, fold, out, amb)
	}
}

// redactedLeaves runs the rewriter (nothing visible) and returns the leaves
// it removed.
func redactedLeaves(t testing.TB, body []byte, paths []string, exact bool) map[string]bool {
	spec := Spec{ExactCase: exact}
	for _, p := range paths {
		spec.Fields = append(spec.Fields, FieldSpec{Path: p, Bit: 1})
	}
	m, err := Compile(spec)
	if err != nil {
		t.Fatalf("compile %q: %v", paths, err)
	}
	m.anyShape = true // what the paths select, whatever the shape
	out, _, err := m.Rewrite(nil, body, Fixed(0))
	if err != nil {
		t.Fatalf("rewrite %s with %q: %v", body, paths, err)
	}
	before, after := leaves(t, body), leaves(t, out)
	for l := range after {
		delete(before, l)
	}
	return before
}

func gjsonLeaves(t testing.TB, body []byte, path string) map[string]bool {
	res := gjson.GetBytes(body, path)
	if !res.Exists() {
		return map[string]bool{}
	}
	return leaves(t, []byte(res.Raw))
}

func subset(a, b map[string]bool) bool {
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func sorted(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }

// checkAgainstGJSON checks one normalised body and one path.
func checkAgainstGJSON(t testing.TB, body []byte, path string) {
	p, err := ParsePath(path)
	if err != nil {
		t.Fatalf("path %q: %v", path, err)
	}
	tree := decodeTree(t, body)

	exact := redactedLeaves(t, body, []string{path}, true)
	want, amb := map[string]bool{}, false
	ref(tree, p.segs, false, want, &amb)
	if !maps.Equal(exact, want) {
		t.Fatalf("exact case: rewriter redacts %v, all matches are %v\nbody %s\npath %q", sorted(exact), sorted(want), body, path)
	}
	gj := gjsonLeaves(t, body, path)
	if !subset(gj, exact) {
		t.Fatalf("gjson selects %v, the rewriter redacts only %v\nbody %s\npath %q", sorted(gj), sorted(exact), body, path)
	}
	if !amb && !maps.Equal(gj, exact) {
		t.Fatalf("no duplicate match, yet gjson selects %v and the rewriter redacts %v\nbody %s\npath %q", sorted(gj), sorted(exact), body, path)
	}

	folded := redactedLeaves(t, body, []string{path}, false)
	wantFold, ambFold := map[string]bool{}, false
	ref(tree, p.segs, true, wantFold, &ambFold)
	if !maps.Equal(folded, wantFold) {
		t.Fatalf("case folding: rewriter redacts %v, all matches are %v\nbody %s\npath %q", sorted(folded), sorted(wantFold), body, path)
	}
	if !subset(exact, folded) {
		t.Fatalf("case folding redacts %v, less than exact case %v\nbody %s\npath %q", sorted(folded), sorted(exact), body, path)
	}
}

// genKeys are object keys as written in JSON (escapes included), chosen to
// collide: case variants, escapes of the same name, index-like keys, keys
// that need escaping in a path, and the Kelvin sign, which folds to k.
var genKeys = []string{
	`a`, `b`, `A`, `ab`, `ba`, `\u0061`, `a\u0062`, `AB`, `é`, `\u00c9`, `#`, `0`, `1`, `01`,
	`a.b`, `a*`, `x y`, `k`, `\u212a`, `K`, `health_notes`, `HEALTH_NOTES`, `health\u005fnotes`,
}

// genSegs are path components: literal keys (escaped where gjson needs it),
// wildcards, indices and #.
var genSegs = []string{
	`a`, `b`, `A`, `ab`, `é`, `É`, `\#`, `0`, `1`, `01`, `2`, `a\.b`, `a\*`, `x y`, `k`, `K`,
	`health_notes`, `#`, `#`, `*`, `a*`, `?`, `?b`, `*b`, `é*`, `h*s`, `*_*`,
}

func genValue(r *rand.Rand, depth int, out *[]byte) {
	if depth > 3 || r.IntN(4) == 0 {
		*out = append(*out, "1"...)
		return
	}
	n := r.IntN(4)
	if r.IntN(2) == 0 {
		*out = append(*out, '{')
		for i := range n {
			if i > 0 {
				*out = append(*out, ',')
			}
			*out = append(*out, '"')
			*out = append(*out, genKeys[r.IntN(len(genKeys))]...)
			*out = append(*out, `":`...)
			genValue(r, depth+1, out)
		}
		*out = append(*out, '}')
		return
	}
	*out = append(*out, '[')
	for i := range n {
		if i > 0 {
			*out = append(*out, ',')
		}
		genValue(r, depth+1, out)
	}
	*out = append(*out, ']')
}

func genPath(r *rand.Rand) string {
	n := 1 + r.IntN(4)
	segs := make([]string, n)
	for i := range segs {
		segs[i] = genSegs[r.IntN(len(genSegs))]
	}
	if segs[n-1] == "#" {
		segs[n-1] = "a"
	}
	return strings.Join(segs, ".")
}

// escapeKey writes a decoded key as a path component.
func escapeKey(k string) string {
	var b strings.Builder
	for i, r := range k {
		switch {
		case r == '.' || r == '*' || r == '?' || r == '\\' || r == '|' || r == '#':
			b.WriteByte('\\')
		case i == 0 && (r == '@' || r == '[' || r == '{' || r == '!'):
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// guidedPath walks the body at random and writes the path it took,
// sometimes as a wildcard, an index or a case variant.
func guidedPath(r *rand.Rand, n *jnode) string {
	var segs []string
	for len(segs) < 5 && (n.obj || n.arr) && len(n.kids) > 0 {
		i := r.IntN(len(n.kids))
		switch {
		case n.arr && r.IntN(2) == 0:
			segs = append(segs, "#")
		case n.arr:
			segs = append(segs, strconv.Itoa(i))
		default:
			k := n.keys[i]
			switch r.IntN(6) {
			case 0:
				segs = append(segs, "*")
			case 1:
				if _, size := utf8.DecodeRuneInString(k); size > 0 && !strings.ContainsAny(k, `.*?\|#`) {
					segs = append(segs, "?"+k[size:])
					break
				}
				fallthrough
			case 2:
				segs = append(segs, escapeKey(strings.ToUpper(k)))
			default:
				segs = append(segs, escapeKey(k))
			}
		}
		n = n.kids[i]
		if r.IntN(4) == 0 {
			break
		}
	}
	if len(segs) == 0 || segs[len(segs)-1] == "#" {
		segs = append(segs, "a")
	}
	return strings.Join(segs, ".")
}

func TestRewriteSelectsWhatGJSONSelects(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 3))
	bodies, unambiguous := 0, 0
	for range 2000 {
		var raw []byte
		genValue(r, 0, &raw)
		body := normalize(raw)
		bodies++
		tree := decodeTree(t, body)
		var paths []string
		for k := range 4 {
			path := genPath(r)
			if k%2 == 1 {
				path = guidedPath(r, tree)
			}
			paths = append(paths, path)
			checkAgainstGJSON(t, body, path)
			if p, _ := ParsePath(path); p != nil {
				amb := false
				ref(tree, p.segs, false, map[string]bool{}, &amb)
				if !amb && len(gjsonLeaves(t, body, path)) > 0 {
					unambiguous++
				}
			}
		}
		// Several paths in one spec redact the union of what each redacts.
		paths = slices.Compact(slices.Sorted(slices.Values(paths)))
		for _, exact := range []bool{true, false} {
			union := map[string]bool{}
			for _, p := range paths {
				maps.Copy(union, redactedLeaves(t, body, []string{p}, exact))
			}
			if got := redactedLeaves(t, body, paths, exact); !maps.Equal(got, union) {
				t.Fatalf("paths %q together redact %v, one by one %v\nbody %s", paths, sorted(got), sorted(union), body)
			}
		}
	}
	// The generator must exercise the equality, not only the subset.
	t.Logf("%d unambiguous non-empty selections in %d bodies", unambiguous, bodies)
	if unambiguous < 1000 {
		t.Fatalf("only %d unambiguous non-empty selections in %d bodies", unambiguous, bodies)
	}
}

// The deliberate differences, spelled out.
func TestRewriteDeliberateDifferencesFromGJSON(t *testing.T) {
	tests := []struct {
		name, body, path string
		gjson, rewriter  []string // leaves after normalisation
	}{
		{"duplicate key: gjson reads the first, the rewriter redacts both",
			`{"email":1,"email":2}`, "email", []string{"1001"}, []string{"1001", "1002"}},
		{"wildcard: gjson reads the first match, the rewriter every match",
			`{"email":1,"e_mail":2}`, "e*", []string{"1001"}, []string{"1001", "1002"}},
		{"case: gjson is exact, the rewriter folds by default",
			`{"HEALTH_NOTES":1,"health\u005fnotes":2,"Health_Notes":3}`, "health_notes", []string{"1002"}, []string{"1001", "1002", "1003"}},
		{"duplicates under #: gjson's first array, every array for the rewriter",
			`{"a":[{"x":1}],"a":[{"b":2}]}`, "a.#.b", nil, []string{"1002"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := normalize([]byte(tt.body))
			if got := sorted(gjsonLeaves(t, body, tt.path)); !slices.Equal(got, tt.gjson) && len(got)+len(tt.gjson) > 0 {
				t.Errorf("gjson selects %v, want %v", got, tt.gjson)
			}
			if got := sorted(redactedLeaves(t, body, []string{tt.path}, false)); !slices.Equal(got, tt.rewriter) {
				t.Errorf("rewriter redacts %v, want %v", got, tt.rewriter)
			}
			checkAgainstGJSON(t, body, tt.path)
		})
	}
}

func FuzzRewriteSelectsWhatGJSONSelects(f *testing.F) {
	for _, s := range []struct{ body, path string }{
		{`{"a":{"b":1},"A":{"b":2}}`, "a.b"},
		{`{"data":[{"id":1,"email":"x"},{"email":"y"}]}`, "data.#.email"},
		{`{"data":[{"id":1,"email":"x"},{"email":"y"}]}`, "data.1.email"},
		{`{"fav.movie":1,"fav":{"movie":2}}`, `fav\.movie`},
		{`{"child":1,"children":2,"c":[3]}`, "c?ild*"},
		{`{"#":{"x":1},"y":[{"x":2}]}`, "#.x"},
		{`[{"a":1},{"a":2}]`, "01.a"},
		{`{"\u212a":1,"k":2}`, "K"},
		{`{"a\u0062":{"\u00e9":[1,{"x":2}]}}`, "ab.É.1.x"},
	} {
		f.Add([]byte(s.body), s.path)
	}
	strict, err := Compile(Spec{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, path string) {
		if _, err := ParsePath(path); err != nil {
			return
		}
		if !json.Valid(body) || !utf8.Valid(body) {
			return
		}
		if _, err := strict.Select(body); err != nil {
			return // beyond this rewriter's strict JSON (e.g. nesting depth)
		}
		checkAgainstGJSON(t, normalize(body), path)
	})
}

func ExampleParsePath() {
	for _, p := range []string{`fav\.movie`, "friends.1.name", "data.#.email", "child*.n?me", "data.#(age>40).email", "tags.#"} {
		_, err := ParsePath(p)
		fmt.Println(p, "->", err)
	}
	// Output:
	// fav\.movie -> <nil>
	// friends.1.name -> <nil>
	// data.#.email -> <nil>
	// child*.n?me -> <nil>
	// data.#(age>40).email -> path "data.#(age>40).email": queries (#(...)) are not supported; map the array's items with #
	// tags.# -> path "tags.#": a path cannot end with #: gjson reads it as the array's length, not its items; map the array itself ("tags") to redact it whole
}
