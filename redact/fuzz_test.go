package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzMasks derives a per-subject mask from the fuzzed mask, so that list
// elements differ.
func fuzzMask(mask uint32, id []byte) uint32 {
	if len(id)%2 == 1 {
		return ^mask
	}
	return mask
}

var fuzzSpecs = []Spec{
	{Fields: scenarioFields, SubjectPath: "data.#.id", HashKey: testKey},
	{Fields: []FieldSpec{
		{Path: "email", Bit: 1},
		{Path: "a", Bit: 2, Action: ActRemove},
		{Path: "a.b", Bit: 3, Action: ActMask},
		{Path: "tags.1", Bit: 4, Action: ActRemove},
		{Path: "#.email", Bit: 5, Action: ActHash},
		{Path: "#.x.#.y", Bit: 6},
	}, HashKey: testKey},
	{Fields: []FieldSpec{
		{Path: "reporter_email", Bit: 1, Action: ActRemove},
		{Path: "x.y", Bit: 2},
		{Path: "name", Bit: 7, Action: ActHash},
	}, SubjectPath: "contact_id", HashKey: testKey},
}

func FuzzRewrite(f *testing.F) {
	for _, s := range []string{
		`{"data":[{"id":"c-1","email":"a","address":{"city":"x"},"phone":"1"},{"phone":"2","id":7}],"page":1}`,
		`{"email":"x","a":{"b":1,"c":2},"tags":["a","b"],"email":"y"}`,
		`[{"email":"a\u0040b","x":[{"y":1},{"y":[2]}]}]`,
		`{"em\u0061il":1,"a":null}`,
		`{"reporter_email":"a","x":{"y":[1]},"contact_id":"c-1"}`,
		`{"data":[{"id":null},{},1,[]]}`,
		`{"a":1,}`, `[1,]`, `"\ud800"`, `-0.5e+10`, "\"\xff\"",
		string(listBody(3)),
	} {
		f.Add([]byte(s), uint32(0))
		f.Add([]byte(s), uint32(0b0110))
	}
	maps := fuzzMaps(f)
	f.Fuzz(func(t *testing.T, in []byte, mask uint32) { fuzzRewrite(t, maps, in, mask) })
}

func fuzzMaps(tb testing.TB) []*Map {
	maps := make([]*Map, len(fuzzSpecs))
	for i, s := range fuzzSpecs {
		m, err := Compile(s)
		if err != nil {
			tb.Fatal(err)
		}
		maps[i] = m
	}
	return maps
}

// fuzzRewrite checks one input against every fuzz map.
func fuzzRewrite(t *testing.T, maps []*Map, in []byte, mask uint32) {
	assertMemoIsInvisible(t, maps, in, mask)
	assertScansAsReference(t, in)
	valid := json.Valid(in)
	for i, m := range maps {
		p := PlannerFunc(func(id []byte) (uint32, error) { return fuzzMask(mask, id), nil })
		out, _, err := m.Rewrite(nil, in, p)
		if err != nil {
			if out != nil {
				t.Fatalf("map %d: partial output on error: %q", i, out)
			}
			if !valid {
				continue
			}
			// Documented differences from encoding/json.Valid.
			switch {
			case errors.Is(err, ErrInvalidJSON) && !utf8.Valid(in):
			case errors.Is(err, ErrDuplicateSubject), errors.Is(err, ErrSubjectType), errors.Is(err, ErrShape):
			default:
				t.Fatalf("map %d: valid input rejected: %v\n%q", i, err, in)
			}
			continue
		}
		if !valid {
			t.Fatalf("map %d: invalid input accepted:\n%q\noutput %q", i, in, out)
		}
		if !json.Valid(out) {
			t.Fatalf("map %d: output is not valid JSON:\n in %q\nout %q", i, in, out)
		}
		if i == 1 && mask == ^uint32(0) && !bytes.Equal(in, out) {
			t.Fatalf("everything visible but output changed:\n in %q\nout %q", in, out)
		}
		var doc any
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("decode output: %v", err)
		}
		checkRedacted(t, fuzzSpecs[i], doc, mask)
	}
}

// subjectMask is the mask fuzzMask gives the id in v's key named key
// (case-insensitively, as the fuzz maps match keys); 0 (nothing visible)
// without one.
func subjectMask(v any, key string, mask uint32) uint32 {
	o, ok := v.(map[string]any)
	if !ok {
		return 0
	}
	var id any
	for k, v := range o {
		if strings.EqualFold(k, key) {
			id = v
		}
	}
	switch id := id.(type) {
	case string:
		return fuzzMask(mask, []byte(id))
	case json.Number:
		return fuzzMask(mask, []byte(id))
	}
	return 0
}

// checkRedacted walks the decoded output and fails when a mapped field whose
// bit is not visible to its subject holds anything but a replacement.
func checkRedacted(t *testing.T, spec Spec, doc any, mask uint32) {
	t.Helper()
	visible := mask
	switch spec.SubjectPath {
	case "":
		visible = fuzzMask(mask, nil)
	case "contact_id":
		visible = subjectMask(doc, "contact_id", mask)
	}
	for _, f := range spec.Fields {
		segs := strings.Split(f.Path, ".")
		var walk func(v any, segs []string, vis uint32)
		walk = func(v any, segs []string, vis uint32) {
			if len(segs) == 0 {
				if vis&(1<<f.Bit) != 0 {
					return
				}
				switch x := v.(type) {
				case nil:
					return
				case string:
					if x == DefaultMask || (len(x) == 34 && strings.HasPrefix(x, "h:")) {
						return
					}
				}
				t.Fatalf("field %s with bit %d not visible (mask %b) survived: %v", f.Path, f.Bit, vis, v)
			}
			switch x := v.(type) {
			case map[string]any:
				if segs[0] != "#" {
					if c, ok := x[segs[0]]; ok {
						walk(c, segs[1:], vis)
					}
				}
			case []any:
				if segs[0] == "#" {
					for _, e := range x {
						ev := vis
						if strings.Contains(spec.SubjectPath, "#") && len(segs) > 1 {
							ev = subjectMask(e, spec.SubjectPath[strings.LastIndex(spec.SubjectPath, ".")+1:], mask)
						}
						walk(e, segs[1:], ev)
					}
				}
			}
		}
		walk(doc, segs, visible)
	}
}
