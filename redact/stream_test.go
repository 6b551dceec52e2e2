package redact

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// streamSpecs are the fuzz specs plus paths that exercise what a stream
// holds: indexes, wildcards, '#' keys, exact case, removals at every
// position, items whose id follows their fields, and nested lists.
var streamSpecs = append(append([]Spec{}, fuzzSpecs...),
	Spec{Fields: []FieldSpec{
		{Path: "#.name", Bit: 1, Action: ActRemove},
		{Path: "#.notes", Bit: 2, Action: ActHash},
		{Path: "#.phones.#.number", Bit: 3, Action: ActRemove},
		{Path: "#.x*", Bit: 4, Action: ActMask},
	}, SubjectPath: "#.id", HashKey: testKey},
	Spec{Fields: []FieldSpec{
		{Path: "meta.owner", Bit: 1, Action: ActRemove},
		{Path: "items.#.a", Bit: 2, Action: ActRemove},
		{Path: "items.#.b", Bit: 2},
		{Path: "items.0.c", Bit: 3, Action: ActRemove},
		{Path: "Items.#.A", Bit: 4, Action: ActMask},
	}, HashKey: testKey, ExactCase: true},
	Spec{Fields: under("data.#.", contactFields), SubjectPath: "data.#.id", HashKey: testKey},
	Spec{Fields: []FieldSpec{{Path: "a", Bit: 1, Action: ActRemove}, {Path: "b", Bit: 1, Action: ActRemove}, {Path: "c", Bit: 2, Action: ActRemove}}},
)

var streamBodies = []string{
	`{"data":[{"id":"c-1","email":"a","address":{"city":"x"},"phone":"1"},{"phone":"2","id":7}],"page":1}`,
	`{"email":"x","a":{"b":1,"c":2},"tags":["a","b"],"email":"y"}`,
	`[{"email":"a\u0040b","x":[{"y":1},{"y":[2]}]}]`,
	`{"em\u0061il":1,"a":null}`,
	`{"reporter_email":"a","x":{"y":[1]},"contact_id":"c-1"}`,
	`{"data":[{"id":null},{},1,[]]}`,
	`{"a":1,}`, `[1,]`, `"\ud800"`, `-0.5e+10`, "\"\xff\"", ``, ` `, `{`, `[`, `{"a"`, `{"a":`, `[{"id":1,"name":"x"`,
	`{"a":1,"b":2,"c":3}`, `{"a":1 , "b":2 ,"c":3 }`, ` { "x" : 1 , "a" : [1,2] , "b" : {"z":[]} , "y":true } `,
	`{"c":1,"a":2,"x":3,"b":4}`, `[{"name":"n","id":"ab"},{"id":"abc","name":"m","notes":"q\"r","phones":[{"number":1},{"number":2,"k":3}]},{"xa":1,"xb":[1,{"z":2}],"id":5}]`,
	`[{"name":"n"},{"id":1,"id":2}]`, `[{"id":{"a":1}}]`, `[{"id":[1]},{"id":true}]`, `[{"name":"x","id":"é"}]`,
	`{"meta":{"owner":"o","n":1},"items":[{"a":1,"b":2,"c":3},{"c":4,"a":5}],"Items":[{"A":"x","a":1}]}`,
	`{"meta":{"owner":"o"},"items":[{"c":1}]} x`, `{"meta":{"owner":"o"}}}`, `{"items":[{"a":1}]`, `{"items":[{"a":1},]}`,
	`{"items":[{"a":"\u00e9\ud83d\ude00","b":"\u12"}]}`, "{\"items\":[{\"b\":\"ok\u00e9\u20ac\U0001F600\"}]}", `[1.5e3,-0,0.1,1e-7,2E+3]`, `[01]`, `[1.]`, `[-]`, `[1e]`, `[tru]`, `[nul,1]`, `[true,false,null]`,
	`{"data":[{"id":"c-2","phone":"1","email":"e","birth_year":1980,"health_notes":"h"},{"id":"c-2","phone":"2"}],"page":{"n":1}}`,
	"\t[\n{\"id\" : 3 ,\r\n \"name\" :\"a\"} ,{ \"id\":4}\n]\n ",
	`{"a":"x","a":"y"}`, `{"\u0061":1,"A":2}`, `{"data":[[1],{"id":"q"}]}`,
}

// streamPlanner mirrors the fuzz planner and can fail on one subject.
type streamPlanner struct {
	mask uint32
	fail string
}

var errPlanner = errors.New("planner failed")

func (p streamPlanner) Visible(id []byte) (uint32, error) {
	if p.fail != "" && string(id) == p.fail {
		return 0, errPlanner
	}
	return fuzzMask(p.mask, id), nil
}

// errClass is the error class the gate acts on.
func errClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, errPlanner):
		return "planner"
	case errors.Is(err, ErrDuplicateSubject):
		return "duplicate"
	case errors.Is(err, ErrSubjectType):
		return "subject_type"
	case errors.Is(err, ErrInvalidJSON):
		return "invalid"
	case errors.Is(err, ErrHeldTooLarge):
		return "held"
	case errors.Is(err, ErrShape):
		return "shape"
	}
	return "other: " + err.Error()
}

// streamed runs body through a Stream in the given chunks.
func streamed(m *Map, p Planner, body []byte, cuts []int, opt StreamOptions) ([]byte, Result, error) {
	s, err := m.NewStream(p, opt)
	if err != nil {
		return nil, Result{}, err
	}
	var out []byte
	prev := 0
	for _, c := range append(cuts, len(body)) {
		if out, err = s.Write(out, body[prev:c]); err != nil {
			return out, Result{}, err
		}
		prev = c
	}
	out, res, err := s.Close(out)
	return out, res, err
}

// checkStream asserts that a streamed rewrite of body in the chunks cuts
// equals Rewrite of the whole: same bytes and Result, or the same error
// class — having released, on error, only a prefix of what Rewrite gives
// when the error is the planner's on a valid body.
func checkStream(t *testing.T, m *Map, p Planner, body []byte, cuts []int) {
	t.Helper()
	want, wres, werr := m.Rewrite(nil, body, p)
	var matched []uint64
	wmatched := make([]uint64, m.MatchedWords())
	if werr == nil {
		_, _, _ = m.RewriteMatched(nil, body, p, wmatched)
		matched = make([]uint64, m.MatchedWords())
	}
	got, gres, gerr := streamed(m, p, body, cuts, StreamOptions{Matched: matched})
	if errClass(gerr) != errClass(werr) {
		t.Fatalf("body %q cuts %v: stream error %v, Rewrite error %v", body, cuts, gerr, werr)
	}
	if werr != nil {
		return
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("body %q cuts %v:\nstream  %q\nRewrite %q", body, cuts, got, want)
	}
	if fmt.Sprint(gres) != fmt.Sprint(wres) {
		t.Fatalf("body %q cuts %v: Result %+v, Rewrite's %+v", body, cuts, gres, wres)
	}
	if fmt.Sprint(matched) != fmt.Sprint(wmatched) {
		t.Fatalf("body %q: matched %v, RewriteMatched's %v", body, matched, wmatched)
	}
}

func streamMaps(t testing.TB) []*Map {
	var maps []*Map
	for _, sp := range streamSpecs {
		m, err := Compile(sp)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.NewStream(nil, StreamOptions{}); errors.Is(err, ErrNotStreamable) {
			continue
		}
		maps = append(maps, m)
	}
	return maps
}

func TestStreamMatchesRewriteAtEverySplit(t *testing.T) {
	maps := streamMaps(t)
	for _, body := range streamBodies {
		b := []byte(body)
		for mi, m := range maps {
			for _, p := range []Planner{nil, streamPlanner{mask: 0}, streamPlanner{mask: 0b0110}, streamPlanner{mask: ^uint32(0)},
				streamPlanner{mask: 0b1010, fail: "abc"}, streamPlanner{mask: 0b1010, fail: "7"}} {
				t.Run(fmt.Sprintf("map%d", mi), func(t *testing.T) {
					checkStream(t, m, p, b, nil)
					for i := 0; i <= len(b); i++ {
						checkStream(t, m, p, b, []int{i})
					}
					ones := make([]int, 0, len(b))
					for i := 1; i < len(b); i++ {
						ones = append(ones, i)
					}
					checkStream(t, m, p, b, ones)
				})
			}
		}
	}
}

func TestStreamMatchesRewriteOnLargeListsInRandomChunks(t *testing.T) {
	m := benchMap(t)
	body := listBody(2000) // ~1 MB, beyond one stream slice
	rng := rand.New(rand.NewPCG(1, 2))
	runs := 20
	if raceEnabled {
		runs = 2 // ten times slower; the splits are not what races
	}
	for range runs {
		var cuts []int
		for c := rng.IntN(5000); c < len(body); c += 1 + rng.IntN(1<<uint(rng.IntN(18))) {
			cuts = append(cuts, c)
		}
		checkStream(t, m, alternating(), body, cuts)
	}
	checkStream(t, m, alternating(), body, nil)
	// Cut off anywhere: the same error class as the buffered rewrite.
	for range runs {
		n := rng.IntN(len(body))
		checkStream(t, m, alternating(), body[:n], []int{n / 2})
	}
}

func TestStreamRefusesSingleBodySubject(t *testing.T) {
	m, err := Compile(Spec{Fields: []FieldSpec{{Path: "email", Bit: 1}}, SubjectPath: "contact_id"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.NewStream(Fixed(0), StreamOptions{}); !errors.Is(err, ErrNotStreamable) {
		t.Fatalf("NewStream = %v, want ErrNotStreamable", err)
	}
}

// The stream holds an item at most, whatever the body's size; an item over
// the bound fails the stream having released only whole rewritten items.
func TestStreamHoldsBoundedMemory(t *testing.T) {
	m := benchMap(t)
	s, err := m.NewStream(alternating(), StreamOptions{MaxHeld: 4096})
	if err != nil {
		t.Fatal(err)
	}
	item := listBody(1)
	item = item[len(`{"data":[`):bytes.LastIndex(item, []byte(`],"page"`))]
	var out []byte
	written := 0
	chunk := []byte(`{"data":[`)
	for i := range 20000 { // ~10 MB
		if i > 0 {
			chunk = append(chunk, ',')
		}
		chunk = append(chunk, item...)
		if len(chunk) > 10000 {
			// Cut inside an item, so that one is held across Writes.
			n := len(chunk) - 200
			if out, err = s.Write(out[:0], chunk[:n]); err != nil {
				t.Fatal(err)
			}
			written += n
			chunk = append(chunk[:0], chunk[n:]...)
		}
		if cap(s.win) > 2*streamSlice+4096 {
			t.Fatalf("window capacity %d after %d bytes", cap(s.win), written)
		}
	}
	chunk = append(chunk, `],"page":1}`...)
	if out, err = s.Write(out[:0], chunk); err != nil {
		t.Fatal(err)
	}
	if _, _, err = s.Close(out[:0]); err != nil {
		t.Fatal(err)
	}
	if s.Held() > 4096 || s.Held() == 0 {
		t.Fatalf("held at most %d bytes; item is %d", s.Held(), len(item))
	}

	// An item over the bound: the stream fails, the items before it were
	// released rewritten, none of the big one.
	big := []byte(`{"data":[{"id":"c-2","health_notes":"secret"},{"health_notes":"secret` + string(bytes.Repeat([]byte("x"), 8000)) + `","id":"c-3"}]}`)
	s, _ = m.NewStream(alternating(), StreamOptions{MaxHeld: 4096})
	var got []byte
	for i := 0; i < len(big); i += 100 {
		if got, err = s.Write(got, big[i:min(i+100, len(big))]); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrHeldTooLarge) {
		t.Fatalf("err = %v, want ErrHeldTooLarge", err)
	}
	if bytes.Contains(got, []byte("secret")) || !bytes.HasPrefix(got, []byte(`{"data":[{"id":"c-2","health_notes":null}`)) {
		t.Fatalf("released %q", got)
	}
}

func FuzzStream(f *testing.F) {
	for _, s := range streamBodies {
		f.Add([]byte(s), uint32(0b0110), uint64(1))
	}
	f.Add(listBody(3), uint32(0), uint64(7))
	maps := streamMaps(f)
	f.Fuzz(func(t *testing.T, in []byte, mask uint32, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 0))
		var cuts []int
		for c := rng.IntN(len(in) + 1); c < len(in); c += 1 + rng.IntN(8) {
			cuts = append(cuts, c)
		}
		for _, m := range maps {
			checkStream(t, m, streamPlanner{mask: mask}, in, cuts)
		}
	})
}

func BenchmarkStream(b *testing.B) {
	m := benchMap(b)
	p := alternating()
	body := listBody(2300)
	out := make([]byte, 0, 64<<10)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		s, _ := m.NewStream(p, StreamOptions{})
		for i := 0; i < len(body); i += 32 << 10 {
			out, _ = s.Write(out[:0], body[i:min(i+32<<10, len(body))])
		}
		if _, _, err := s.Close(out[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
