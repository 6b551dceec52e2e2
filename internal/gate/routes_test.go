package gate

import (
	"testing"

	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/policy/model"
)

func TestRouteMatching(t *testing.T) {
	cfg, err := config.Parse([]byte(`
routes:
  - {name: list, method: GET, path: /api/contacts, kind: list, subject: {entity: contact, from: item, path: data.#.id}}
  - {name: export, method: GET, path: "/api/contacts/{id}/export", kind: export, subject: {entity: contact, from: path, name: id}}
  - {name: one, method: GET, path: "/api/contacts/{id}", kind: read, subject: {entity: contact, from: path, name: id}}
  - {name: root, method: GET, path: /, kind: write}
`))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := model.NewIndex(&model.Registers{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := compile(cfg, ix, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		method, path, route, param string
	}{
		{"GET", "/api/contacts", "list", ""},
		{"GET", "/api/contacts/", "list", ""},
		{"GET", "/api/contacts/c-1", "one", "c-1"},
		{"HEAD", "/api/contacts/c-1", "one", "c-1"},
		{"GET", "/api/contacts/c-1/export", "export", "c-1"},
		{"GET", "/api/contacts/c-1/calls", "", ""},
		{"GET", "/api/contacts//export", "", ""},
		{"POST", "/api/contacts/c-1", "", ""},
		{"GET", "/", "root", ""},
		{"GET", "/api", "", ""},
	}
	for _, tc := range cases {
		r, param := tbl.match(tc.method, tc.path)
		got := ""
		if r != nil {
			got = r.cfg.Name
		}
		if got != tc.route || param != tc.param {
			t.Errorf("%s %s: route %q param %q, want %q %q", tc.method, tc.path, got, param, tc.route, tc.param)
		}
	}
}

func TestQueryValue(t *testing.T) {
	cases := []struct{ raw, name, want string }{
		{"contact_id=c-1", "contact_id", "c-1"},
		{"a=1&contact_id=c%2F1&b=2", "contact_id", "c/1"},
		{"contact_idx=1", "contact_id", ""},
		{"", "contact_id", ""},
		{"contact_id=%zz", "contact_id", ""},
	}
	for _, tc := range cases {
		if got := queryValue(tc.raw, tc.name); got != tc.want {
			t.Errorf("queryValue(%q) = %q, want %q", tc.raw, got, tc.want)
		}
	}
}
