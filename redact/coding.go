package redact

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"
)

// Coding returns the canonical name ("gzip", "deflate", "br") of one
// content coding, as a Content-Encoding header may spell it ("x-gzip", any
// case, spaces around), or ErrUnsupportedEncoding (identity, a list, an
// unknown coding).
func Coding(ce string) (string, error) {
	switch c := strings.ToLower(strings.TrimSpace(ce)); c {
	case "gzip", "x-gzip":
		return "gzip", nil
	case "br", "deflate":
		return c, nil
	default:
		return "", fmt.Errorf("%w %q", ErrUnsupportedEncoding, ce)
	}
}

// Decoder reads the plain bytes of one content coding's stream. It is the
// one decoder of both the buffered rewrite (Decode) and the streamed one,
// so that both read the same bytes the same way.
type Decoder struct {
	r     io.Reader
	src   *bufio.Reader
	close func() error
}

// NewDecoder starts decoding coding (see Coding) from r; it reads the
// stream's header, so it blocks until r gives it. HTTP "deflate" is zlib
// (RFC 1950), but some servers send a raw RFC 1951 stream: both are
// accepted, as browsers do — zlib exactly when zlib takes the stream's
// first bytes (its header, and a preset dictionary's id when flagged: the
// empty dictionary's is taken), raw deflate otherwise.
func NewDecoder(coding string, r io.Reader) (*Decoder, error) {
	c, err := Coding(coding)
	if err != nil {
		return nil, err
	}
	// The decompressors read through src, which reads no further than they
	// do: what is left after the compressed data stays there (Trailing).
	d := &Decoder{src: bufio.NewReader(r), close: func() error { return nil }}
	switch c {
	case "gzip":
		zr, err := gzip.NewReader(d.src)
		if err != nil {
			return nil, fmt.Errorf("redact: decode gzip: %w", err)
		}
		d.r, d.close = zr, zr.Close
	case "deflate":
		// zlib reads at most 6 bytes before it decides: ask it about them,
		// then let the same reader read the stream from its start.
		head, _ := d.src.Peek(6)
		if zr, err := zlib.NewReader(bytes.NewReader(head)); err == nil {
			if err := zr.(zlib.Resetter).Reset(d.src, nil); err != nil {
				return nil, fmt.Errorf("redact: decode deflate: %w", err)
			}
			d.r, d.close = zr, zr.Close
		} else {
			fr := flate.NewReader(d.src)
			d.r, d.close = fr, fr.Close
		}
	case "br":
		d.r = brotli.NewReader(d.src)
	}
	return d, nil
}

// Read reads plain bytes.
func (d *Decoder) Read(p []byte) (int, error) { return d.r.Read(p) }

// Trailing reads what follows the compressed data, once Read returned
// io.EOF, and returns how many bytes that was: anything there must be
// refused, since another decoder could read it (gzip reads on to a next
// member; zlib, raw deflate and br stop at their end).
func (d *Decoder) Trailing() (int64, error) { return io.Copy(io.Discard, d.src) }

// Close releases the decompressor.
func (d *Decoder) Close() error { return d.close() }

// Encoder compresses with one content coding; Flush releases what was
// written so far (a streamed answer is flushed after every chunk).
type Encoder interface {
	io.WriteCloser
	Flush() error
}

var gzipWriters = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}

// pooledGzip returns its writer to the pool on Close.
type pooledGzip struct{ *gzip.Writer }

func (p pooledGzip) Close() error {
	err := p.Writer.Close()
	// Not to keep the destination alive in the pool.
	p.Writer.Reset(io.Discard)
	gzipWriters.Put(p.Writer)
	return err
}

// NewEncoder returns the encoder that re-compresses a rewritten body with
// coding (see Coding) into w: gzip at its default level, "deflate" as zlib
// (RFC 1950, whatever the backend sent), br at level 4 (near gzip's speed;
// the body is re-sent at once). Close it to end the stream.
func NewEncoder(coding string, w io.Writer) (Encoder, error) {
	c, err := Coding(coding)
	if err != nil {
		return nil, err
	}
	switch c {
	case "gzip":
		zw := gzipWriters.Get().(*gzip.Writer)
		zw.Reset(w)
		return pooledGzip{zw}, nil
	case "deflate":
		return zlib.NewWriter(w), nil
	default:
		return brotli.NewWriterLevel(w, 4), nil
	}
}
