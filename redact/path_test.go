package redact

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestParsePathAcceptsGJSONValueSelectors(t *testing.T) {
	tests := []struct {
		path string
		want []seg
	}{
		{"email", []seg{{segKey, "email", -1, false}}},
		{`fav\.movie.name`, []seg{{segKey, "fav.movie", -1, false}, {segKey, "name", -1, false}}},
		{"friends.1.first", []seg{{segKey, "friends", -1, false}, {segKey, "1", 1, false}, {segKey, "first", -1, false}}},
		{"orders.01.id", []seg{{segKey, "orders", -1, false}, {segKey, "01", 1, false}, {segKey, "id", -1, false}}},
		{`a.\1`, []seg{{segKey, "a", -1, false}, {segKey, "1", -1, false}}},
		{"data.#.email", []seg{{segKey, "data", -1, false}, {segEach, "#", -1, false}, {segKey, "email", -1, false}}},
		{"child*.n?me", []seg{{segWild, "child*", -1, false}, {segWild, "n?me", -1, false}}},
		{`\#.\@id.\!x.\[0\]`, []seg{{segKey, "#", -1, false}, {segKey, "@id", -1, false}, {segKey, "!x", -1, false}, {segKey, "[0]", -1, false}}},
		{`a\*b.a\\b`, []seg{{segKey, "a*b", -1, false}, {segKey, `a\b`, -1, false}}},
		{"ext.crm.id", []seg{{segKey, "ext", -1, false}, {segKey, "crm", -1, false}, {segKey, "id", -1, false}}},
		{"naïve.Ž", []seg{{segKey, "naïve", -1, false}, {segKey, "Ž", -1, false}}},
	}
	for _, tt := range tests {
		p, err := ParsePath(tt.path)
		if err != nil {
			t.Errorf("ParsePath(%q): %v", tt.path, err)
			continue
		}
		if !slices.Equal(p.segs, tt.want) {
			t.Errorf("ParsePath(%q) = %+v, want %+v", tt.path, p.segs, tt.want)
		}
		if p.String() != tt.path {
			t.Errorf("String() = %q", p.String())
		}
	}
}

func TestParsePathRefusesWithTheReason(t *testing.T) {
	tests := []struct{ path, reason string }{
		{"", "empty path"},
		{".email", "empty key at offset 0"},
		{"email.", "empty key"},
		{"a..b", "empty key"},
		{"..a", "empty key"},
		{"tags.#", `map the array itself ("tags")`},
		{"#", "cannot end with #"},
		{"data.#(age>40).email", "queries"},
		{"data.#(age>40)#.email", "queries"},
		{"data.#[age>40].email", "queries"},
		{"a#b", `escape a # inside a key as \#`},
		{"##", "# stands alone"},
		{"name|@reverse", "pipes"},
		{"children.@reverse", "modifiers"},
		{"@this", "modifiers"},
		{"[a,b]", "multipaths"},
		{"x.{a,b}", "multipaths"},
		{"!true", "literals"},
		{`a\`, "escapes nothing"},
		{`a\.b*`, "cannot also hold escapes"},
		{"a\xff", "not valid UTF-8"},
	}
	for _, tt := range tests {
		_, err := ParsePath(tt.path)
		var pe *PathError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("ParsePath(%q) = %v, want a PathError containing %q", tt.path, err, tt.reason)
		}
	}
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, key string
		fold, want   bool
	}{
		{"*", "", false, true},
		{"*", "anything", false, true},
		{"a*", "a", false, true},
		{"a*", "ba", false, false},
		{"*_notes", "health_notes", false, true},
		{"h*s", "health_notes", false, true},
		{"h?alth", "health", false, true},
		{"h?alth", "hèalth", false, true}, // ? is one character, not one byte
		{"h?alth", "heealth", false, false},
		{"a*b*c", "axxbyyc", false, true},
		{"a*b*c", "axxbyy", false, false},
		{"HEALTH*", "health_notes", false, false},
		{"HEALTH*", "health_notes", true, true},
		{"k*", "\u212aey", true, true}, // the Kelvin sign folds to k
		{"*a*a*a*a*a*a*a*a*b", strings.Repeat("a", 200), false, false},
	}
	for _, tt := range tests {
		if got := globMatch(tt.pattern, tt.key, tt.fold); got != tt.want {
			t.Errorf("globMatch(%q, %q, fold=%v) = %v", tt.pattern, tt.key, tt.fold, got)
		}
	}
}

func TestRewritePathLanguage(t *testing.T) {
	tests := []struct {
		name     string
		fields   []FieldSpec
		exact    bool
		in, want string
		redacted []string
		// anyShape: what the path selects in a body that is not its shape
		// (refused otherwise: TestRewriteRefusesContainersOfTheOtherKind).
		anyShape bool
	}{
		{
			name:   "a key with a dot, escaped",
			fields: []FieldSpec{{Path: `ext\.crm\.id`, Bit: 1}},
			in:     `{"ext.crm.id":"X1","ext":{"crm":{"id":"keep"}}}`,
			want:   `{"ext.crm.id":null,"ext":{"crm":{"id":"keep"}}}`, redacted: []string{`ext\.crm\.id`},
		},
		{
			name:   "an index on an array, a key on an object",
			fields: []FieldSpec{{Path: "orders.0.id", Bit: 1}},
			in:     `{"orders":[{"id":1},{"id":2}],"x":{"orders":{"0":{"id":3}}}}`,
			want:   `{"orders":[{"id":null},{"id":2}],"x":{"orders":{"0":{"id":3}}}}`, redacted: []string{"orders.0.id"},
		},
		{
			name:   "an index reads an object's numeric key too",
			fields: []FieldSpec{{Path: "orders.1.id", Bit: 1}},
			in:     `{"orders":{"1":{"id":"by key"},"01":{"id":"not this"}}}`,
			want:   `{"orders":{"1":{"id":null},"01":{"id":"not this"}}}`,
		},
		{
			name:   "index and # together",
			fields: []FieldSpec{{Path: "data.#.email", Bit: 1}, {Path: "data.1.notes", Bit: 3}},
			in:     `{"data":[{"email":"a","notes":"n0"},{"email":"b","notes":"n1"}]}`,
			want:   `{"data":[{"email":null,"notes":"n0"},{"email":null,"notes":null}]}`,
		},
		{
			name:   "wildcards in keys",
			fields: []FieldSpec{{Path: "contact_*.name", Bit: 1}, {Path: "*.phone?", Bit: 1}},
			in:     `{"contact_main":{"name":"A","phone1":"1"},"contact_alt":{"name":"B"},"other":{"name":"C","phone2":"2","phone":"3"}}`,
			want:   `{"contact_main":{"name":null,"phone1":null},"contact_alt":{"name":null},"other":{"name":"C","phone2":null,"phone":"3"}}`,
		},
		{
			name:   "wildcards do not index arrays",
			fields: []FieldSpec{{Path: "list.*", Bit: 1}},
			in:     `{"list":["a","b"]}`, want: `{"list":["a","b"]}`, anyShape: true,
		},
		{
			name:   "# is the key # on an object, as gjson reads it",
			fields: []FieldSpec{{Path: "data.#.email", Bit: 1}},
			in:     `{"data":{"#":{"email":"a"},"x":{"email":"b"}}}`,
			want:   `{"data":{"#":{"email":null},"x":{"email":"b"}}}`, anyShape: true,
		},
		{
			name:   "keys matched ignoring case and escapes",
			fields: []FieldSpec{{Path: "health_notes", Bit: 3}},
			in:     `{"HEALTH_NOTES":"a","health\u005fnotes":"b","Health_Notes":"c","\u0048EALTH_NOTES":"d","health_note":"e"}`,
			want:   `{"HEALTH_NOTES":null,"health\u005fnotes":null,"Health_Notes":null,"\u0048EALTH_NOTES":null,"health_note":"e"}`,
		},
		{
			name:   "case folding beyond ASCII (the Kelvin sign is a k)",
			fields: []FieldSpec{{Path: "kind", Bit: 1}, {Path: "straße", Bit: 1}},
			in:     `{"\u212aind":"a","KIND":"b","STRAẞE":"c","strasse":"d"}`,
			want:   `{"\u212aind":null,"KIND":null,"STRAẞE":null,"strasse":"d"}`,
		},
		{
			name:   "exact case when asked",
			fields: []FieldSpec{{Path: "health_notes", Bit: 3}},
			exact:  true,
			in:     `{"HEALTH_NOTES":"a","health\u005fnotes":"b"}`,
			want:   `{"HEALTH_NOTES":"a","health\u005fnotes":null}`,
		},
		{
			name: "overlapping paths: every hidden bit counts, the least telling action wins",
			fields: []FieldSpec{
				{Path: "email", Bit: 1, Action: ActMask},
				{Path: "e*", Bit: 2, Action: ActRemove},
				{Path: "*l", Bit: 0, Action: ActHash},
			},
			in:       `{"email":"a","eve":"b","mail":"c","x":1}`,
			want:     `{"mail":` + hashOf("c") + `,"x":1}`,
			redacted: []string{"*l", "e*", "email"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Compile(Spec{Fields: tt.fields, ExactCase: tt.exact, HashKey: testKey})
			if err != nil {
				t.Fatal(err)
			}
			m.anyShape = tt.anyShape
			out, res, err := m.Rewrite(nil, []byte(tt.in), Fixed(0))
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tt.want {
				t.Errorf("got  %s\nwant %s", out, tt.want)
			}
			if tt.redacted != nil && !slices.Equal(res.Redacted, tt.redacted) {
				t.Errorf("Redacted = %q, want %q", res.Redacted, tt.redacted)
			}
		})
	}
}

func TestOverlappingPathsRedactOnlyForHiddenBits(t *testing.T) {
	m, err := Compile(Spec{Fields: []FieldSpec{{Path: "email", Bit: 1, Action: ActMask}, {Path: "e*", Bit: 2, Action: ActRemove}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		mask uint32
		want string
	}{
		{0b110, `{"email":"a"}`},   // both visible
		{0b100, `{"email":"***"}`}, // only the mask field hidden
		{0b010, `{}`},              // only the remove field hidden
	} {
		out, _, err := m.Rewrite(nil, []byte(`{"email":"a"}`), Fixed(tt.mask))
		if err != nil || string(out) != tt.want {
			t.Errorf("mask %03b: %s, %v, want %s", tt.mask, out, err, tt.want)
		}
	}
}

func TestRewriteMatchedReportsPathsPresentWhateverTheirRedaction(t *testing.T) {
	m, err := Compile(Spec{Fields: []FieldSpec{
		{Path: "address", Bit: 1}, {Path: "address.street", Bit: 1}, {Path: "address.stret", Bit: 1},
		{Path: "email", Bit: 0}, {Path: "profile.emial", Bit: 1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"address":{"street":"x"},"email":"a","profile":{"email":"b"}}`)
	for _, mask := range []uint32{0, 0b11} {
		matched := make([]uint64, m.MatchedWords())
		if _, _, err := m.RewriteMatched(nil, body, Fixed(mask), matched); err != nil {
			t.Fatal(err)
		}
		var got []string
		for k, p := range m.Paths() {
			if matched[k/64]&(1<<(k%64)) != 0 {
				got = append(got, p)
			}
		}
		// address.street is found below a redacted address too.
		if want := []string{"address", "address.street", "email"}; !slices.Equal(got, want) {
			t.Errorf("mask %b: matched %q, want %q", mask, got, want)
		}
	}
	sel, err := m.Select(body)
	if err != nil || !slices.Equal(sel, []string{"address", "address.street", "email"}) {
		t.Errorf("Select = %q, %v", sel, err)
	}
	if _, err := m.Select([]byte(`{"email":1,}`)); !errors.Is(err, ErrInvalidJSON) {
		t.Errorf("Select of invalid JSON: %v", err)
	}
}

func TestSelectFindsDuplicateSubjects(t *testing.T) {
	m, err := Compile(Spec{SubjectPath: "contact_id"})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{`{"contact_id":"c-1","contact_id":"c-8"}`, `{"contact_id":"c-1","CONTACT_ID":"c-8"}`} {
		if _, err := m.Select([]byte(in)); !errors.Is(err, ErrDuplicateSubject) {
			t.Errorf("Select(%s) = %v, want ErrDuplicateSubject", in, err)
		}
	}
	list, _ := Compile(Spec{SubjectPath: "data.#.id"})
	if _, err := list.Select([]byte(`{"data":[{"id":1},{"id":2}]}`)); err != nil {
		t.Errorf("one id per element is not a duplicate: %v", err)
	}
	if _, err := list.Select([]byte(`{"data":[{"id":1,"Id":2}]}`)); !errors.Is(err, ErrDuplicateSubject) {
		t.Errorf("two ids in one element: %v", err)
	}
}

func TestRootSaysWhichDocumentsThePathsCanReach(t *testing.T) {
	tests := []struct {
		spec     Spec
		obj, arr bool
	}{
		{Spec{Fields: []FieldSpec{{Path: "email"}}}, true, false},
		{Spec{Fields: []FieldSpec{{Path: "*.email"}}}, true, false},
		{Spec{Fields: []FieldSpec{{Path: "#.email"}}, SubjectPath: "#.id"}, false, true},
		{Spec{Fields: []FieldSpec{{Path: "0.email"}}}, true, true},
		{Spec{Fields: []FieldSpec{{Path: "data.#.email"}}, SubjectPath: "data.#.id"}, true, false},
		{Spec{SubjectPath: "contact_id"}, true, false},
	}
	for _, tt := range tests {
		m, err := Compile(tt.spec)
		if err != nil {
			t.Fatal(err)
		}
		if obj, arr := m.Root(); obj != tt.obj || arr != tt.arr {
			t.Errorf("%+v: Root() = %v, %v, want %v, %v", tt.spec, obj, arr, tt.obj, tt.arr)
		}
	}
}

func TestSubjectPathLanguage(t *testing.T) {
	tests := []struct {
		path, in, want string
		exact          bool
	}{
		{"contact_id", `{"CONTACT_ID":"c-1"}`, "c-1", false},
		{"contact_id", `{"contact\u005fid":"c-1"}`, "c-1", false},
		{"contact_id", `{"CONTACT_ID":"c-1","contact_id":"c-2"}`, "c-2", true},
		{"items.1.id", `{"items":[{"id":"a"},{"id":"b"}]}`, "b", false},
		{`meta\.subject`, `{"meta":{"subject":"no"},"meta.subject":"yes"}`, "yes", false},
	}
	for _, tt := range tests {
		m, err := Compile(Spec{SubjectPath: tt.path, ExactCase: tt.exact})
		if err != nil {
			t.Fatal(err)
		}
		id, err := m.Subject([]byte(tt.in))
		if err != nil || string(id) != tt.want {
			t.Errorf("Subject(%q) in %s = %q, %v, want %q", tt.path, tt.in, id, err, tt.want)
		}
	}
	// Per-element subjects are matched the same way.
	m, err := Compile(Spec{Fields: []FieldSpec{{Path: "data.#.email", Bit: 1}}, SubjectPath: "data.#.id"})
	if err != nil {
		t.Fatal(err)
	}
	p := &masks{m: map[string]uint32{"c-1": 2}}
	out, _, err := m.Rewrite(nil, []byte(`{"data":[{"ID":"c-1","email":"a"},{"Id":"c-2","email":"b"}]}`), p)
	if err != nil || string(out) != `{"data":[{"ID":"c-1","email":"a"},{"Id":"c-2","email":null}]}` {
		t.Errorf("per-element subject by folded key: %s, %v (calls %q)", out, err, p.calls)
	}
}

// Outside a per-element subject's scope nothing is visible, whatever the
// last element's subject could see.
func TestPerElementMaskDoesNotLeakPastItsArray(t *testing.T) {
	m, err := Compile(Spec{Fields: []FieldSpec{{Path: "data.#.email", Bit: 1}}, SubjectPath: "data.#.id"})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"data":[{"id":"c-1","email":"a"}],"data":{"#":{"email":"b"}}}`)
	if _, _, err := m.Rewrite(nil, body, Fixed(0xff)); !errors.Is(err, ErrShape) {
		t.Errorf("an object where the list's items are mapped: %v, want ErrShape", err)
	}
	// Read as gjson reads it (# the key "#"), the mask stays in its array.
	m.anyShape = true
	out, _, err := m.Rewrite(nil, body, Fixed(0xff))
	if err != nil || string(out) != `{"data":[{"id":"c-1","email":"a"}],"data":{"#":{"email":null}}}` {
		t.Errorf("got %s, %v", out, err)
	}
}

// A container of the other kind than the paths describe, below the root,
// holds values no path selects, which a client reads all the same (a list
// sent as an object keyed by index, as PHP encodes a list with gaps; a
// record sent as a list): refused unless empty, streamed alike. The root's
// shape is the caller's to judge (gate's body_shape).
func TestRewriteRefusesContainersOfTheOtherKind(t *testing.T) {
	list := []FieldSpec{{Path: "data.#.email", Bit: 1}, {Path: "data.#.phones.#.number", Bit: 2}, {Path: "meta.owner.name", Bit: 3}}
	tests := []struct {
		name   string
		fields []FieldSpec
		in     string
		shape  bool
	}{
		{"a list as an object keyed by index", list, `{"data":{"0":{"email":"a"},"2":{"email":"b"}}}`, true},
		{"a list as an object, # as a key", list, `{"data":{"#":{"email":"a"}}}`, true},
		{"a list inside the list", list, `{"data":[[{"email":"a"}]]}`, true},
		{"a record as a list", list, `{"meta":{"owner":[{"name":"n"}]}}`, true},
		{"a record as a list of scalars", list, `{"meta":{"owner":["n"]}}`, true},
		{"a nested list as an object", list, `{"data":[{"phones":{"home":{"number":1}}}]}`, true},
		{"an item as a list", []FieldSpec{{Path: "#.email", Bit: 1}}, `[["a"]]`, true},
		{"empty ones carry nothing", list, `{"data":{},"meta":{"owner":[ ]},"x":[[{"email":"a"}]]}`, false},
		{"scalars and null carry no field", list, `{"data":null,"meta":{"owner":"n"}}`, false},
		{"an index reads an object's key", []FieldSpec{{Path: "data.0.email", Bit: 1}}, `{"data":{"0":{"email":"a"}}}`, false},
		{"keys and # at one place take both", []FieldSpec{{Path: "data.#.email", Bit: 1}, {Path: "data.total", Bit: 2}}, `{"data":{"total":1,"x":2}}`, false},
		{"a wildcard takes an object", []FieldSpec{{Path: "data.*", Bit: 1}}, `{"data":{"a":1}}`, false},
		{"a wildcard refuses a list", []FieldSpec{{Path: "data.*", Bit: 1}}, `{"data":[1]}`, true},
		{"the root is not judged", list, `[{"email":"a"}]`, false},
		{"below a hidden value nothing is read", []FieldSpec{{Path: "meta", Bit: 4}, {Path: "meta.owner.name", Bit: 3}}, `{"meta":{"owner":[{"name":"n"}]}}`, false},
		{"cut short inside is invalid, not misshapen", list, `{"data":{`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Compile(Spec{Fields: tt.fields})
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = m.Rewrite(nil, []byte(tt.in), Fixed(0))
			if got := errors.Is(err, ErrShape); got != tt.shape {
				t.Fatalf("ErrShape %v, want %v (err %v)", got, tt.shape, err)
			}
			for i := 0; i <= len(tt.in); i++ {
				checkStream(t, m, Fixed(0), []byte(tt.in), []int{i})
			}
		})
	}
}

// TestRewriteMatchedAcrossWords: with more fields than a word holds, each
// present path sets its own bit (word k/64, bit k%64) and no other, for
// paths that share a node (a wildcard and a literal) too.
func TestRewriteMatchedAcrossWords(t *testing.T) {
	var fields []FieldSpec
	for k := range 150 {
		fields = append(fields, FieldSpec{Path: fmt.Sprintf("f%03d", k), Bit: k % 8})
	}
	fields = append(fields, FieldSpec{Path: "f1*", Bit: 3})
	m, err := Compile(Spec{Fields: fields})
	if err != nil {
		t.Fatal(err)
	}
	for _, present := range [][]int{{0}, {63}, {64}, {127, 128}, {1, 65, 129, 149}, {100, 110, 120}} {
		var body []byte
		want := map[string]bool{}
		for _, k := range present {
			key := fmt.Sprintf("f%03d", k)
			body = fmt.Appendf(body, `,"%s":1`, key)
			want[key] = true
			if strings.HasPrefix(key, "f1") {
				want["f1*"] = true
			}
		}
		body = append([]byte("{"), append(body[1:], '}')...)
		for _, mask := range []uint32{0, 0xff} {
			matched := make([]uint64, m.MatchedWords())
			if _, _, err := m.RewriteMatched(nil, body, Fixed(mask), matched); err != nil {
				t.Fatal(err)
			}
			for k, p := range m.Paths() {
				if got := matched[k/64]&(1<<(k%64)) != 0; got != want[p] {
					t.Errorf("%s mask %x: path %s (rank %d) matched %v, want %v", body, mask, p, k, got, want[p])
				}
			}
		}
	}
}
