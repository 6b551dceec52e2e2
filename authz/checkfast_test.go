package authz

import (
	"fmt"
	"maps"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// fastCorpus is valid and odd CheckRequests: merged occurrences of the
// messages on the path to the http request and of its fields, fields out
// of order, unknown fields, declared fields of another wire type, a packed
// encoding where none is declared, groups, invalid UTF-8, truncations.
func fastCorpus(t testing.TB) map[string][]byte {
	valid := func(r *authv3.CheckRequest) []byte { return marshalCheck(t, r) }
	base := valid(sampleCheckRequest(sampleHeaders()))
	// nest wraps HttpRequest fields into a CheckRequest (attributes 1,
	// request 4, http 2).
	nest := func(fields ...[]byte) []byte {
		var http []byte
		for _, f := range fields {
			http = append(http, f...)
		}
		req := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), http)
		attrs := protowire.AppendBytes(protowire.AppendTag(nil, 4, protowire.BytesType), req)
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), attrs)
	}
	str := func(num protowire.Number, s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
	}
	varint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
	entry := func(parts ...[]byte) []byte {
		var e []byte
		for _, p := range parts {
			e = append(e, p...)
		}
		return protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType), e)
	}
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	cases := map[string][]byte{
		"empty":                          {},
		"no headers":                     valid(sampleCheckRequest(nil)),
		"headers":                        base,
		"merged occurrences":             cat(base, valid(sampleCheckRequest(map[string]string{"x-gdpr-roles": "admin", "other": "1"}))),
		"path twice, the last wins":      cat(base, nest(str(4, "/other"))),
		"method then path out of order":  nest(str(4, "/p"), str(12, "raw"), str(2, "POST"), str(11, "b"), str(5, "h"), str(10, "HTTP/2"), str(6, "https")),
		"method as varint (unknown)":     cat(base, nest(varint(2, 7))),
		"path as fixed64 (unknown)":      cat(base, nest(protowire.AppendFixed64(protowire.AppendTag(nil, 4, protowire.Fixed64Type), 1))),
		"size as bytes (unknown)":        cat(base, nest(str(9, "\x01\x02"))),
		"unknown http field":             cat(base, nest(str(99, "x"), varint(98, 1))),
		"unknown top-level field":        cat(str(77, "x"), base),
		"attributes as varint (unknown)": cat(varint(1, 1), base),
		"request as fixed32 (unknown)":   cat(base, protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), protowire.AppendFixed32(protowire.AppendTag(nil, 4, protowire.Fixed32Type), 3))),
		"group (not sure)":               cat(base, protowire.AppendTag(nil, 50, protowire.StartGroupType), protowire.AppendTag(nil, 50, protowire.EndGroupType)),
		"stray end group":                cat(base, protowire.AppendTag(nil, 50, protowire.EndGroupType)),
		"field number 0":                 cat(base, []byte{0x02, 0x00}),
		"entry without key":              cat(base, nest(entry(str(2, "v")))),
		"entry twice the key":            cat(base, nest(entry(str(1, "a"), str(1, "b"), str(2, "v")))),
		"entry value before key":         cat(base, nest(entry(str(2, "v"), str(1, "k")))),
		"entry unknown field":            cat(base, nest(entry(str(1, "a"), str(3, "x")))),
		"entry varint key":               cat(base, nest(entry(varint(1, 5)))),
		"header replaced":                cat(base, nest(entry(str(1, "x-gdpr-roles"), str(2, "admin")))),
		"invalid utf-8 header value":     cat(base, nest(entry(str(1, "a"), str(2, "\xff")))),
		"invalid utf-8 header key":       cat(base, nest(entry(str(1, "\xfe")))),
		"invalid utf-8 path":             cat(base, nest(str(4, "/\xff"))),
		"invalid utf-8 body":             cat(base, nest(str(11, "\xc3"))),
		"invalid raw body is bytes":      cat(base, nest(str(12, "\xff\xfe"))),
		"headers as varint":              cat(base, nest(varint(3, 1))),
		"bad length":                     cat(base, []byte{0x0a, 0x7f}),
		"bad varint":                     cat(base, []byte{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}),
	}
	// More headers than the pairs searched linearly, one of them repeated
	// before and after the reading moves to a map.
	var lots [][]byte
	for i := range maxHeaderPairs + 8 {
		lots = append(lots, entry(str(1, fmt.Sprintf("x-h-%d", i)), str(2, fmt.Sprint(i))))
		if i == 3 || i == maxHeaderPairs+4 {
			lots = append(lots, entry(str(1, "x-gdpr-roles"), str(2, fmt.Sprintf("role-%d", i))))
		}
	}
	cases["more headers than pairs searched"] = cat(base, nest(lots...))
	cases["exactly the pairs searched"] = nest(lots[:maxHeaderPairs]...)
	// Deep nesting through metadata: Struct values holding lists of
	// structs, beyond validMessage's depth (then proto decides).
	deep := []byte{}
	for i := 0; i < maxValidDepth+4; i++ {
		v := protowire.AppendBytes(protowire.AppendTag(nil, 5, protowire.BytesType), deep) // Value.struct_value
		f := cat(str(1, "k"), protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), v))
		deep = protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), f) // Struct.fields entry
	}
	md := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), cat(str(1, "ns"), protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), deep)))
	cases["deep metadata"] = cat(base, protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), protowire.AppendBytes(protowire.AppendTag(nil, 11, protowire.BytesType), md)))
	for i := 0; i < len(base); i += 5 {
		cases[fmt.Sprintf("truncated at %d", i)] = base[:i]
	}
	return cases
}

// The fast reading of a CheckRequest is proto.Unmarshal's: it accepts
// exactly what proto.Unmarshal accepts, reads the same values for the
// fields Check uses, and decodes the rest to the same message.
func TestCheckInAsProto(t *testing.T) {
	fast := 0
	for name, b := range fastCorpus(t) {
		t.Run(name, func(t *testing.T) {
			if checkInAsProto(t, b) {
				fast++
			}
		})
	}
	if fast < 10 {
		t.Errorf("only %d cases took the fast path", fast)
	}
}

func FuzzCheckInAsProto(f *testing.F) {
	for _, b := range fastCorpus(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkInAsProto(t, b) })
}

// checkInAsProto compares decodeCheckIn with proto.Unmarshal on b and
// reports whether the fast path took it.
func checkInAsProto(t *testing.T, b []byte) bool {
	t.Helper()
	var want authv3.CheckRequest
	wantErr := proto.Unmarshal(b, &want)
	var in checkIn
	gotErr := decodeCheckIn(b, &in)
	if (wantErr == nil) != (gotErr == nil) {
		t.Fatalf("error %v (fast %v), proto.Unmarshal's %v", gotErr, in.fast, wantErr)
	}
	if wantErr != nil {
		return false
	}
	wasFast := in.fast
	if wasFast {
		got, exp := in.http, messageHTTP(&want)
		if got.method != exp.method || got.path != exp.path || got.host != exp.host || got.scheme != exp.scheme ||
			got.protocol != exp.protocol || string(got.body) != string(exp.body) || string(got.rawBody) != string(exp.rawBody) ||
			!maps.Equal(got.headers.all(), exp.headers.all()) || !sameHeaderReads(&got.headers, &exp.headers) {
			t.Fatalf("fast reading\n%+v\nproto.Unmarshal\n%+v", got, exp)
		}
	}
	full, err := in.full()
	if err != nil {
		t.Fatalf("whole decode after the fast reading: %v", err)
	}
	if !proto.Equal(full, &want) {
		t.Fatalf("decoded\n%v\nproto.Unmarshal\n%v", full, &want)
	}
	return wasFast
}

// sameHeaderReads reports whether every name a reads (and a few it does
// not hold) reads the same in b.
func sameHeaderReads(a, b *reqHeaders) bool {
	for k := range a.names {
		if a.get(k) != b.get(k) {
			return false
		}
	}
	for _, k := range []string{"", ":path", "x-absent"} {
		if a.get(k) != b.get(k) {
			return false
		}
	}
	return true
}
