package redact

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// memoSpecs map keys of every length the key memo handles (0 to 15 bytes)
// and beyond, under case folding and exact case.
var memoSpecs = func() []Spec {
	var fields []FieldSpec
	for n := 1; n <= 18; n++ {
		fields = append(fields, FieldSpec{Path: "data.#." + strings.Repeat("k", n-1) + "z", Bit: n % 5, Action: Action(n % 4)})
	}
	fields = append(fields, scenarioFields...)
	fields = append(fields, FieldSpec{Path: "data.#.address.city", Bit: 4})
	return []Spec{
		{Fields: fields, SubjectPath: "data.#.id", HashKey: testKey},
		{Fields: fields, SubjectPath: "data.#.id", HashKey: testKey, ExactCase: true},
	}
}()

// assertMemoIsInvisible rewrites src with and without the key memo and
// fails unless output and error are the same.
func assertMemoIsInvisible(t *testing.T, maps []*Map, src []byte, mask uint32) {
	t.Helper()
	for i, m := range maps {
		p := PlannerFunc(func(id []byte) (uint32, error) { return fuzzMask(mask, id), nil })
		got, gres, gerr := m.rewriteMatched(nil, src, p, nil, true)
		want, wres, werr := m.rewriteMatched(nil, src, p, nil, false)
		if fmt.Sprint(gerr) != fmt.Sprint(werr) || !bytes.Equal(got, want) || fmt.Sprint(gres) != fmt.Sprint(wres) {
			t.Fatalf("map %d, %q:\nmemo    %q %v %v\nno memo %q %v %v", i, src, got, gres, gerr, want, wres, werr)
		}
	}
}

func memoMaps(tb testing.TB) []*Map {
	var maps []*Map
	for _, s := range memoSpecs {
		m, err := Compile(s)
		if err != nil {
			tb.Fatal(err)
		}
		maps = append(maps, m)
	}
	return maps
}

// TestKeyMemoIsInvisible: list items (and objects in them) whose keys
// repeat the previous one's but for one byte — at every offset of keys of
// every length the memo holds, replaced by a letter of the other case, a
// quote, a backslash (an escape spelling the same key), a control byte or
// a byte outside ASCII — or that are shorter or longer by one, with the
// item at the end of the body or padded after it, rewrite exactly as
// without the memo.
func TestKeyMemoIsInvisible(t *testing.T) {
	maps := memoMaps(t)
	for n := 0; n <= 18; n++ {
		base := strings.Repeat("k", max(n-1, 0)) + "z"[:min(n, 1)]
		variants := []string{base, base + "k", base + "z", "Z" + base}
		if n > 0 {
			variants = append(variants, base[:n-1])
		}
		for k := 0; k < n; k++ {
			for _, b := range []string{"K", "Z", `"`, `\`, `\u006b`, `\u006B`, `\"`, "\x1f", "\x7f", "é", "\xc3", "\xff", "k\"", ":"} {
				variants = append(variants, base[:k]+b+base[k+1:])
			}
		}
		for _, v := range variants {
			for _, pad := range []string{"", " ", strings.Repeat(" ", 17)} {
				for _, second := range []string{`{"` + v + `":"x","id":"c-2"}`, `{"` + v + `":1}`, `{"` + v + `"`, `{"` + v} {
					body := `{"data":[{"` + base + `":"a","id":"c-1"},` + second + `]` + pad + `}`
					assertMemoIsInvisible(t, maps, []byte(body), 0b0101)
					// The key last, nothing after it.
					assertMemoIsInvisible(t, maps, []byte(`{"data":[{"`+base+`":0},{"`+v), 0)
					// In objects only validated (a mapped value, data.#.address,
					// and one no path reaches).
					for _, key := range []string{"address", "other"} {
						nested := `{"data":[{"id":"c-1","` + key + `":{"` + base + `":"a","b":1}},{"id":"c-2","` + key + `":` + second + pad + `}]}`
						assertMemoIsInvisible(t, maps, []byte(nested), 0b0101)
					}
				}
			}
		}
	}
}

// TestKeyMemoAcrossShapes: items with keys in another order, fewer or
// more keys, nested objects under other nodes at the same depth, and the
// scenario's lists, rewrite exactly as without the memo.
func TestKeyMemoAcrossShapes(t *testing.T) {
	maps := memoMaps(t)
	for _, body := range []string{
		`{"data":[{"id":"c-1","email":"a","phone":"b"},{"phone":"b","email":"a","id":"c-2"},{"id":"c-3"},{"id":"c-4","email":"a","phone":"b","sex":"f"}]}`,
		`{"data":[{"id":"c-1","address":{"city":"x","zip":"1"}},{"id":"c-2","address":{"city":"y"},"x":{"city":"z"}}]}`,
		`{"data":[{"id":"c-1","EMAIL":"a"},{"id":"c-2","email":"a"},{"id":"c-3","Email":"a"},{"id":"c-4","em\u0061il":"a"}]}`,
		`{"data":[{"id":"c-1","email":"a"},{"id":"c-1","id":"c-1"}]}`,
		`{"data":[{"id":"c-1","email":"a"},{"id":"c-2","email":"a","email":"b"}]}`,
		`{"data":[{"id":"c-1","kkkkkkkkkkkkkkkkz":1},{"id":"c-2","kkkkkkkkkkkkkkkkz":2}]}`,
		string(listBody(5)),
	} {
		for _, mask := range []uint32{0, 0b0111, ^uint32(0)} {
			assertMemoIsInvisible(t, maps, []byte(body), mask)
		}
	}
}

// FuzzKeyMemo compares the rewrite with and without the key memo on a
// list whose second item is fuzzed after a first item that fills the memo.
func FuzzKeyMemo(f *testing.F) {
	for _, s := range []string{
		`"id":"c-2","email":"x","phone":"y"}`, `"id":"c-2","Email":"x"}`, `"id":"c-2","em\u0061il":"x"}`,
		`"id":"c-2","kkkkkkkkkkkkkkkz":1}`, `"id":"c-2","kkkkkkkkkkkkkkkkz":1}`, `"id":"c-2","address":{"city":1}}`,
	} {
		f.Add([]byte(s), uint32(0b0101))
	}
	maps := memoMaps(f)
	first := `{"data":[{"id":"c-1","email":"x","phone":"y","kkkkkkkkkkkkkkkz":1,"kkkkkkkkkkkkkkkkz":1,"address":{"city":1}},{`
	f.Fuzz(func(t *testing.T, in []byte, mask uint32) {
		body := append([]byte(first), in...)
		assertMemoIsInvisible(t, maps, body, mask)
		assertMemoIsInvisible(t, maps, append(body, "]}"...), mask)
	})
}
