package redact

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrTooLarge is returned by Decode when the decoded body exceeds the limit.
var ErrTooLarge = errors.New("redact: decoded body exceeds the size limit")

// ErrUnsupportedEncoding is returned for a Content-Encoding this package
// cannot decode or encode; the caller should fail closed.
var ErrUnsupportedEncoding = errors.New("redact: unsupported content encoding")

// codings splits a Content-Encoding header value ("gzip", "deflate, br") into
// its codings, in the order they were applied, dropping "identity".
func codings(ce string) ([]string, error) {
	var out []string
	for c := range strings.SplitSeq(ce, ",") {
		c = strings.ToLower(strings.TrimSpace(c))
		switch c {
		case "", "identity":
		case "gzip", "x-gzip":
			out = append(out, "gzip")
		case "br", "deflate":
			out = append(out, c)
		default:
			return nil, fmt.Errorf("%w %q", ErrUnsupportedEncoding, c)
		}
	}
	return out, nil
}

// Decode undoes contentEncoding (identity, gzip, br, deflate, or a
// comma-separated list of them) and returns the plain body. A decoded size
// over limit gives ErrTooLarge without reading further, so a compression bomb
// costs at most limit bytes; limit <= 0 means no limit. For identity the
// result is body itself.
func Decode(contentEncoding string, body []byte, limit int) ([]byte, error) {
	cs, err := codings(contentEncoding)
	if err != nil {
		return nil, err
	}
	if len(cs) == 0 {
		if limit > 0 && len(body) > limit {
			return nil, fmt.Errorf("%w (%d > %d bytes)", ErrTooLarge, len(body), limit)
		}
		return body, nil
	}
	out := body
	for k := len(cs) - 1; k >= 0; k-- {
		if out, err = decodeOne(cs[k], out, limit); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func decodeOne(c string, body []byte, limit int) ([]byte, error) {
	d, err := NewDecoder(c, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	var r io.Reader = d
	if limit > 0 {
		r = io.LimitReader(r, int64(limit)+1)
	}
	var buf bytes.Buffer
	hint := 4*len(body) + 512
	if limit > 0 {
		hint = min(hint, limit+1)
	}
	buf.Grow(hint)
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, fmt.Errorf("redact: decode %s: %w", c, err)
	}
	if limit > 0 && buf.Len() > limit {
		return nil, fmt.Errorf("%w (%s body over %d bytes)", ErrTooLarge, c, limit)
	}
	// Bytes after the compressed stream are refused, as the streamed
	// decoder refuses them.
	if n, _ := d.Trailing(); n > 0 {
		return nil, fmt.Errorf("redact: decode %s: %d bytes after the compressed stream", c, n)
	}
	return buf.Bytes(), nil
}

// Encode applies contentEncoding to body, for re-compressing a rewritten
// body with the encoding the backend used. For identity the result is body.
func Encode(contentEncoding string, body []byte) ([]byte, error) {
	cs, err := codings(contentEncoding)
	if err != nil {
		return nil, err
	}
	out := body
	for _, c := range cs {
		if out, err = encodeOne(c, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func encodeOne(c string, body []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(body)/3 + 64)
	w, err := NewEncoder(c, &buf)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(body); err != nil {
		return nil, fmt.Errorf("redact: encode %s: %w", c, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("redact: encode %s: %w", c, err)
	}
	return buf.Bytes(), nil
}
