package redact

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/adler32"
	"io"
	"testing"
	"testing/iotest"
)

// HTTP "deflate" is zlib exactly when zlib takes the stream's first bytes
// (a preset dictionary only with the empty dictionary's id), raw deflate
// otherwise; Decode and a NewDecoder fed a byte at a time (as a streamed
// answer arrives) agree on every case.
func TestDeflateIsZlibExactlyWhenZlibTakesTheHeader(t *testing.T) {
	body := listBody(3)
	raw := rawDeflate(body)
	zlibbed, _ := Encode("deflate", body)
	withDict := func(id uint32) []byte {
		out := binary.BigEndian.AppendUint32([]byte{0x78, 0x20}, id)
		out = append(out, raw...)
		return binary.BigEndian.AppendUint32(out, adler32.Checksum(body))
	}
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"zlib", zlibbed, true},
		{"raw deflate", raw, true},
		{"zlib with the empty preset dictionary", withDict(1), true},
		{"zlib with another preset dictionary (raw deflate, which it is not)", withDict(2), false},
		{"zlib cut inside its dictionary id", withDict(1)[:4], false},
		{"one byte", []byte{0x78}, false},
		{"zlib then more", append(zlibbed[:len(zlibbed):len(zlibbed)], 'x'), false},
	} {
		got, err := Decode("deflate", tc.in, 0)
		if tc.ok != (err == nil) || tc.ok && !bytes.Equal(got, body) {
			t.Errorf("%s: Decode = %q, %v; want ok %v", tc.name, got, err, tc.ok)
		}
		streamed, err := decodeStreamed("deflate", tc.in)
		if tc.ok != (err == nil) || tc.ok && !bytes.Equal(streamed, body) {
			t.Errorf("%s: NewDecoder a byte at a time = %q, %v; want ok %v", tc.name, streamed, err, tc.ok)
		}
	}
}

func decodeStreamed(ce string, in []byte) ([]byte, error) {
	d, err := NewDecoder(ce, iotest.OneByteReader(bytes.NewReader(in)))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	out, err := io.ReadAll(d)
	if err != nil {
		return nil, err
	}
	if n, err := d.Trailing(); err != nil || n > 0 {
		return nil, errors.New("bytes after the compressed data")
	}
	return out, nil
}

func TestCodingNamesOneCoding(t *testing.T) {
	for in, want := range map[string]string{"gzip": "gzip", " X-GZIP ": "gzip", "Deflate": "deflate", "br": "br"} {
		if got, err := Coding(in); err != nil || got != want {
			t.Errorf("Coding(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "identity", "gzip, br", "compress", "zstd"} {
		if _, err := Coding(in); !errors.Is(err, ErrUnsupportedEncoding) {
			t.Errorf("Coding(%q) err = %v, want ErrUnsupportedEncoding", in, err)
		}
	}
}

// An encoder's output is what Decode reads back, for every coding, after a
// Flush mid-stream as the streamed rewrite does after every chunk.
func TestEncoderRoundTripsWithFlushes(t *testing.T) {
	body := listBody(5)
	for _, ce := range []string{"gzip", "deflate", "br"} {
		for range 2 { // the second gzip writer comes from the pool
			var buf bytes.Buffer
			w, err := NewEncoder(ce, &buf)
			if err != nil {
				t.Fatal(err)
			}
			half := len(body) / 2
			if _, err := w.Write(body[:half]); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			w.Write(body[half:])
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if got, err := Decode(ce, buf.Bytes(), 0); err != nil || !bytes.Equal(got, body) {
				t.Fatalf("%s: %v", ce, err)
			}
		}
	}
}
