package gate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/gate"
	"github.com/gdprgate/gdprgate/redact"
)

func streamList(n int) string {
	var items []string
	for i := range n {
		// Ids after the fields half of the time: held until read.
		if i%2 == 0 {
			items = append(items, fmt.Sprintf(`{"id":"c-%d","name":"n%d","email":"e%d@x","phone":"+44%d","health_notes":"h%d"}`, i%6+1, i, i, i, i))
		} else {
			items = append(items, fmt.Sprintf(`{"name":"n%d","email":"e%d@x","phone":"+44%d","health_notes":"h%d","id":"c-%d"}`, i, i, i, i, i%6+1))
		}
	}
	items = append(items, `{"id":"x-unknown","email":"u@x"}`)
	return `{"data":[` + strings.Join(items, ",") + `],"page":1,"total":13}`
}

type streamRig struct {
	g *gate.Gate
}

func (r streamRig) check(t *testing.T, path string) *gate.Exchange {
	t.Helper()
	ex := r.g.Check(context.Background(), &gate.Request{Method: "GET", Path: path, Header: func(n string) string {
		if n == "x-gdpr-roles" {
			return "agent"
		}
		return ""
	}})
	if !ex.Verdict.Allow {
		t.Fatalf("%s denied: %d %s", path, ex.Verdict.Status, ex.Verdict.Body)
	}
	return ex
}

func header(ct, ce string) func(string) string {
	return func(n string) string {
		switch n {
		case "content-type":
			return ct
		case "content-encoding":
			return ce
		}
		return ""
	}
}

// stream sends body through RewriteStream in chunks of size n.
func (r streamRig) stream(t *testing.T, path string, ce string, body []byte, n int) ([]byte, gate.Rewritten, error) {
	t.Helper()
	ex := r.check(t, path)
	s, head, ok := r.g.RewriteStream(context.Background(), ex, &gate.Response{Status: 200, Header: header("application/json", ce)})
	if !ok {
		t.Fatalf("%s: RewriteStream not ok", path)
	}
	if head.Replace {
		return head.Body, head, nil
	}
	var out []byte
	var err error
	for i := 0; i < len(body); i += n {
		if out, err = s.Write(out, body[i:min(i+n, len(body))]); err != nil {
			return out, head, err
		}
	}
	out, err = s.Close(out)
	return out, head, err
}

// A streamed answer is byte for byte the buffered one, whatever the chunks
// and the content coding (decoded, rewritten and encoded on the fly).
func TestStreamedAnswerIsTheBufferedOne(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	r := streamRig{g: sc.App.Gate}
	for _, tc := range []struct{ path, body string }{
		{"/api/contacts", streamList(40)},
	} {
		ex := r.check(t, tc.path)
		want := r.g.Rewrite(context.Background(), ex, &gate.Response{Status: 200, Body: []byte(tc.body), Header: header("application/json", "")})
		if want.Replace || !want.Modified {
			t.Fatalf("premise: %s is redacted: %+v", tc.path, want)
		}
		for _, ce := range []string{"", "gzip", "br", "deflate"} {
			in := []byte(tc.body)
			if ce != "" {
				var err error
				if in, err = redact.Encode(ce, in); err != nil {
					t.Fatal(err)
				}
			}
			for _, n := range []int{1, 7, 1 << 20} {
				got, head, err := r.stream(t, tc.path, ce, in, n)
				if err != nil {
					t.Fatalf("%s %q chunks of %d: %v", tc.path, ce, n, err)
				}
				if !contains(head.RemoveHeaders, "content-length") {
					t.Fatalf("content-length kept: %+v", head)
				}
				if ce != "" {
					if got, err = redact.Decode(ce, got, 0); err != nil {
						t.Fatalf("%s: output does not decode: %v", ce, err)
					}
				}
				if !bytes.Equal(got, want.Body) {
					t.Fatalf("%s %q chunks of %d:\nstreamed %s\nbuffered %s", tc.path, ce, n, got, want.Body)
				}
			}
		}
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// A body that turns invalid mid-way ends the stream with an error, having
// released only rewritten items; so does an item over the bound.
func TestStreamedAnswerFailsClosedMidWay(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	sc.App.Config.Body.StreamItemMaxBytes = 2048
	r := streamRig{g: sc.App.Gate}
	good := streamList(10)
	cut := strings.LastIndex(good, `],"page"`)
	for _, tc := range []struct {
		name, body, reason string
	}{
		{"invalid after items", good[:cut] + `,{"id":"c-1","health_notes":"SECRET"}}` + good[cut:], "body_not_json"},
		{"truncated item", good[:cut] + `,{"health_notes":"SECRET","id":"c-1"`, "body_not_json"},
		{"item over the bound", good[:cut] + `,{"health_notes":"SECRET` + strings.Repeat("x", 4096) + `","id":"c-1"}` + good[cut:], "item_too_large"},
		{"duplicate subject", good[:cut] + `,{"id":"c-1","health_notes":"SECRET","id":"c-2"}` + good[cut:], "subject_ambiguous"},
		{"a list where a record is expected", `[{"health_notes":"SECRET"}]`, "body_shape"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, ce := range []string{"", "gzip"} {
				in := []byte(tc.body)
				if ce != "" {
					in, _ = redact.Encode(ce, in)
				}
				got, _, err := r.stream(t, "/api/contacts", ce, in, 100)
				var se *gate.StreamError
				if !errors.Is(err, gate.ErrStreamAborted) || !errors.As(err, &se) || se.Reason != tc.reason {
					t.Fatalf("%q: err = %v, want reason %s", ce, err, tc.reason)
				}
				if ce != "" {
					got, _ = decodePrefix(ce, got)
				}
				if bytes.Contains(got, []byte("SECRET")) || bytes.Contains(got, []byte(`"h1"`)) {
					t.Fatalf("%q: released an unredacted item: %s", ce, got)
				}
			}
		})
	}
}

// decodePrefix decodes as much of a truncated compressed stream as it can.
func decodePrefix(ce string, b []byte) ([]byte, error) {
	out, err := redact.Decode(ce, b, 0)
	if err == nil {
		return out, nil
	}
	// Decode fails on a truncated stream: decode byte by byte growing.
	for n := len(b); n > 0; n-- {
		if out, err := redact.Decode(ce, b[:n], 0); err == nil {
			return out, nil
		}
	}
	return nil, err
}

// Routes whose answer must be seen whole are not streamed; a non-JSON
// answer is refused from its headers; a record streams with its fixed mask.
func TestRoutesThatNeedTheWholeBodyAreNotStreamed(t *testing.T) {
	const record = `{"email":"alice@example.com","health_notes":"Allergic","address":{"street":"s","city":"c"}}`
	sc := apptest.New(t, apptest.Options{ConfigYAML: []byte(responseConfig)})
	r := streamRig{g: sc.App.Gate}
	ex := r.check(t, "/api/issues/i-1") // subject from the response body
	if _, _, ok := r.g.RewriteStream(context.Background(), ex, &gate.Response{Status: 200, Header: header("application/json", "")}); ok {
		t.Fatal("a response_body subject route was streamed")
	}
	ex = r.check(t, "/api/contacts/c-1")
	want := r.g.Rewrite(context.Background(), ex, &gate.Response{Status: 200, Body: []byte(record), Header: header("application/json", "")})
	got, _, err := r.stream(t, "/api/contacts/c-1", "", []byte(record), 3)
	if err != nil || string(got) != string(want.Body) || !want.Modified {
		t.Fatalf("a request-side subject streams as it is rewritten: %v\n%s\n%s", err, got, want.Body)
	}
	s, head, ok := r.g.RewriteStream(context.Background(), ex, &gate.Response{Status: 200, Header: header("text/html", "")})
	if !ok || !head.Replace || head.Status != 502 || s != nil {
		t.Fatalf("non-JSON answer: ok %v head %+v", ok, head)
	}
}
