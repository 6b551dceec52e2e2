package redact

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"errors"
	"strings"
	"testing"
)

func TestCodecRoundTrip(t *testing.T) {
	body := listBody(20)
	for _, ce := range []string{"", "identity", "gzip", "x-gzip", "GZip", "br", "deflate", "deflate, br", " gzip , identity "} {
		t.Run("encoding "+ce, func(t *testing.T) {
			enc, err := Encode(ce, body)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := Decode(ce, enc, len(body))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !bytes.Equal(got, body) {
				t.Fatalf("round trip changed the body")
			}
		})
	}
}

func TestDecodeRawDeflate(t *testing.T) {
	// Some servers send raw RFC 1951 data as "deflate"; browsers accept it.
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestSpeed)
	w.Write([]byte(`{"a":1}`))
	w.Close()
	got, err := Decode("deflate", buf.Bytes(), 100)
	if err != nil || string(got) != `{"a":1}` {
		t.Fatalf("Decode = %q, %v", got, err)
	}
}

func TestDecodeLimit(t *testing.T) {
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zw.Write(bytes.Repeat([]byte{' '}, 10<<20)) // 10 MB of spaces, ~10 KB compressed
	zw.Close()
	tests := []struct {
		name  string
		ce    string
		body  []byte
		limit int
		want  error
	}{
		{"gzip bomb over the limit", "gzip", bomb.Bytes(), 1 << 20, ErrTooLarge},
		{"identity over the limit", "", []byte("12345"), 4, ErrTooLarge},
		{"identity at the limit", "identity", []byte("1234"), 4, nil},
		{"no limit", "gzip", bomb.Bytes(), 0, nil},
		{"unknown encoding", "compress", []byte("x"), 10, ErrUnsupportedEncoding},
		{"unknown encoding in a list", "gzip, zstd", []byte("x"), 10, ErrUnsupportedEncoding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.ce, tt.body, tt.limit)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err != nil && got != nil {
				t.Errorf("returned %d bytes with the error", len(got))
			}
		})
	}
}

func TestDecodeCorruptFailsWithoutOriginal(t *testing.T) {
	gz, _ := Encode("gzip", []byte(strings.Repeat(`{"a":1}`, 100)))
	for _, tt := range []struct {
		name, ce string
		body     []byte
	}{
		{"not gzip", "gzip", []byte("plain text")},
		{"truncated gzip", "gzip", gz[:len(gz)/2]},
		{"not brotli", "br", []byte("\xff\xff\xff\xff plain")},
		{"not deflate", "deflate", []byte("\xff\xff\xff")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.ce, tt.body, 1<<20)
			if err == nil || got != nil {
				t.Fatalf("Decode = %q, %v; want nil and an error", got, err)
			}
		})
	}
}

func TestEncodeUnsupported(t *testing.T) {
	if got, err := Encode("zstd", []byte("x")); !errors.Is(err, ErrUnsupportedEncoding) || got != nil {
		t.Fatalf("Encode = %q, %v", got, err)
	}
}

func BenchmarkCodec(b *testing.B) {
	body := listBody(2300)
	for _, ce := range []string{"gzip", "br"} {
		enc, err := Encode(ce, body)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("Decode/"+ce, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(ce, enc, 8<<20); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("Encode/"+ce, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Encode(ce, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Bytes after the end of the compressed data are refused for every coding
// (zlib and raw deflate stop at their end and left them unread): another
// decoder could read them, and the streamed decoder refuses them.
func TestDecodeRefusesBytesAfterTheCompressedData(t *testing.T) {
	body := listBody(3)
	raw := rawDeflate(body)
	for _, ce := range []string{"gzip", "deflate", "br", "raw"} {
		enc := raw
		if ce != "raw" {
			enc, _ = Encode(ce, body)
		}
		if got, err := Decode(strings.Replace(ce, "raw", "deflate", 1), enc, 0); err != nil || !bytes.Equal(got, body) {
			t.Fatalf("%s: premise: %v", ce, err)
		}
		enc = append(enc[:len(enc):len(enc)], `{"x":1}`...)
		if _, err := Decode(strings.Replace(ce, "raw", "deflate", 1), enc, 0); err == nil {
			t.Fatalf("%s: bytes after the compressed data were ignored", ce)
		}
	}
}

// rawDeflate is b as a raw deflate stream (no zlib header).
func rawDeflate(b []byte) []byte {
	var out bytes.Buffer
	fw, _ := flate.NewWriter(&out, 5)
	fw.Write(b)
	fw.Close()
	return out.Bytes()
}
