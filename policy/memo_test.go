package policy

import (
	"reflect"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Every field of Facts must be part of the memo key: a Facts value differing
// in any one field must miss.
func TestMemoKeyCoversEveryField(t *testing.T) {
	m := newMemo(1024)
	base := alice(agent())
	m.put(&base, Decision{Allow: true, Reason: "base"})
	if _, ok := m.get(&base); !ok {
		t.Fatal("stored facts miss")
	}
	rt := reflect.TypeFor[Facts]()
	for i := range rt.NumField() {
		f := base
		v := reflect.ValueOf(&f).Elem().Field(i)
		switch v.Kind() {
		case reflect.String:
			v.SetString(v.String() + "x")
		case reflect.Bool:
			v.SetBool(!v.Bool())
		case reflect.Uint32:
			v.SetUint(v.Uint() ^ 1<<31)
		default:
			t.Fatalf("field %s: kind %s not covered by this test", rt.Field(i).Name, v.Kind())
		}
		if d, ok := m.get(&f); ok {
			t.Errorf("changing %s still hits the memo (%+v)", rt.Field(i).Name, d)
		}
	}
}

func TestBuildInputShape(t *testing.T) {
	f := alice(agent())
	f.Roles = "agent,marketer"
	req := &Request{
		Method: "POST", Path: "/api/outbound/calls", RawQuery: "a=1&a=2&b=x%20y",
		Host: "crm.local", Scheme: "https",
		Headers: map[string]string{"X-Gdpr-Roles": "agent"},
		Body:    map[string]any{"contact_id": "c-1", "type": "campaign"},
	}
	v, err := buildInput(&f, req)
	if err != nil {
		t.Fatal(err)
	}
	obj := v.(ast.Object)
	want := map[string]string{
		"attributes":   `{"request": {"http": {"method": "POST", "path": "/api/outbound/calls?a=1&a=2&b=x%20y", "host": "crm.local", "scheme": "https", "headers": {"x-gdpr-roles": "agent"}}}}`,
		"parsed_path":  `["api", "outbound", "calls"]`,
		"parsed_query": `{"a": ["1", "2"], "b": ["x y"]}`,
		"parsed_body":  `{"contact_id": "c-1", "type": "campaign"}`,
		"caller":       `{"authenticated": true, "roles": ["agent", "marketer"], "sensitivity_mask": 7, "view_archived": false, "view_expired": false, "export_evidence": false, "edit_items": false, "edit_evidence": false, "gdpr_permission": false, "archive_mode": false}`,
		"subject":      `{"present": true, "known": true, "restricted": false, "active": 15, "archived": 0, "expired": 0, "obliviated": 0, "coverage": "blue", "coverage_explicit": 15, "coverage_inherited": 0, "comm_permitted": true}`,
		"route":        `{"kind": "read", "comm_type": ""}`,
		"config":       `{"gdpr_enforced": true, "fail_open": false}`,
		"store":        `{"unavailable": false}`,
		"write":        `{"mask": 0}`,
	}
	for key, w := range want {
		got := obj.Get(ast.StringTerm(key))
		if got == nil || got.Value.Compare(ast.MustParseTerm(w).Value) != 0 {
			t.Errorf("input.%s = %v, want %s", key, got, w)
		}
	}
	if obj.Get(ast.StringTerm("now")) == nil {
		t.Error("input.now missing")
	}
	v, err = buildInput(&f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v.(ast.Object).Get(ast.StringTerm("attributes")) != nil {
		t.Error("input.attributes present without a request")
	}
}
