package config

import (
	"strings"
	"testing"
)

func TestExampleConfigLoads(t *testing.T) {
	c, err := Load("../../examples/crm/gdprgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Routes) != 10 || c.Routes[0].Line == 0 {
		t.Fatalf("routes %d, first line %d", len(c.Routes), c.Routes[0].Line)
	}
	if got := len(c.Wipes.Steps["contact"]); got != 3 {
		t.Errorf("wipe steps %d", got)
	}
}

func TestInvalidRouteMapNamesLineAndReason(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown kind", "routes:\n  - method: GET\n    path: /a/{id}\n    kind: peek\n", "routes[0] (line 2): kind must be"},
		{"subject param not in path", "routes:\n  - method: GET\n    path: /a/{id}\n    kind: read\n    subject: {entity: contact, from: path, name: cid}\n", "not a {parameter} of the path"},
		{"item subject without #", "routes:\n  - method: GET\n    path: /a\n    kind: list\n    subject: {entity: contact, from: item, path: data.id}\n", "one #"},
		{"outbound without comm type", "routes:\n  - method: POST\n    path: /o\n    kind: outbound\n    subject: {entity: contact, from: body, path: contact_id}\n", "needs comm_type"},
		{"bad comm type", "routes:\n  - method: POST\n    path: /o\n    kind: outbound\n    comm_type: carrier_pigeon\n    subject: {entity: contact, from: body, path: contact_id}\n", "not a communication type"},
		{"duplicate route", "routes:\n  - method: GET\n    path: /a/{id}\n    kind: write\n  - method: GET\n    path: /a/{x}\n    kind: write\n", "routes[1] (line 5): same method and path"},
		{"unknown field", "routes:\n  - {method: GET, path: /a, kind: write, colour: red}\n", `line 2, column 42: routes[0]: unknown field "colour"`},
		{"unknown subject field", "routes:\n  - method: GET\n    path: /a/{id}\n    kind: read\n    subject: {entity: contact, from: path, name: id, param: x}\n", `line 5, column 54: routes[0].subject: unknown field "param"`},
		{"a typo suggests the field", "routes:\n  - {method: GET, path: /a, kind: write, feilds: {}}\n", `unknown field "feilds" (did you mean fields?)`},
		{"a top-level typo", "upstrem: http://x\n", `line 1, column 1: unknown field "upstrem" (did you mean upstream?)`},
		{"a key given twice", "listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n", `"listen" is given twice (first at line 1)`},
		{"a bad duration", "store: {max_staleness: forever}\n", `store.max_staleness: "forever" is not a duration`},
		{"bad method", "routes:\n  - {method: FETCH, path: /a, kind: write}\n", "method must be"},
		{"partial parameter", "routes:\n  - method: GET\n    path: /a/x{id}\n    kind: write\n", "must be a whole segment"},
		{"fields without subject", "routes:\n  - {method: GET, path: /a, kind: read, fields: {email: 1}}\n", "needs a subject"},
		{"bad action", "redaction: {default: shred}\n", "redaction.default"},
		{"negative cache budget", "store: {max_cache_bytes: -1}\n", "store.max_cache_bytes"},
		{"audit retention without export", "audit: {retention: {max_age: 720h}}\n", "exported before they are trimmed"},
		{"audit export to a non-http url", "audit: {retention: {max_entries: 10}, export: {url: \"ftp://x\"}}\n", "audit.export.url"},
		{"field path ending with #", "routes:\n  - method: GET\n    path: /a/{id}\n    kind: read\n    subject: {entity: contact, from: path, name: id}\n    fields: {tags.#: contact}\n", `routes[0] (line 2): fields: path "tags.#": a path cannot end with #`},
		{"field path with a query", "routes:\n  - method: GET\n    path: /a/{id}\n    kind: read\n    subject: {entity: contact, from: path, name: id}\n    fields: {\"data.#(id==1).email\": contact}\n", "queries (#(...)) are not supported"},
		{"field path with a modifier", "routes:\n  - method: GET\n    path: /a/{id}\n    kind: read\n    subject: {entity: contact, from: path, name: id}\n    fields: {\"data.@reverse\": contact}\n", "modifiers (@...) are not supported"},
		{"field path with a pipe", "routes:\n  - method: GET\n    path: /a/{id}\n    kind: read\n    subject: {entity: contact, from: path, name: id}\n    fields: {\"a|b\": contact}\n", "pipes (|) are not supported"},
		{"field path with an empty key", "routes:\n  - method: GET\n    path: /a/{id}\n    kind: read\n    subject: {entity: contact, from: path, name: id}\n    fields: {\"a..b\": contact}\n", "empty key"},
		{"field outside the item subject's array", "routes:\n  - method: GET\n    path: /a\n    kind: list\n    subject: {entity: contact, from: item, path: data.#.id}\n    fields: {total: contact}\n", `routes[0] (line 2): fields: field "total" is not under the subject's array "data.#"`},
		{"field hiding the response subject", "routes:\n  - method: GET\n    path: /a/{id}\n    kind: read\n    subject: {entity: contact, from: response_body, path: issue.contact_id}\n    fields: {\"i*\": contact}\n", "may contain the subject path"},
		{"item subject with two #", "routes:\n  - method: GET\n    path: /a\n    kind: list\n    subject: {entity: contact, from: item, path: data.#.x.#.id}\n", "exactly one #"},
		{"response subject with a wildcard", "routes:\n  - method: GET\n    path: /a/{id}\n    kind: read\n    subject: {entity: contact, from: response_body, path: contact_*}\n", "no * or ?"},
		{"response subject with #", "routes:\n  - method: GET\n    path: /a/{id}\n    kind: read\n    subject: {entity: contact, from: response_body, path: data.#.id}\n", "a single value has no #"},
		{"comm type path with #", "routes:\n  - method: POST\n    path: /o\n    kind: outbound\n    comm_type_from: \"types.#\"\n    comm_types: {a: adhoc_oc}\n    subject: {entity: contact, from: body, path: contact_id}\n", "comm_type_from: path"},
		{"negative unseen_after", "body: {unseen_after: -1}\n", "body.unseen_after"},
		{"literal segment with an escape", "routes:\n  - {method: GET, path: /a%2Fb, kind: write}\n", "write literal segments decoded"},
		{"dot segment", "routes:\n  - {method: GET, path: /a/../b, kind: write}\n", "write literal segments decoded"},
		{"empty segment", "routes:\n  - {method: GET, path: /a//b, kind: write}\n", "write literal segments decoded"},
		{"path parameter", "routes:\n  - {method: GET, path: /a;v=1, kind: write}\n", "write literal segments decoded"},
		{"negative id bound", "limits: {max_id_bytes: -1}\n", "limits.max_id_bytes"},
		{"negative memory limit", "limits: {memory_limit: -1}\n", "limits.memory_limit"},
		{"unknown binary page release", "limits: {release_binary_pages: yes}\n", `limits.release_binary_pages: must be evict, drop or off (got "yes")`},
		{"bad trusted source", "identity: {trusted_sources: [10.0.0.0/8, lan]}\n", "identity.trusted_sources[1]"},
		{"wipe step without id", "wipes:\n  steps:\n    contact:\n      - {name: c, method: DELETE, path: /api/contacts}\n", "contain {id}"},
		{"communication without its spec", "routes:\n  - method: POST\n    path: /calls\n    kind: communication\n    subject: {entity: contact, from: body, path: contact_id}\n", "needs communication: {id: …}"},
		{"communication without id", "routes:\n  - method: POST\n    path: /calls\n    kind: communication\n    subject: {entity: contact, from: body, path: contact_id}\n    communication: {channel: {value: InboundCall}}\n", "communication.id is required"},
		{"communication condition from the response", "routes:\n  - method: POST\n    path: /calls\n    kind: communication\n    subject: {entity: contact, from: body, path: contact_id}\n    communication: {id: {from: response_body, path: id}, topic_id: {from: response_body, path: topic}}\n", "only id may come from the response"},
		{"communication value with both value and from", "routes:\n  - method: POST\n    path: /calls\n    kind: communication\n    subject: {entity: contact, from: body, path: contact_id}\n    communication: {id: {from: response_body, path: id}, channel: {value: X, from: body, path: c}}\n", "give value (a constant) or from"},
		{"communication unknown key", "routes:\n  - method: POST\n    path: /calls\n    kind: communication\n    subject: {entity: contact, from: body, path: contact_id}\n    communication: {id: {from: response_body, path: id}, chanel: {value: X}}\n", `unknown field "chanel"`},
		{"communication subject from the response", "routes:\n  - method: POST\n    path: /calls\n    kind: communication\n    subject: {entity: contact, from: response_body, path: contact_id}\n    communication: {id: {from: response_body, path: id}}\n", "subject must come from the request"},
		{"communication spec on a read", "routes:\n  - method: GET\n    path: /a/{id}\n    kind: read\n    subject: {entity: contact, from: path, name: id}\n    communication: {id: {from: path, name: id}}\n", "for kind: communication only"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestRouteMapAcceptsGJSONPaths(t *testing.T) {
	c, err := Parse([]byte(`routes:
  - method: GET
    path: /a/{id}
    kind: read
    exact_case: true
    subject: {entity: contact, from: path, name: id}
    fields:
      'ext\.crm\.id': contact
      orders.0.id: contact
      '*.name': contact
      contact_?.email: contact
      profile.emial: contact
  - method: GET
    path: /b
    kind: list
    subject: {entity: contact, from: item, path: 'data.#.meta\.id'}
    fields: {data.#.email: contact, data.0.notes: health}
`))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Routes[0].ExactCase || c.Routes[1].ExactCase {
		t.Errorf("exact_case: %v, %v", c.Routes[0].ExactCase, c.Routes[1].ExactCase)
	}
	if *c.Body.UnseenAfter != 1000 {
		t.Errorf("unseen_after default %d", *c.Body.UnseenAfter)
	}
}

func TestEmptyConfigIsDefaults(t *testing.T) {
	c, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.GRPCAddr != "127.0.0.1:9191" || c.AdminAddr != "127.0.0.1:9192" || c.Body.NonJSON != "fail" || c.FailOpen ||
		c.Store.MaxCacheBytes != 64<<20 || c.Store.Timeout == 0 {
		t.Errorf("defaults: %+v", c)
	}
}

func TestTrustedSources(t *testing.T) {
	c, err := Parse([]byte("identity: {trusted_sources: [10.1.0.0/16, 192.0.2.7, \"::ffff:10.2.0.1\"]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := c.Identity.TrustedPrefixes()
	if len(got) != 3 || got[0].String() != "10.1.0.0/16" || got[1].String() != "192.0.2.7/32" || got[2].String() != "10.2.0.1/32" {
		t.Errorf("prefixes %v", got)
	}
	d := Default()
	if p := d.Identity.TrustedPrefixes(); len(p) != 2 || p[0].String() != "127.0.0.0/8" || p[1].String() != "::1/128" {
		t.Errorf("default prefixes %v, want loopback", p)
	}
	if d.Limits.ReleaseBinaryPages != ReleaseEvict {
		t.Errorf("default limits.release_binary_pages %q", d.Limits.ReleaseBinaryPages)
	}
	if d.Limits.MaxIDBytes != 256 {
		t.Errorf("default limits.max_id_bytes %d", d.Limits.MaxIDBytes)
	}
}

// TestSubjectConfirmAndIDPattern: confirm and id_pattern are for subjects
// read from the request; confirm reads the answer like a response subject.
func TestSubjectConfirmAndIDPattern(t *testing.T) {
	route := func(kind, subject, fields string) string {
		y := "routes:\n  - method: GET\n    path: /a/{id}\n    kind: " + kind + "\n    subject: " + subject + "\n"
		if kind == "outbound" {
			y = strings.Replace(y, "kind: outbound", "kind: outbound\n    comm_type: adhoc_oc", 1)
		}
		if fields != "" {
			y += "    fields: " + fields + "\n"
		}
		return y
	}
	bad := []struct{ name, yaml, want string }{
		{"confirm on an item subject", route("list", "{entity: contact, from: item, path: data.#.id, confirm: data.#.id}", ""), "subject.confirm is for subjects read from the request"},
		{"confirm on a response subject", route("read", "{entity: contact, from: response_body, path: contact_id, confirm: id}", ""), "already reads the answer"},
		{"confirm on an outbound route", route("outbound", "{entity: contact, from: body, path: contact_id, confirm: contact_id}", ""), "acts before it answers"},
		{"confirm with two #", route("read", "{entity: contact, from: path, name: id, confirm: data.#.x.#.id}", ""), "at most one #"},
		{"confirm with a wildcard", route("read", "{entity: contact, from: path, name: id, confirm: i*}", ""), "no * or ?"},
		{"a field hiding the confirming id", route("read", "{entity: contact, from: path, name: id, confirm: contact.id}", "{contact: contact}"), "may contain the subject path"},
		{"a field outside the confirming list", route("read", "{entity: contact, from: path, name: id, confirm: data.#.contact_id}", "{total: contact}"), `not under the subject's array "data.#"`},
		{"a bad id_pattern", route("read", "{entity: contact, from: path, name: id, id_pattern: \"c-[0-9\"}", ""), "subject.id_pattern: error parsing regexp"},
		{"id_pattern on an item subject", route("list", "{entity: contact, from: item, path: data.#.id, id_pattern: c-.*}", ""), "subject.id_pattern is for subjects read from the request"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
	c, err := Parse([]byte(route("read", `{entity: contact, from: path, name: id, confirm: data.#.contact_id, id_pattern: "c-[0-9]+"}`, "{data.#.phone: contact}")))
	if err != nil {
		t.Fatal(err)
	}
	re, err := c.Routes[0].Subject.IDRegexp()
	if err != nil {
		t.Fatal(err)
	}
	// Anchored at both ends, whatever the pattern says.
	for id, want := range map[string]bool{"c-2": true, "c-12": true, "C-2": false, "c-2.json": false, "xc-2": false, "c-2\n": false} {
		if re.MatchString(id) != want {
			t.Errorf("id_pattern c-[0-9]+ on %q: %v, want %v", id, !want, want)
		}
	}
	if re, _ := (&SubjectSpec{IDPattern: "a|b"}).IDRegexp(); re.MatchString("ab") || !re.MatchString("b") {
		t.Errorf("an alternation is anchored as a whole")
	}
}
