package gate

import (
	"testing"

	"github.com/gdprgate/gdprgate/internal/canon"
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
		{"GET", "/api/contacts//export", "one", "export"}, // merged: contact "export"
		{"POST", "/api/contacts/c-1", "", ""},
		{"GET", "/", "root", ""},
		{"GET", "/api", "", ""},
		// Every variant a backend router sends to the same resource.
		{"GET", "/api/contacts/c%2D2", "one", "c-2"},
		{"GET", "/api/contacts/%63-2", "one", "c-2"},
		{"GET", "/api/contacts/c%2d2", "one", "c-2"},
		{"GET", "/api//contacts/c-2", "one", "c-2"},
		{"GET", "/api/contacts/./c-2", "one", "c-2"},
		{"GET", "/api/x/../contacts/c-2", "one", "c-2"},
		{"GET", "/API/Contacts/c-2", "one", "c-2"},
		{"GET", "/api/contacts/c-2;jsessionid=1", "one", "c-2"},
		{"GET", "/api/%63ontacts/c-2", "one", "c-2"},
		{"GET", `/api\contacts\c-2`, "one", "c-2"},
		{"GET", "/api/CONTACTS/C-2/EXPORT", "export", "C-2"},
		{"GET", "/api/contactſ/c-2", "one", "c-2"},
		{"GET", "http://crm/api/contacts/c-2", "one", "c-2"},
		{"GET", "/api/contacts/c-2/..", "list", ""},
		{"GET", "*", "", ""},
	}
	for _, tc := range cases {
		tg, err := canon.Parse(tc.path)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		r, param := tbl.match(tc.method, tg.Path)
		got := ""
		if r != nil {
			got = r.cfg.Name
		}
		if got != tc.route || param != tc.param {
			t.Errorf("%s %s: route %q param %q, want %q %q", tc.method, tc.path, got, param, tc.route, tc.param)
		}
	}
}
