package yamlfile

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type inner struct {
	Name  string   `json:"name" yaml:"name"`
	Count *int     `json:"count" yaml:"count"`
	Tags  []string `json:"tags,omitempty" yaml:"tags"`
}

type base struct {
	Origin time.Time `json:"origin"`
}

type doc struct {
	base
	ID      string            `json:"id"`
	Enabled bool              `json:"enabled"`
	Mask    uint32            `json:"mask"`
	Items   []inner           `json:"items"`
	Labels  map[string]string `json:"labels"`
	Ratio   float64           `json:"ratio"`
}

type ydoc struct {
	Listen  string        `yaml:"listen"`
	Timeout time.Duration `yaml:"timeout"`
	Items   []inner       `yaml:"items"`
}

func TestDecodeReadsJSONTaggedTypes(t *testing.T) {
	src := `
defaults: &d {count: 2}
id: 0042          # a string field keeps the text as written
enabled: true
mask: 0b0111
origin: 2026-01-02T03:04:05Z
ratio: 0.5
items:
  - name: a
    <<: *d
  - {name: b, count: null, tags: [x, y]}
labels: {k: v}
`
	var d doc
	// "defaults" is not a field: give the document a place for the anchor.
	type withDefaults struct {
		doc
		Defaults map[string]int `json:"defaults"`
	}
	var wd withDefaults
	if err := Decode([]byte(src), &wd, Options{Tag: "json"}); err != nil {
		t.Fatal(err)
	}
	d = wd.doc
	if d.ID != "0042" || !d.Enabled || d.Mask != 7 || d.Ratio != 0.5 || d.Origin.Year() != 2026 {
		t.Fatalf("%+v", d)
	}
	if len(d.Items) != 2 || d.Items[0].Count == nil || *d.Items[0].Count != 2 || d.Items[1].Count != nil || len(d.Items[1].Tags) != 2 {
		t.Fatalf("items %+v", d.Items)
	}
}

func TestDecodeReportsEveryMistakeWithLineColumnAndAHint(t *testing.T) {
	src := `id: x
enabeld: true
mask: -1
items:
  - name: a
    cuont: 3
  - name: [1]
labels: [a]
origin: yesterday
id: y
`
	var d doc
	err := Decode([]byte(src), &d, Options{Tag: "json", Time: func(s string) (time.Time, error) {
		return time.Time{}, errors.New("write a time like 2026-01-02")
	}})
	es := AsErrors(err)
	want := []string{
		`line 2, column 1: unknown field "enabeld" (did you mean enabled?)`,
		`line 3, column 7: mask: want a whole number from 0 to 4294967295, got "-1"`,
		`line 6, column 5: items[0]: unknown field "cuont" (did you mean count?)`,
		`line 7, column 11: items[1].name: want a text, got a list`,
		`line 8, column 9: labels: want a mapping (key: value lines), got a list`,
		`line 9, column 9: origin: write a time like 2026-01-02`,
		`line 10, column 1: "id" is given twice (first at line 1)`,
	}
	if len(es) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(es), len(want), err)
	}
	for i, w := range want {
		if es[i].Error() != w {
			t.Errorf("error %d:\n got %s\nwant %s", i, es[i], w)
		}
	}
}

func TestDecodeYAMLTaggedTypesWithTheYAMLLibrary(t *testing.T) {
	var d ydoc
	if err := Decode([]byte("listen: 127.0.0.1:80\ntimeout: 1m30s\nitems: [{name: a}]\n"), &d, Options{}); err != nil {
		t.Fatal(err)
	}
	if d.Listen != "127.0.0.1:80" || d.Timeout != 90*time.Second || d.Items[0].Name != "a" {
		t.Fatalf("%+v", d)
	}
	err := Decode([]byte("listen: x\ntimeout: soon\nlisten_addr: y\n"), &d, Options{})
	if err == nil || !strings.Contains(err.Error(), `line 2, column 10: timeout: "soon" is not a duration`) ||
		!strings.Contains(err.Error(), `unknown field "listen_addr" (did you mean listen?)`) {
		t.Fatalf("%v", err)
	}
}

func TestSyntaxErrorsCarryTheLine(t *testing.T) {
	var d ydoc
	err := Decode([]byte("listen: x\n  bad: [\n"), &d, Options{})
	var e *Error
	if !errors.As(err, &e) || e.Line == 0 {
		t.Fatalf("%#v", err)
	}
	if err := Decode(nil, &d, Options{}); err != nil {
		t.Fatalf("empty document: %v", err)
	}
}

func TestLocateFindsAJSONPath(t *testing.T) {
	root, err := Parse([]byte("legalisations:\n  - id: a\n  - id: b\n    purpose_id: p\nconfig:\n  x: 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string][2]int{
		"legalisations[1].purpose_id": {4, 17},
		"legalisations[1].missing":    {3, 5}, // the deepest node found
		"config.x":                    {6, 6},
		"nothing":                     {1, 1},
	} {
		l, c := Locate(root, path)
		if [2]int{l, c} != want {
			t.Errorf("%s: line %d column %d, want %v", path, l, c, want)
		}
	}
}
