package gate_test

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"hash/adler32"
	"strings"
	"testing"

	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/gate"
	"github.com/gdprgate/gdprgate/redact"
)

// streamedAsBuffered asserts the streaming rule for one answer, cut in
// chunks of several sizes: the streamed output is the buffered Rewrite's
// (decoded, when compressed), or, when Rewrite refuses the answer, the
// stream aborts having released no secret.
func streamedAsBuffered(t *testing.T, r streamRig, path, ce string, body []byte) {
	t.Helper()
	streamedAsBufferedLeak(t, r, path, ce, body, true)
}

// streamedAsBufferedLeak is streamedAsBuffered whose check that an aborted
// stream released no "SECRET" is made only when leak is set: bytes outside
// mapped values go out as they come, so a secret elsewhere may be released
// before the error, as designed.
func streamedAsBufferedLeak(t *testing.T, r streamRig, path, ce string, body []byte, leak bool) {
	t.Helper()
	ex := r.check(t, path)
	want := r.g.Rewrite(context.Background(), ex, &gate.Response{Status: 200, Body: body, Header: header("application/json", ce)})
	wantBody := body
	if want.Modified {
		wantBody = want.Body
	}
	if !want.Replace && ce != "" && len(wantBody) > 0 {
		var err error
		if wantBody, err = redact.Decode(ce, wantBody, 0); err != nil {
			t.Fatalf("buffered output does not decode: %v", err)
		}
	}
	for _, n := range []int{1, 3, 64, len(body) + 1} {
		ex := r.check(t, path)
		s, head, ok := r.g.RewriteStream(context.Background(), ex, &gate.Response{Status: 200, Header: header("application/json", ce)})
		if !ok {
			return // buffered: Rewrite is the answer
		}
		if head.Replace {
			if !want.Replace || head.Status != want.Status {
				t.Fatalf("chunks of %d: refused from the headers (%d), buffered %+v", n, head.Status, want)
			}
			continue
		}
		var out []byte
		var err error
		for i := 0; i < len(body) && err == nil; i += n {
			out, err = s.Write(out, body[i:min(i+n, len(body))])
		}
		if err == nil {
			out, err = s.Close(out)
		}
		if ce != "" && len(out) > 0 {
			out, _ = decodePrefix(ce, out)
		}
		switch {
		case want.Replace && err == nil:
			t.Fatalf("chunks of %d: streamed %q, buffered refused %d %s", n, out, want.Status, want.Reason)
		case want.Replace:
			if leak && bytes.Contains(out, []byte("SECRET")) {
				t.Fatalf("chunks of %d: aborted (%v) after releasing %q", n, err, out)
			}
		case err != nil:
			t.Fatalf("chunks of %d: aborted (%v), buffered answered %q", n, err, wantBody)
		case !bytes.Equal(out, wantBody):
			t.Fatalf("chunks of %d:\nstreamed %q\nbuffered %q", n, out, wantBody)
		}
	}
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

func rawDeflate(b []byte) []byte {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, 5)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

func encoded(t *testing.T, ce string, b []byte) []byte {
	t.Helper()
	out, err := redact.Encode(ce, b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// storedDeflate is body as raw deflate stored blocks whose first byte is b0
// (a stored block that is not the last; its padding bits are ignored) and
// whose first block is as long as makes the first two bytes pass zlib's
// check bits (with b0 0x78, also with its preset-dictionary flag).
func storedDeflate(b0 byte, body []byte) []byte {
	n := 0
	for (int(b0)<<8|n)%31 != 0 || (b0 == 0x78 && n&0x20 == 0) {
		n++
	}
	out := []byte{b0, byte(n), 0, ^byte(n), 0xff}
	out = append(out, body[:n]...)
	rest := body[n:]
	out = append(out, 1, byte(len(rest)), byte(len(rest)>>8), ^byte(len(rest)), ^byte(len(rest)>>8))
	return append(out, rest...)
}

// zlibEmptyDictionary is body as zlib whose header flags a preset
// dictionary with the empty dictionary's id (Adler-32 1): zlib takes it
// (nothing to preset), so it is zlib, not raw deflate.
func zlibEmptyDictionary(body []byte) []byte {
	out := append([]byte{0x78, 0x20, 0, 0, 0, 1}, rawDeflate(body)...)
	return binary.BigEndian.AppendUint32(out, adler32.Checksum(body))
}

// zlibOtherDictionary flags a preset dictionary gdprgate does not have:
// not zlib to zlib, so raw deflate, which these bytes are not.
func zlibOtherDictionary(body []byte) []byte {
	out := append([]byte{0x78, 0x20, 0, 0, 0, 2}, rawDeflate(body)...)
	return binary.BigEndian.AppendUint32(out, adler32.Checksum(body))
}

const diffList = `{"data":[{"id":"c-1","health_notes":"SECRET1"},{"health_notes":"SECRET3","id":"c-3"}],"page":1}`

// A compressed answer is decoded the same way streamed and buffered: the
// same bytes after the compressed data are refused by both (whatever the
// chunks), and a raw deflate stream whose first bytes look like a zlib
// header zlib would not take is raw deflate to both.
func TestStreamedAndBufferedDecodeAlike(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	r := streamRig{g: sc.App.Gate}
	g := []byte(diffList)
	for _, tc := range []struct {
		name, ce string
		body     []byte
	}{
		{"gzip upper case", "GZIP", gzipped(g)},
		{"gzip members concatenated", "gzip", append(gzipped(g[:20]), gzipped(g[20:])...)},
		{"bytes after gzip", "gzip", append(gzipped(g), 'x')},
		{"zeros after gzip", "gzip", append(gzipped(g), 0, 0, 0)},
		{"gzip cut short", "gzip", gzipped(g)[:30]},
		{"bytes after zlib", "deflate", append(encoded(t, "deflate", g), 'x', 'y')},
		{"raw deflate", "deflate", rawDeflate(g)},
		{"bytes after raw deflate", "deflate", append(rawDeflate(g), 'x')},
		{"raw deflate that looks like zlib with a 64 KiB window", "deflate", storedDeflate(0x88, g)},
		{"raw deflate that looks like zlib with a preset dictionary", "deflate", storedDeflate(0x78, g)},
		{"zlib with the empty preset dictionary", "deflate", zlibEmptyDictionary(g)},
		{"zlib with another preset dictionary", "deflate", zlibOtherDictionary(g)},
		{"br", "br", encoded(t, "br", g)},
		{"bytes after br", "br", append(encoded(t, "br", g), 'x')},
		{"br cut short", "br", encoded(t, "br", g)[:10]},
		{"gzip, identity", "gzip, identity", gzipped(g)},
	} {
		t.Run(tc.name, func(t *testing.T) { streamedAsBuffered(t, r, "/api/contacts", tc.ce, tc.body) })
	}
}

// adversarialBodies are answers of the list route a different parser
// might read otherwise, or that are not the mapped shape.
var adversarialBodies = []string{
	diffList, "\xef\xbb\xbf" + diffList, diffList + ` x`, diffList + diffList, diffList + `}`, ` `,
	`{"data":[{"id":1,"health_notes":"SECRET"}]}`,
	`{"data":[{"id":null,"health_notes":"SECRET"}]}`,
	`{"data":[{"id":{"a":1},"health_notes":"SECRET"}]}`,
	`{"data":[{"id":["c-1"],"health_notes":"SECRET"}]}`,
	`{"data":[{"id":true,"health_notes":"SECRET"}]}`,
	`{"data":[{"id":"c-1","health_notes":"SECRET","id":"c-3"}]}`,
	`{"data":[{"id":null,"health_notes":"SECRET","id":"c-3"}]}`,
	`{"data":[{"id":"c-1","health_notes":"SECRET","health_notes":"SECRET2"}]}`,
	`{"data":[{"health\u005fnotes":"SECRET","id":"c-1"}]}`,
	`{"data":[{"Health_Notes":"SECRET","id":"c-1"}]}`,
	`{"data":[{"id":"c-\u0031","health_notes":"SECRET"}]}`,
	`{"data":[{"id":"c-1","health_notes":"\ud83d\ude00SECRET\u00e9"}]}`,
	"{\"data\":[{\"id\":\"c-1\",\"health_notes\":\"SECRET\xff\"}]}",
	"{\"data\":[{\"id\":\"c-1\",\"health_notes\xff\":\"SECRET\"}]}",
	`{"data":[{"id":"c-1","health_notes":"SECRET"}],"data":[{"id":"c-3","health_notes":"SECRET"}]}`,
	`{"Data":[{"id":"c-1","health_notes":"SECRET"}]}`,
	`{"data":[{"id":"c-1","x":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `,"health_notes":"SECRET"}]}`,
	`{"x":` + strings.Repeat(`{"a":`, 300) + `1` + strings.Repeat("}", 300) + `,"data":[]}`,
	`null`, `"str"`, `12`, `[]`, `{}`,
	`{"data":{"0":{"id":"c-1","health_notes":"SECRET"}}}`,
	`{"data":[[{"id":"c-1","health_notes":"SECRET"}]]}`,
	`{"data":[{"id":"c-1","health_notes":"x"},[{"id":"c-1","health_notes":"SECRET"}]]}`,
	`{"data":{},"x":[]}`,
}

// Bodies a different parser might read otherwise, or that are not the
// mapped shape: streamed as buffered, chunk boundaries anywhere.
func TestStreamedAnswerIsTheBufferedOneForAdversarialBodies(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	r := streamRig{g: sc.App.Gate}
	for _, b := range adversarialBodies {
		streamedAsBuffered(t, r, "/api/contacts", "", []byte(b))
	}
}

// An empty answer (a chunked 200 with no body byte, compressed or not) is
// no body: the buffered rewrite passes it, so the stream closes cleanly
// with nothing released rather than aborting it as invalid JSON.
func TestStreamedEmptyAnswerIsPassedAsBuffered(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	r := streamRig{g: sc.App.Gate}
	for _, ce := range []string{"", "gzip", "deflate", "br"} {
		ex := r.check(t, "/api/contacts")
		if want := r.g.Rewrite(context.Background(), ex, &gate.Response{Status: 200, Header: header("application/json", ce)}); want.Replace {
			t.Fatalf("%q: premise: the buffered rewrite passes an empty body: %+v", ce, want)
		}
		streamedAsBuffered(t, r, "/api/contacts", ce, nil)
		ex = r.check(t, "/api/contacts")
		s, _, _ := r.g.RewriteStream(context.Background(), ex, &gate.Response{Status: 200, Header: header("application/json", ce)})
		if out, err := s.Write(nil, nil); err != nil || len(out) != 0 {
			t.Fatalf("%q: empty chunk: %q %v", ce, out, err)
		}
		if out, err := s.Close(nil); err != nil || len(out) != 0 {
			t.Fatalf("%q: empty answer: %q %v", ce, out, err)
		}
	}
}

// A list the route maps item by item that the backend sends as an object
// keyed by index (PHP's encoding of a list with gaps), or wrapped in
// another list, is refused — buffered 502 body_shape, streamed aborted
// before the item — rather than passed with every field unredacted, which
// a client reads as data["0"].health_notes all the same.
func TestListInAnotherShapeIsRefused(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	r := streamRig{g: sc.App.Gate}
	for _, body := range []string{
		`{"data":{"0":{"id":"c-1","health_notes":"SECRET"},"2":{"id":"c-3","health_notes":"SECRET"}}}`,
		`{"data":[[{"id":"c-1","health_notes":"SECRET"}]]}`,
	} {
		ex := r.check(t, "/api/contacts")
		rw := r.g.Rewrite(context.Background(), ex, &gate.Response{Status: 200, Body: []byte(body), Header: header("application/json", "")})
		if !rw.Replace || rw.Status != 502 || rw.Reason != "body_shape" || bytes.Contains(rw.Body, []byte("SECRET")) {
			t.Fatalf("%s: buffered %d %s %s", body, rw.Status, rw.Reason, rw.Body)
		}
		got, _, err := r.stream(t, "/api/contacts", "", []byte(body), 5)
		var se *gate.StreamError
		if !errors.As(err, &se) || se.Reason != "body_shape" || bytes.Contains(got, []byte("SECRET")) {
			t.Fatalf("%s: streamed %q, %v", body, got, err)
		}
	}
}

// Headers computed from the backend's body — etag, content-md5, digest and
// RFC 9530's content-digest and repr-digest — are dropped from a rewritten
// answer, buffered or streamed: a hash of the unredacted body lets a client
// confirm guesses of what was redacted (a birth year, a sex).
func TestBodyDigestsAreDroppedFromRewrittenAnswers(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	r := streamRig{g: sc.App.Gate}
	ex := r.check(t, "/api/contacts")
	rw := r.g.Rewrite(context.Background(), ex, &gate.Response{Status: 200, Body: []byte(diffList), Header: header("application/json", "")})
	ex = r.check(t, "/api/contacts")
	_, head, ok := r.g.RewriteStream(context.Background(), ex, &gate.Response{Status: 200, Header: header("application/json", "")})
	if !rw.Modified || !ok {
		t.Fatalf("premise: rewritten %v, streamed %v", rw.Modified, ok)
	}
	for _, h := range []string{"etag", "content-md5", "digest", "content-digest", "repr-digest"} {
		if !contains(rw.RemoveHeaders, h) || !contains(head.RemoveHeaders, h) {
			t.Errorf("%s kept: buffered removes %q, streamed %q", h, rw.RemoveHeaders, head.RemoveHeaders)
		}
	}
}
