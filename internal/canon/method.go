package canon

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"strings"
)

// Method checks a request method (an RFC 9110 token) and upper-cases it:
// methods are case-sensitive on the wire, but a backend that upper-cases
// them would act on "get" as on GET, and over-matching only redacts more.
// An already upper-case method is returned without allocating.
func Method(m string) (string, error) {
	if m == "" {
		return "", errorf(ReasonBadMethod, "the request has no method")
	}
	lower := false
	for i := 0; i < len(m); i++ {
		c := m[i]
		if !tchar[c] {
			return "", errorf(ReasonBadMethod, "the request method is not a token")
		}
		if 'a' <= c && c <= 'z' {
			lower = true
		}
	}
	if lower {
		return strings.ToUpper(m), nil
	}
	return m, nil
}

var tchar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// OverrideHeaders are the request headers through which frameworks let a
// POST stand for another method (Express method-override, Google APIs,
// ASP.NET Core's HttpMethodOverride, Symfony, Laravel).
var OverrideHeaders = [...]string{"x-http-method-override", "x-http-method", "x-method-override"}

// OverrideParam is the query parameter and form field that Rails, Laravel,
// Symfony, Spring's HiddenHttpMethodFilter and Express method-override read
// for the same purpose.
const OverrideParam = "_method"

// Override is what a request says about overriding its method.
type Override struct {
	// Method is the overriding method, upper-case ("" when none is asked).
	Method string
}

// ReadOverride collects the method overrides of a request: the override
// headers (header returns a header by lower-case name, repeated values
// joined with ",") and the _method query parameter. Every override present
// must name the same method; anything else is refused.
func ReadOverride(header func(string) string, rawQuery string) (Override, error) {
	var o Override
	for _, h := range OverrideHeaders {
		if v := header(h); v != "" {
			if err := o.add(v, h); err != nil {
				return Override{}, err
			}
		}
	}
	if rawQuery != "" && strings.Contains(strings.ToLower(rawQuery), OverrideParam) {
		v, found, err := Query(rawQuery, OverrideParam)
		if err != nil {
			return Override{}, err
		}
		if found {
			if err := o.add(v, "the _method query parameter"); err != nil {
				return Override{}, err
			}
		}
	}
	return o, nil
}

// AddForm adds the _method field of a form body (urlencoded or multipart)
// to the overrides. ok is false when the body is a form gdprgate cannot
// read (not given, or too large), so that the caller can refuse.
func (o *Override) AddForm(contentType string, body []byte, haveBody bool) (ok bool, err error) {
	kind := FormKind(contentType)
	if kind == "" {
		return true, nil
	}
	if !haveBody {
		return false, nil
	}
	var v string
	var found bool
	switch kind {
	case "urlencoded":
		v, found, err = Query(string(body), OverrideParam)
	case "multipart":
		v, found, err = multipartField(contentType, body, OverrideParam)
	}
	if err != nil {
		return true, err
	}
	if found {
		return true, o.add(v, "the _method form field")
	}
	return true, nil
}

func (o *Override) add(v, where string) error {
	v = strings.TrimSpace(v)
	if strings.IndexByte(v, ',') >= 0 {
		return errorf(ReasonMethodOverride, "%s is repeated or holds a list", where)
	}
	m, err := Method(v)
	if err != nil {
		return errorf(ReasonMethodOverride, "%s is not a method", where)
	}
	if o.Method != "" && o.Method != m {
		return errorf(ReasonMethodOverride, "the method overrides of the request disagree")
	}
	o.Method = m
	return nil
}

// Effective is the method a backend acts on: the override when there is one
// and the request is a POST (every framework above honours overrides only on
// POST). An override on another method that differs from it is refused:
// gdprgate cannot tell which of the two the backend obeys.
func (o Override) Effective(method string) (string, error) {
	switch {
	case o.Method == "" || o.Method == method:
		return method, nil
	case method == "POST":
		return o.Method, nil
	}
	return "", errorf(ReasonMethodOverride, "a %s request asks to be treated as %s", method, o.Method)
}

// FormKind classifies a request content type: "urlencoded", "multipart"
// or "" (not a form).
func FormKind(contentType string) string {
	if contentType == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		// Unparseable: a lenient backend may still read it as a form.
		mt = strings.ToLower(strings.TrimSpace(strings.SplitN(contentType, ";", 2)[0]))
	}
	switch mt {
	case "application/x-www-form-urlencoded":
		return "urlencoded"
	case "multipart/form-data":
		return "multipart"
	}
	return ""
}

// multipartField reads the form field name of a multipart/form-data body;
// repeated fields must agree, and a body that does not parse is refused.
func multipartField(contentType string, body []byte, name string) (value string, found bool, err error) {
	_, params, perr := mime.ParseMediaType(contentType)
	if perr != nil || params["boundary"] == "" {
		return "", false, errorf(ReasonBadBody, "the multipart form has no readable boundary")
	}
	if !bytes.Contains(body, []byte("--"+params["boundary"])) {
		// mime/multipart reads a body without its boundary as an empty
		// form; a backend might not.
		return "", false, errorf(ReasonBadBody, "the multipart form does not parse")
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return value, found, nil
		}
		if err != nil {
			return "", false, errorf(ReasonBadBody, "the multipart form does not parse")
		}
		match, err := queryNameMatches(p.FormName(), name)
		if err != nil {
			return "", false, err
		}
		if !match {
			continue
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return "", false, errorf(ReasonBadBody, "the multipart form does not parse")
		}
		if found && string(b) != value {
			return "", false, errorf(ReasonMethodOverride, "the form repeats %s with different values", name)
		}
		value, found = string(b), true
	}
}
