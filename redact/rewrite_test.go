package redact

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

var testKey = []byte("k3y")

func hashOf(v string) string {
	m := hmac.New(sha256.New, testKey)
	m.Write([]byte(v))
	return `"h:` + hex.EncodeToString(m.Sum(nil)[:16]) + `"`
}

// contactSpec is the scenario's contact mapping, single subject.
var contactFields = []FieldSpec{
	{Path: "customer_number", Bit: 0},
	{Path: "ip_address", Bit: 0, Action: ActHash},
	{Path: "first_name", Bit: 1},
	{Path: "email", Bit: 1, Action: ActMask},
	{Path: "phone", Bit: 1, Action: ActRemove},
	{Path: "address", Bit: 1},
	{Path: "birth_year", Bit: 2},
	{Path: "health_notes", Bit: 3, Action: ActRemove},
}

func under(prefix string, fs []FieldSpec) []FieldSpec {
	out := make([]FieldSpec, len(fs))
	for i, f := range fs {
		f.Path = prefix + f.Path
		out[i] = f
	}
	return out
}

// masks is a Planner giving each subject id its mask (0 when unknown) and
// counting calls.
type masks struct {
	m     map[string]uint32
	calls []string
}

func (p *masks) Visible(id []byte) (uint32, error) {
	if id == nil {
		p.calls = append(p.calls, "<nil>")
	} else {
		p.calls = append(p.calls, string(id))
	}
	return p.m[string(id)], nil
}

func TestRewrite(t *testing.T) {
	list := Spec{Fields: under("data.#.", contactFields), SubjectPath: "data.#.id", HashKey: testKey}
	tests := []struct {
		name      string
		spec      Spec
		masks     map[string]uint32 // subject id → mask; "" is the nil subject
		in        string
		want      string
		redacted  []string
		wantCalls []string
	}{
		{
			name:      "null action replaces the value",
			spec:      Spec{Fields: []FieldSpec{{Path: "email", Bit: 1}}},
			in:        `{"id":1,"email":"a@b.c","x":2}`,
			want:      `{"id":1,"email":null,"x":2}`,
			redacted:  []string{"email"},
			wantCalls: []string{"<nil>"},
		},
		{
			name:      "visible bit leaves the body byte for byte",
			spec:      Spec{Fields: []FieldSpec{{Path: "email", Bit: 1}}},
			masks:     map[string]uint32{"": 2},
			in:        "{ \"id\" : 1 ,\n\t\"email\" : \"a@b.c\" }",
			want:      "{ \"id\" : 1 ,\n\t\"email\" : \"a@b.c\" }",
			wantCalls: []string{"<nil>"},
		},
		{
			name: "whitespace around a replaced value is kept",
			spec: Spec{Fields: []FieldSpec{{Path: "email", Bit: 1}}},
			in:   "{ \"email\" :\n  \"a@b.c\"  ,\"x\":[ 1 ] }",
			want: "{ \"email\" :\n  null  ,\"x\":[ 1 ] }", redacted: []string{"email"},
		},
		{
			name: "mask action uses the default mask",
			spec: Spec{Fields: []FieldSpec{{Path: "email", Bit: 1, Action: ActMask}}},
			in:   `{"email":{"deep":[1,2]}}`, want: `{"email":"***"}`, redacted: []string{"email"},
		},
		{
			name: "custom mask is JSON-quoted",
			spec: Spec{Fields: []FieldSpec{{Path: "email", Bit: 1, Action: ActMask, Mask: `<"hidden">`}}},
			in:   `{"email":"x"}`, want: `{"email":"<\"hidden\">"}`, redacted: []string{"email"},
		},
		{
			name: "hash action hashes a string's decoded content",
			spec: Spec{Fields: []FieldSpec{{Path: "#.email", Bit: 1, Action: ActHash}}, HashKey: testKey},
			in:   `[{"email":"a@b"},{"email":"a\u0040b"},{"email":12.5}]`,
			want: `[{"email":` + hashOf("a@b") + `},{"email":` + hashOf("a@b") + `},{"email":` + hashOf("12.5") + `}]`,
		},
		{
			name: "remove the only member",
			spec: Spec{Fields: []FieldSpec{{Path: "email", Bit: 1, Action: ActRemove}}},
			in:   `{ "email" : "x" }`, want: `{  }`, redacted: []string{"email"},
		},
		{
			name: "remove first, middle and last members keeps commas valid",
			spec: Spec{Fields: []FieldSpec{{Path: "a", Bit: 1, Action: ActRemove}, {Path: "c", Bit: 1, Action: ActRemove}, {Path: "e", Bit: 1, Action: ActRemove}}},
			in:   `{"a":1, "b":2, "c":{"x":[1]}, "d":4, "e":5}`,
			want: `{ "b":2, "d":4}`, redacted: []string{"a", "c", "e"},
		},
		{
			name: "remove every member",
			spec: Spec{Fields: []FieldSpec{{Path: "a", Bit: 1, Action: ActRemove}, {Path: "b", Bit: 1, Action: ActRemove}}},
			in:   `{"a":1,"b":2,"a":3}`, want: `{}`, redacted: []string{"a", "b"},
		},
		{
			name: "whole nested object redacted as one value",
			spec: Spec{Fields: []FieldSpec{{Path: "address", Bit: 1}}},
			in:   `{"address":{"street":"Main 1","city":"Brno"},"id":"c-1"}`,
			want: `{"address":null,"id":"c-1"}`, redacted: []string{"address"},
		},
		{
			name:  "visible object is descended into for deeper fields",
			spec:  Spec{Fields: []FieldSpec{{Path: "address", Bit: 1}, {Path: "address.street", Bit: 0}}},
			masks: map[string]uint32{"": 2},
			in:    `{"address":{"street":"Main 1","city":"Brno"}}`,
			want:  `{"address":{"street":null,"city":"Brno"}}`, redacted: []string{"address.street"},
		},
		{
			name: "nested field in a value that is not an object passes",
			spec: Spec{Fields: []FieldSpec{{Path: "address.street", Bit: 1}}},
			in:   `{"address":"Main 1","street":"x"}`, want: `{"address":"Main 1","street":"x"}`,
		},
		{
			name: "one array element by index",
			spec: Spec{Fields: []FieldSpec{{Path: "phones.1", Bit: 1, Action: ActMask}}},
			in:   `{"phones":["1", "2",3],"tags":["a"]}`, want: `{"phones":["1", "***",3],"tags":["a"]}`,
			redacted: []string{"phones.1"},
		},
		{
			name: "array element removed by index",
			spec: Spec{Fields: []FieldSpec{{Path: "phones.0", Bit: 1, Action: ActRemove}}},
			in:   `{"phones":[ "1" , "2" ]}`, want: `{"phones":[   "2" ]}`, redacted: []string{"phones.0"},
		},
		{
			name:      "per-item subjects with the id first",
			spec:      list,
			masks:     map[string]uint32{"c-1": 0b111, "c-2": 0b1000},
			in:        `{"data":[{"id":"c-1","first_name":"Alice","health_notes":"flu"},{"id":"c-2","first_name":"Bob","health_notes":"ok"}],"page":1}`,
			want:      `{"data":[{"id":"c-1","first_name":"Alice"},{"id":"c-2","first_name":null,"health_notes":"ok"}],"page":1}`,
			redacted:  []string{"data.#.first_name", "data.#.health_notes"},
			wantCalls: []string{"c-1", "c-2"},
		},
		{
			name:      "per-item subject id after the fields it governs",
			spec:      list,
			masks:     map[string]uint32{"c-1": 0b1111},
			in:        `{"data":[{"email":"a@x","address":{"city":"B"},"id":"c-1"},{"email":"b@x","address":{"city":"C"},"id":"c-2"}]}`,
			want:      `{"data":[{"email":"a@x","address":{"city":"B"},"id":"c-1"},{"email":"***","address":null,"id":"c-2"}]}`,
			redacted:  []string{"data.#.address", "data.#.email"},
			wantCalls: []string{"c-1", "c-2"},
		},
		{
			name:      "numeric and escaped subject ids",
			spec:      list,
			masks:     map[string]uint32{"7": 2, "c/8": 2},
			in:        `{"data":[{"id":7,"first_name":"A"},{"id":"c\/8","first_name":"B"},{"id":9,"first_name":"C"}]}`,
			want:      `{"data":[{"id":7,"first_name":"A"},{"id":"c\/8","first_name":"B"},{"id":9,"first_name":null}]}`,
			redacted:  []string{"data.#.first_name"},
			wantCalls: []string{"7", "c/8", "9"},
		},
		{
			name:      "missing or null subject id sees nothing without asking the planner",
			spec:      list,
			masks:     map[string]uint32{"": 0xff},
			in:        `{"data":[{"first_name":"A"},{"id":null,"first_name":"B"},"scalar",[]]}`,
			want:      `{"data":[{"first_name":null},{"id":null,"first_name":null},"scalar",[]]}`,
			redacted:  []string{"data.#.first_name"},
			wantCalls: nil,
		},
		{
			name: "duplicate keys are all redacted",
			spec: Spec{Fields: []FieldSpec{{Path: "email", Bit: 1}}},
			in:   `{"email":"a","x":1,"email":"b"}`, want: `{"email":null,"x":1,"email":null}`, redacted: []string{"email"},
		},
		{
			name:     "escaped keys match their decoded name",
			spec:     Spec{Fields: []FieldSpec{{Path: "email", Bit: 1}, {Path: "naïve", Bit: 1}}},
			in:       `{"em\u0061il":"a","\u006e\u0061\u00efve":1,"na\u00efve":2,"naïve":3}`,
			want:     `{"em\u0061il":null,"\u006e\u0061\u00efve":null,"na\u00efve":null,"naïve":null}`,
			redacted: []string{"email", "naïve"},
		},
		{
			name: "unicode values pass untouched",
			spec: Spec{Fields: []FieldSpec{{Path: "email", Bit: 1}}},
			in:   `{"name":"Žluťoučký kůň 🐎 \ud83d\udc0e","email":"ž@ř.cz"}`,
			want: `{"name":"Žluťoučký kůň 🐎 \ud83d\udc0e","email":null}`, redacted: []string{"email"},
		},
		{
			name: "empty object and array",
			spec: list, in: `{"data":[],"x":{}}`, want: `{"data":[],"x":{}}`,
		},
		{
			name:      "top-level array with #-paths",
			spec:      Spec{Fields: under("#.", contactFields), SubjectPath: "#.id", HashKey: testKey},
			masks:     map[string]uint32{"c-1": 0b11},
			in:        `[{"id":"c-1","email":"a","birth_year":1980},{"email":"b","id":"c-2","phone":"1","ip_address":"10.0.0.1"}]`,
			want:      `[{"id":"c-1","email":"a","birth_year":null},{"email":"***","id":"c-2","ip_address":` + hashOf("10.0.0.1") + `}]`,
			redacted:  []string{"#.birth_year", "#.email", "#.ip_address", "#.phone"},
			wantCalls: []string{"c-1", "c-2"},
		},
		{
			name:      "single body subject after the fields",
			spec:      Spec{Fields: []FieldSpec{{Path: "reporter_email", Bit: 1}}, SubjectPath: "contact_id"},
			masks:     map[string]uint32{"c-1": 0},
			in:        `{"reporter_email":"a@b","body":"x","contact_id":"c-1"}`,
			want:      `{"reporter_email":null,"body":"x","contact_id":"c-1"}`,
			redacted:  []string{"reporter_email"},
			wantCalls: []string{"c-1"},
		},
		{
			name:      "nested single subject and nested list subject",
			spec:      Spec{Fields: []FieldSpec{{Path: "a.#.b.#.email", Bit: 1}}, SubjectPath: "a.#.b.#.who.id"},
			masks:     map[string]uint32{"x": 2},
			in:        `{"a":[{"b":[{"email":"1","who":{"id":"x"}},{"who":{"id":"y"},"email":"2"}]}]}`,
			want:      `{"a":[{"b":[{"email":"1","who":{"id":"x"}},{"who":{"id":"y"},"email":null}]}]}`,
			redacted:  []string{"a.#.b.#.email"},
			wantCalls: []string{"x", "y"},
		},
		{
			name: "scalars at top level pass",
			spec: list, in: " 12 ", want: " 12 ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Compile(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			p := &masks{m: tt.masks}
			dst := []byte("prefix:")
			out, res, err := m.Rewrite(dst, []byte(tt.in), p)
			if err != nil {
				t.Fatalf("Rewrite: %v", err)
			}
			if !bytes.HasPrefix(out, []byte("prefix:")) {
				t.Fatalf("dst not appended to: %q", out)
			}
			got := out[len("prefix:"):]
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("output is not valid JSON: %s", got)
			}
			if tt.redacted != nil && !slices.Equal(res.Redacted, tt.redacted) {
				t.Errorf("Redacted = %q, want %q", res.Redacted, tt.redacted)
			}
			if tt.wantCalls != nil && !slices.Equal(p.calls, tt.wantCalls) {
				t.Errorf("planner calls = %q, want %q", p.calls, tt.wantCalls)
			}
			if tt.wantCalls == nil && strings.Contains(tt.name, "without asking") && len(p.calls) != 0 {
				t.Errorf("planner called %q", p.calls)
			}
		})
	}
}

func TestRewriteCountsItemsAndValues(t *testing.T) {
	m, err := Compile(Spec{Fields: under("data.#.", contactFields), SubjectPath: "data.#.id", HashKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	_, res, err := m.Rewrite(nil, []byte(`{"data":[{"id":1,"email":"a","phone":"1"},{"id":2},{"id":3,"email":"c"}]}`), Fixed(0))
	if err != nil {
		t.Fatal(err)
	}
	if res.Items != 3 || res.Values != 3 {
		t.Errorf("Items, Values = %d, %d, want 3, 3", res.Items, res.Values)
	}
}

func TestRewriteRejects(t *testing.T) {
	spec := Spec{Fields: []FieldSpec{{Path: "data.#.email", Bit: 1, Action: ActRemove}}, SubjectPath: "data.#.id"}
	m, err := Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, in string }{
		{"empty input", ""},
		{"only whitespace", " \n"},
		{"trailing comma in object", `{"a":1,}`},
		{"trailing comma in array", `[1,2,]`},
		{"trailing comma after removed member", `{"data":[{"id":1,"email":"x",}]}`},
		{"leading comma", `[,1]`},
		{"missing comma", `{"a":1 "b":2}`},
		{"missing colon", `{"a" 1}`},
		{"unquoted key", `{a:1}`},
		{"single quotes", `{'a':1}`},
		{"unterminated string", `{"a":"abc`},
		{"unterminated string in removed field", `{"data":[{"email":"abc`},
		{"unterminated object", `{"a":1`},
		{"unterminated array", `[1`},
		{"invalid escape", `["\x41"]`},
		{"short unicode escape", `["\u12"]`},
		{"bad hex in unicode escape", `["\u12G4"]`},
		{"raw control character", "[\"a\tb\"]"},
		{"raw newline in key", "{\"a\nb\":1}"},
		{"trailing garbage", `{"a":1} x`},
		{"two values", `1 2`},
		{"leading zero", `[01]`},
		{"bare minus", `[-]`},
		{"dot without digits", `[1.]`},
		{"leading dot", `[.5]`},
		{"plus sign", `[+1]`},
		{"empty exponent", `[1e]`},
		{"exponent sign only", `[1e+]`},
		{"NaN", `[NaN]`},
		{"truncated literal", `[tru]`},
		{"capitalised literal", `[True]`},
		{"invalid UTF-8", "[\"\xff\"]"},
		{"overlong UTF-8", "[\"\xc0\xaf\"]"},
		{"UTF-8 surrogate", "[\"\xed\xa0\x80\"]"},
		{"byte order mark", "\xef\xbb\xbf{}"},
		{"too deep", strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)},
		{"duplicate subject id", `{"data":[{"id":1,"email":"x","id":2}]}`},
		{"subject id of the wrong type", `{"data":[{"id":true,"email":"x"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("prefix")
			out, res, err := m.Rewrite(dst, []byte(tt.in), Fixed(0))
			if err == nil {
				t.Fatalf("accepted, output %q", out)
			}
			if string(out) != "prefix" || len(out) != len(dst) {
				t.Errorf("partial output on error: %q", out)
			}
			if res.Items != 0 || res.Redacted != nil {
				t.Errorf("non-zero result on error: %+v", res)
			}
		})
	}
}

func TestRewriteAcceptsDepthLimit(t *testing.T) {
	m, err := Compile(Spec{Fields: []FieldSpec{{Path: "a", Bit: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	in := strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)
	if _, _, err := m.Rewrite(nil, []byte(in), Fixed(0)); err != nil {
		t.Fatalf("depth %d rejected: %v", MaxDepth, err)
	}
}

func TestRewriteSyntaxErrorIsTyped(t *testing.T) {
	m, _ := Compile(Spec{})
	_, _, err := m.Rewrite(nil, []byte(`{"a":1,}`), Fixed(0))
	var se *SyntaxError
	if !errors.As(err, &se) || !errors.Is(err, ErrInvalidJSON) || se.Offset != 7 {
		t.Fatalf("err = %v, want *SyntaxError at offset 7", err)
	}
}

func TestRewritePlannerErrorAborts(t *testing.T) {
	boom := errors.New("store down")
	m, err := Compile(Spec{Fields: []FieldSpec{{Path: "data.#.email", Bit: 1}}, SubjectPath: "data.#.id"})
	if err != nil {
		t.Fatal(err)
	}
	p := PlannerFunc(func(id []byte) (uint32, error) {
		if string(id) == "2" {
			return 0, boom
		}
		return 0xff, nil
	})
	out, _, err := m.Rewrite([]byte("x"), []byte(`{"data":[{"id":1,"email":"a"},{"id":2,"email":"b"}]}`), p)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the planner's error", err)
	}
	if string(out) != "x" {
		t.Errorf("partial output %q", out)
	}
}

func TestSubject(t *testing.T) {
	m, err := Compile(Spec{Fields: []FieldSpec{{Path: "reporter_email", Bit: 1}}, SubjectPath: "issue.contact_id"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, in, want string
		wantErr        error
	}{
		{"string id", `{"issue":{"contact_id":"c-1"}}`, "c-1", nil},
		{"number id after other keys", `{"x":[1,{"contact_id":2}],"issue":{"a":1,"contact_id":42}}`, "42", nil},
		{"escaped id", `{"issue":{"contact_id":"c\u002d1"}}`, "c-1", nil},
		{"escaped key", `{"\u0069ssue":{"contact_id":"c-1"}}`, "c-1", nil},
		{"missing", `{"issue":{"id":1}}`, "", ErrSubjectNotFound},
		{"null", `{"issue":{"contact_id":null}}`, "", ErrSubjectNotFound},
		{"not an object", `[1]`, "", ErrSubjectNotFound},
		{"broken before the id", `{"x":[1,,],"issue":{"contact_id":1}}`, "", ErrInvalidJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := m.Subject([]byte(tt.in))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(id) != tt.want {
				t.Fatalf("Subject = %q, %v, want %q", id, err, tt.want)
			}
		})
	}
	list, _ := Compile(Spec{SubjectPath: "data.#.id"})
	if _, err := list.Subject([]byte(`{}`)); err == nil {
		t.Error("Subject on a per-element spec should fail")
	}
}

func TestCompileRejects(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"empty path", Spec{Fields: []FieldSpec{{Path: ""}}}, "empty path"},
		{"empty key", Spec{Fields: []FieldSpec{{Path: "a..b"}}}, "empty key"},
		{"bit too high", Spec{Fields: []FieldSpec{{Path: "a", Bit: 32}}}, "out of 0..31"},
		{"negative bit", Spec{Fields: []FieldSpec{{Path: "a", Bit: -1}}}, "out of 0..31"},
		{"duplicate path", Spec{Fields: []FieldSpec{{Path: "a"}, {Path: "a", Bit: 2}}}, "duplicate"},
		{"field outside the subject array", Spec{Fields: []FieldSpec{{Path: "total"}}, SubjectPath: "data.#.id"}, "not under the subject's array"},
		{"field is the subject array element", Spec{Fields: []FieldSpec{{Path: "data.0"}}, SubjectPath: "data.#.id"}, "not under the subject's array"},
		{"field outside the subject array by wildcard", Spec{Fields: []FieldSpec{{Path: "d*.#.email"}}, SubjectPath: "data.#.id"}, "not under the subject's array"},
		{"field contains the subject", Spec{Fields: []FieldSpec{{Path: "data.#.who"}}, SubjectPath: "data.#.who.id"}, "may contain the subject"},
		{"field may contain the subject by wildcard", Spec{Fields: []FieldSpec{{Path: "i*"}}, SubjectPath: "issue.contact_id"}, "may contain the subject"},
		{"field may contain the subject by case", Spec{Fields: []FieldSpec{{Path: "ISSUE"}}, SubjectPath: "issue.contact_id"}, "may contain the subject"},
		{"field may contain the subject by index", Spec{Fields: []FieldSpec{{Path: "data.0.who"}}, SubjectPath: "data.#.who.id"}, "may contain the subject"},
		{"subject ends with #", Spec{SubjectPath: "data.#"}, "cannot end with #"},
		{"subject with a wildcard", Spec{SubjectPath: "data.#.i?"}, "no * or ?"},
		{"too many wildcards on one object", Spec{Fields: []FieldSpec{{Path: "a*"}, {Path: "b*"}, {Path: "c*"}, {Path: "d*"}, {Path: "e*"}, {Path: "f*"}, {Path: "g*"}, {Path: "h*"}, {Path: "i*"}}}, "wildcard patterns"},
		{"query", Spec{Fields: []FieldSpec{{Path: "data.#(id==1).email"}}}, "queries"},
		{"bad subject path", Spec{SubjectPath: ".id"}, "subject path"},
		{"hash without key", Spec{Fields: []FieldSpec{{Path: "a", Action: ActHash}}}, "HashKey"},
		{"unknown action", Spec{Fields: []FieldSpec{{Path: "a", Action: 9}}}, "unknown action"},
		{"mask not UTF-8", Spec{Fields: []FieldSpec{{Path: "a", Action: ActMask, Mask: "\xff"}}}, "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestParseAction(t *testing.T) {
	for _, a := range []Action{ActNull, ActRemove, ActMask, ActHash} {
		var got Action
		if err := got.UnmarshalText([]byte(a.String())); err != nil || got != a {
			t.Errorf("round trip of %v = %v, %v", a, got, err)
		}
	}
	if _, err := ParseAction("shred"); err == nil {
		t.Error("unknown action accepted")
	}
}

func TestRewriteAllocationsDoNotGrowWithBody(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race (sync.Pool drops objects at random); checked by the plain run")
	}
	m := benchMap(t)
	small := listBody(10)
	large := listBody(2000)
	p := alternating()
	dst := make([]byte, 0, 2*len(large))
	measure := func(body []byte) float64 {
		return testing.AllocsPerRun(20, func() {
			if _, _, err := m.Rewrite(dst[:0], body, p); err != nil {
				t.Fatal(err)
			}
		})
	}
	s, l := measure(small), measure(large)
	// One allocation is Result.Redacted; the rest would be a pool refill
	// after a GC, averaged away over the runs.
	if l > s+1 || l > 2 {
		t.Errorf("allocs/op: %v for %d bytes, %v for %d bytes", s, len(small), l, len(large))
	}
}

func TestRewriteConcurrentUse(t *testing.T) {
	m := benchMap(t)
	body := listBody(50)
	want, _, err := m.Rewrite(nil, body, alternating())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan []byte)
	for range 4 {
		go func() {
			var out []byte
			for range 20 {
				out, _, _ = m.Rewrite(out[:0], body, alternating())
			}
			done <- out
		}()
	}
	for range 4 {
		if got := <-done; !bytes.Equal(got, want) {
			t.Error("concurrent rewrite differs")
		}
	}
}

func TestRewriteNilPlannerSeesNothing(t *testing.T) {
	m, err := Compile(Spec{Fields: []FieldSpec{{Path: "email", Bit: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := m.Rewrite(nil, []byte(`{"email":"a"}`), nil)
	if err != nil || string(out) != `{"email":null}` {
		t.Fatalf("Rewrite = %s, %v", out, err)
	}
}

// Keys are matched by their decoded value, so decoding must agree with what
// encoding/json (and so any downstream consumer) reads.
func TestUnescapeMatchesEncodingJSON(t *testing.T) {
	for _, lit := range []string{
		`plain`, `a\"b\\c\/d`, `\b\f\n\r\t`, `\u0041\u00e9\u20AC`,
		`\ud83d\udc0e`, `\ud83d`, `\udc0e`, `\ud83dx`, `\ud83d\u0041`, `\ud83d\ud83d\udc0e`, `ž\u017e`,
	} {
		var want string
		if err := json.Unmarshal([]byte(`"`+lit+`"`), &want); err != nil {
			t.Fatalf("%s: %v", lit, err)
		}
		if got := string(unescape(nil, []byte(lit))); got != want {
			t.Errorf("unescape(%s) = %q, want %q", lit, got, want)
		}
	}
}
