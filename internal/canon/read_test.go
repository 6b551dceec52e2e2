package canon

import (
	"errors"
	"strings"
	"testing"
)

func reasonOf(err error) string {
	var ce *Error
	if errors.As(err, &ce) {
		return ce.Reason
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return ""
}

func TestQueryRefusesParametersBackendsReadDifferently(t *testing.T) {
	cases := []struct {
		name, raw, value string
		found            bool
		reason           string
	}{
		{"one value", "contact_id=s-act", "s-act", true, ""},
		{"absent", "page=2", "", false, ""},
		{"empty query", "", "", false, ""},
		{"decoded value", "contact_id=s%2Dact", "s-act", true, ""},
		{"plus is a space", "contact_id=a+b", "a b", true, ""},
		{"same value twice", "contact_id=s-act&contact_id=s%2dact", "s-act", true, ""},
		{"first and last differ (PHP, Rails read the last)", "contact_id=s-act&contact_id=s-arch", "", false, ReasonAmbiguousQuery},
		{"encoded name", "contact%5Fid=s-arch&contact_id=s-act", "", false, ReasonAmbiguousQuery},
		{"other case (ASP.NET)", "CONTACT_ID=s-arch&contact_id=s-act", "", false, ReasonAmbiguousQuery},
		{"other case alone is read", "Contact_Id=s-arch", "s-arch", true, ""},
		{"PHP turns . into _", "contact.id=s-arch&contact_id=s-act", "", false, ReasonAmbiguousQuery},
		{"PHP turns space into _", "contact+id=s-arch&contact_id=s-act", "", false, ReasonAmbiguousQuery},
		{"PHP drops leading spaces", "+contact_id=s-arch&contact_id=s-act", "", false, ReasonAmbiguousQuery},
		{"array syntax", "contact_id[]=s-arch", "", false, ReasonAmbiguousQuery},
		{"hash syntax", "contact_id[x]=s-arch", "", false, ReasonAmbiguousQuery},
		{"semicolon separator", "contact_id=s-act;contact_id=s-arch", "", false, ReasonAmbiguousQuery},
		{"value ended by a semicolon", "contact_id=s-act;x=1", "", false, ReasonAmbiguousQuery},
		{"semicolon elsewhere", "x=1;y=2&contact_id=s-act", "s-act", true, ""},
		{"malformed value", "contact_id=%zz", "", false, ReasonBadEscape},
		{"longer name is another", "contact_idx=1", "", false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, found, err := Query(tc.raw, "contact_id")
			if got := reasonOf(err); got != tc.reason {
				t.Fatalf("reason %q, want %q", got, tc.reason)
			}
			if v != tc.value || found != tc.found {
				t.Errorf("= %q %v, want %q %v", v, found, tc.value, tc.found)
			}
		})
	}
}

func TestHeaderRefusesRepeatedValues(t *testing.T) {
	if v, err := Header(" c-1 ", "x-contact"); err != nil || v != "c-1" {
		t.Errorf("Header = %q %v", v, err)
	}
	if _, err := Header("c-1,c-4", "x-contact"); reasonOf(err) != ReasonAmbiguousHdr {
		t.Errorf("repeated header: %v", err)
	}
}

func TestMethodOverrideIsJudgedOrRefused(t *testing.T) {
	hdr := func(kv ...string) func(string) string {
		return func(n string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == n {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	cases := []struct {
		name, method string
		header       func(string) string
		query        string
		want, reason string
	}{
		{"no override", "POST", hdr(), "", "POST", ""},
		{"X-HTTP-Method-Override on POST", "POST", hdr("x-http-method-override", "GET"), "", "GET", ""},
		{"X-HTTP-Method on POST", "POST", hdr("x-http-method", "delete"), "", "DELETE", ""},
		{"X-Method-Override on POST", "POST", hdr("x-method-override", "PUT"), "", "PUT", ""},
		{"_method query on POST", "POST", hdr(), "_method=get", "GET", ""},
		{"agreeing overrides", "POST", hdr("x-http-method-override", "GET", "x-http-method", "get"), "_method=GET", "GET", ""},
		{"disagreeing overrides", "POST", hdr("x-http-method-override", "GET", "x-http-method", "PUT"), "", "", ReasonMethodOverride},
		{"header against query", "POST", hdr("x-http-method-override", "GET"), "_method=PUT", "", ReasonMethodOverride},
		{"repeated header", "POST", hdr("x-http-method-override", "GET,PUT"), "", "", ReasonMethodOverride},
		{"repeated query", "POST", hdr(), "_method=GET&_method=PUT", "", ReasonAmbiguousQuery},
		{"not a method", "POST", hdr("x-http-method-override", "G T"), "", "", ReasonMethodOverride},
		{"override on GET", "GET", hdr("x-http-method-override", "DELETE"), "", "", ReasonMethodOverride},
		{"same method on GET", "GET", hdr("x-http-method-override", "get"), "", "GET", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ReadOverride(tc.header, tc.query)
			got := ""
			if err == nil {
				got, err = o.Effective(tc.method)
			}
			if r := reasonOf(err); r != tc.reason {
				t.Fatalf("reason %q, want %q", r, tc.reason)
			}
			if got != tc.want {
				t.Errorf("method %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFormMethodOverride(t *testing.T) {
	mp := "--XX\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nGET\r\n--XX--\r\n"
	cases := []struct {
		name, ct, body string
		have           bool
		want           string
		ok             bool
		reason         string
	}{
		{"urlencoded _method", "application/x-www-form-urlencoded", "_method=get&a=1", true, "GET", true, ""},
		{"urlencoded without", "application/x-www-form-urlencoded; charset=utf-8", "a=1", true, "", true, ""},
		{"multipart _method", "multipart/form-data; boundary=XX", mp, true, "GET", true, ""},
		{"form body not seen", "application/x-www-form-urlencoded", "", false, "", false, ""},
		{"JSON is not a form", "application/json", `{"_method":"GET"}`, false, "", true, ""},
		{"broken multipart", "multipart/form-data; boundary=XX", "garbage", true, "", true, ReasonBadBody},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var o Override
			ok, err := o.AddForm(tc.ct, []byte(tc.body), tc.have)
			if r := reasonOf(err); r != tc.reason {
				t.Fatalf("reason %q, want %q", r, tc.reason)
			}
			if ok != tc.ok || o.Method != tc.want {
				t.Errorf("= %q %v, want %q %v", o.Method, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestMethodIsATokenUpperCased(t *testing.T) {
	for in, want := range map[string]string{"GET": "GET", "get": "GET", "Post": "POST", "PROPFIND": "PROPFIND"} {
		if got, err := Method(in); err != nil || got != want {
			t.Errorf("Method(%q) = %q %v", in, got, err)
		}
	}
	for _, in := range []string{"", "G ET", "GET\r\n", "GÉT"} {
		if _, err := Method(in); reasonOf(err) != ReasonBadMethod {
			t.Errorf("Method(%q): %v", in, err)
		}
	}
}

func TestBodyFieldsRefuseAmbiguousJSON(t *testing.T) {
	paths := [][]string{BodyPath("contact_id"), BodyPath("type")}
	cases := []struct {
		name, body   string
		contact, typ string
		reason       string
	}{
		{"plain", `{"contact_id":"c-1","type":"campaign"}`, "c-1", "campaign", ""},
		{"escaped value", `{"contact_id":"c\u002d1","type":"campaign"}`, "c-1", "campaign", ""},
		{"integer id", `{"contact_id":42,"type":"campaign"}`, "42", "campaign", ""},
		{"upper-case key alone", `{"CONTACT_ID":"c-4","type":"campaign"}`, "c-4", "campaign", ""},
		{"escaped key alone", `{"contact_id":"c-1","typ\u0065":"campaign"}`, "c-1", "campaign", ""},
		{"duplicate key", `{"contact_id":"c-1","type":"campaign","contact_id":"c-4"}`, "", "", ReasonAmbiguousBody},
		{"duplicate type", `{"contact_id":"c-1","type":"adhoc","type":"campaign"}`, "", "", ReasonAmbiguousBody},
		{"keys equal under case folding", `{"contact_id":"c-1","CONTACT_ID":"c-4"}`, "", "", ReasonAmbiguousBody},
		{"keys equal after unescaping", `{"type":"adhoc","typ\u0065":"campaign"}`, "", "", ReasonAmbiguousBody},
		{"duplicates in a nested object", `{"contact_id":"c-1","x":{"a":1,"A":2}}`, "", "", ReasonAmbiguousBody},
		{"NUL in a key", `{"contact_id\u0000":"c-4","contact_id":"c-1"}`, "", "", ReasonAmbiguousBody},
		{"trailing comma", `{"contact_id":"c-1",}`, "", "", ReasonBadBody},
		{"trailing data", `{"contact_id":"c-1"}{"contact_id":"c-4"}`, "", "", ReasonBadBody},
		{"comment", `{"contact_id":"c-1"/*x*/}`, "", "", ReasonBadBody},
		{"byte order mark", "\ufeff{\"contact_id\":\"c-1\"}", "", "", ReasonBadBody},
		{"lone surrogate", `{"contact_id":"\ud800"}`, "", "", ReasonBadBody},
		{"invalid UTF-8", "{\"contact_id\":\"\xff\"}", "", "", ReasonBadBody},
		{"single quotes", `{'contact_id':'c-1'}`, "", "", ReasonBadBody},
		{"deep", strings.Repeat("[", 100) + strings.Repeat("]", 100), "", "", ReasonBadBody},
		{"not found", `{"id":"c-1"}`, "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := BodyFields([]byte(tc.body), paths)
			if r := reasonOf(err); r != tc.reason {
				t.Fatalf("reason %q, want %q", r, tc.reason)
			}
			if err != nil {
				return
			}
			if f[0].Value != tc.contact || f[1].Value != tc.typ {
				t.Errorf("contact %q type %q, want %q %q", f[0].Value, f[1].Value, tc.contact, tc.typ)
			}
		})
	}
}

func TestBodyFieldsNestedAndIndexedPaths(t *testing.T) {
	body := `{"call":{"Contact.ID":"c-1","to":["x","c-2"]},"n":true}`
	f, err := BodyFields([]byte(body), [][]string{BodyPath(`call.contact\.id`), BodyPath("call.to.1"), BodyPath("n"), BodyPath("call")})
	if err != nil {
		t.Fatal(err)
	}
	want := []Field{{true, KindString, "c-1"}, {true, KindString, "c-2"}, {true, KindOther, "true"}, {true, KindOther, ""}}
	for i := range want {
		if f[i] != want[i] {
			t.Errorf("path %d: %+v, want %+v", i, f[i], want[i])
		}
	}
}
