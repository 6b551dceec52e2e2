package authz

import (
	"math"
	"strings"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/structpb"
)

// The ext_proc fast reading. Envoy sends three or more ProcessingRequests
// per exchange, each with the same metadata_context (ext_authz's plan) and
// the headers as a list of HeaderValue messages; protobuf-go built all of
// it through reflection, a tenth of the server's CPU for a 10 KB exchange.
// The codec reads it itself with protobuf's rules: the headers straight
// into the map the processor uses (headerMap's reading), the body aliased,
// the metadata (a Struct per namespace) once per stream while Envoy keeps
// sending the same bytes. It takes a message only when it is sure that
// protobuf-go accepts it and reads the same: anything it does not know
// (attributes, trailers, flow control, unknown fields, a field sent twice
// where protobuf would merge, a wire type other than the declared one,
// invalid UTF-8, malformed framing, nesting deeper than maxValidDepth)
// makes it start again with proto.Unmarshal, errors included.

// ProcessingRequest fields the fast reading knows besides the oneof.
const (
	fieldReqRequestHeaders  = 2
	fieldReqResponseHeaders = 3
	fieldReqMetadata        = 8
	fieldReqObservability   = 10
	fieldReqProtocolConfig  = 11
	fieldHeadersHeaderMap   = 1 // HttpHeaders.headers (HeaderMap)
	fieldHeadersEnd         = 3 // HttpHeaders.end_of_stream
	fieldHeaderMapHeaders   = 1 // HeaderMap.headers (HeaderValue)
	fieldHeaderValueKey     = 1
	fieldHeaderValueValue   = 2
	fieldHeaderValueRaw     = 3
	fieldHTTPBodyCompressed = 4 // HttpBody.grpc_message_compressed
	fieldHTTPBodyDrain      = 5 // HttpBody.drain_complete
	fieldProtoReqBodyMode   = 1 // ProtocolConfiguration.request_body_mode
	fieldProtoRespBodyMode  = 2
	fieldProtoSendBody      = 3
)

// field is one field read by next: x holds a varint or fixed64 value, v
// a length-delimited one.
type field struct {
	num protowire.Number
	typ protowire.Type
	x   uint64
	v   []byte
}

// next reads the first field of b and returns the rest; ok is false for
// malformed framing and for wire types the fast reading never takes
// (groups, fixed32).
func next(b []byte) (f field, rest []byte, ok bool) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num > protowire.MaxValidNumber {
		return f, nil, false
	}
	b = b[n:]
	f.num, f.typ = num, typ
	var m int
	switch typ {
	case protowire.VarintType:
		f.x, m = protowire.ConsumeVarint(b)
	case protowire.Fixed64Type:
		f.x, m = protowire.ConsumeFixed64(b)
	case protowire.BytesType:
		f.v, m = protowire.ConsumeBytes(b)
	default:
		return f, nil, false
	}
	if m < 0 {
		return f, nil, false
	}
	return f, b[m:], true
}

// fastProcessingRequest reads b into in as proto.Unmarshal would, except
// that a headers message's HeaderMap goes into in.hdrs (as headerMap reads
// it) instead of req, and a response body aliases b. ok is false when it
// is not sure: the caller then decodes b another way, from scratch.
func fastProcessingRequest(b []byte, in *inbound) (aliased, ok bool) {
	req := &in.req
	var oneofSeen, mdSeen, pcSeen bool
	for len(b) > 0 {
		f, rest, ok := next(b)
		if !ok {
			return false, false
		}
		b = rest
		if f.typ == protowire.VarintType && f.num == fieldReqObservability {
			req.ObservabilityMode = protowire.DecodeBool(f.x)
			continue
		}
		if f.typ != protowire.BytesType {
			return false, false
		}
		switch f.num {
		case fieldReqRequestHeaders, fieldReqResponseHeaders:
			if oneofSeen {
				return false, false
			}
			oneofSeen = true
			// The inbound's own messages: the processor keeps none of a
			// headers message's past it (only the map of its headers).
			h := &in.hh
			*h = extprocv3.HttpHeaders{}
			hdrs, ok := fastHTTPHeaders(f.v, h)
			if !ok {
				return false, false
			}
			in.hdrs = hdrs
			if f.num == fieldReqRequestHeaders {
				in.reqHeaders.RequestHeaders = h
				req.Request = &in.reqHeaders
			} else {
				in.respHeaders.ResponseHeaders = h
				req.Request = &in.respHeaders
			}
		case fieldReqRequestBody, fieldReqResponseBody:
			if oneofSeen {
				return false, false
			}
			oneofSeen = true
			hb, ok := fastHTTPBody(f.v)
			if !ok {
				return false, false
			}
			if f.num == fieldReqRequestBody {
				// A communication route's plan keeps values read from
				// the request body: it must outlive the buffer.
				hb.Body = append([]byte(nil), hb.Body...)
				req.Request = &extprocv3.ProcessingRequest_RequestBody{RequestBody: hb}
			} else {
				aliased = len(hb.Body) > 0
				req.Request = &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: hb}
			}
		case fieldReqMetadata:
			if mdSeen {
				return false, false
			}
			mdSeen = true
			md, ok := in.metadata(f.v)
			if !ok {
				return false, false
			}
			req.MetadataContext = md
		case fieldReqProtocolConfig:
			if pcSeen {
				return false, false
			}
			pcSeen = true
			pc, ok := fastProtocolConfig(f.v, &in.pc)
			if !ok {
				return false, false
			}
			req.ProtocolConfig = pc
		default:
			return false, false
		}
	}
	in.fast = true
	return aliased, true
}

// metadata is the Metadata message of b: the previous one of this stream
// when b is the same bytes (Envoy forwards the same metadata with every
// message; the processor only reads it), read otherwise.
func (in *inbound) metadata(b []byte) (*corev3.Metadata, bool) {
	if in.md != nil && in.mdRaw == string(b) {
		return in.md, true
	}
	r := mdReader{raw: string(b), base: b}
	md, ok := r.metadata(b)
	if !ok {
		return nil, false
	}
	in.md, in.mdRaw = md, r.raw
	return md, true
}

// mdReader reads a Metadata message from base. Its strings (keys and
// values) are cut from raw, one copy of base, instead of being copied one
// by one: a forwarded plan is a dozen strings.
type mdReader struct {
	raw  string
	base []byte
}

// str is v, a part of base, as a string. Every slice the reading takes
// from base ends where base does, so cap tells where v starts.
func (r *mdReader) str(v []byte) string {
	off := cap(r.base) - cap(v)
	if off < 0 || off+len(v) > len(r.raw) {
		return string(v)
	}
	return r.raw[off : off+len(v)]
}

// metadata reads a Metadata message's filter_metadata (a namespace's
// Struct per entry; typed_filter_metadata is not read).
func (r *mdReader) metadata(b []byte) (*corev3.Metadata, bool) {
	md := &corev3.Metadata{}
	for len(b) > 0 {
		f, rest, ok := next(b)
		if !ok || f.num != 1 || f.typ != protowire.BytesType {
			return nil, false
		}
		b = rest
		key, s, ok := fastStructEntry(r, f.v, 0, (*mdReader).structure)
		if !ok {
			return nil, false
		}
		if md.FilterMetadata == nil {
			md.FilterMetadata = make(map[string]*structpb.Struct, 1)
		}
		md.FilterMetadata[key] = s
	}
	return md, true
}

// fastStructEntry reads a map entry of a string key (1) and a message
// value (2) read by value, as protobuf-go does: both default to empty (the
// value to an empty message), a later key replaces an earlier one. A value
// sent twice (merged by protobuf) or any other field is left to proto.
func fastStructEntry[M any](r *mdReader, b []byte, depth int, value func(*mdReader, []byte, int) (*M, bool)) (string, *M, bool) {
	var key []byte
	var val *M
	for len(b) > 0 {
		f, rest, ok := next(b)
		if !ok || f.typ != protowire.BytesType {
			return "", nil, false
		}
		b = rest
		switch {
		case f.num == 1:
			if !utf8.Valid(f.v) {
				return "", nil, false
			}
			key = f.v
		case f.num == 2 && val == nil:
			if val, ok = value(r, f.v, depth); !ok {
				return "", nil, false
			}
		default:
			return "", nil, false
		}
	}
	if val == nil {
		var ok bool
		if val, ok = value(r, nil, depth); !ok {
			return "", nil, false
		}
	}
	return r.str(key), val, true
}

// structure reads a google.protobuf.Struct.
func (r *mdReader) structure(b []byte, depth int) (*structpb.Struct, bool) {
	if depth > maxValidDepth {
		return nil, false
	}
	s := &structpb.Struct{}
	for len(b) > 0 {
		f, rest, ok := next(b)
		if !ok || f.num != 1 || f.typ != protowire.BytesType {
			return nil, false
		}
		b = rest
		key, v, ok := fastStructEntry(r, f.v, depth+1, (*mdReader).value)
		if !ok {
			return nil, false
		}
		if s.Fields == nil {
			s.Fields = make(map[string]*structpb.Value, 4)
		}
		s.Fields[key] = v
	}
	return s, true
}

// value reads a google.protobuf.Value of one kind field (two, which
// protobuf replaces or merges, are left to proto). A Value and its kind
// are allocated together.
func (r *mdReader) value(b []byte, depth int) (*structpb.Value, bool) {
	if depth > maxValidDepth {
		return nil, false
	}
	if len(b) == 0 {
		return &structpb.Value{}, true
	}
	f, rest, ok := next(b)
	if !ok || len(rest) > 0 {
		return nil, false
	}
	switch {
	case f.num == 1 && f.typ == protowire.VarintType:
		x := &struct {
			v structpb.Value
			k structpb.Value_NullValue
		}{}
		x.k.NullValue = structpb.NullValue(int32(f.x))
		x.v.Kind = &x.k
		return &x.v, true
	case f.num == 2 && f.typ == protowire.Fixed64Type:
		x := &struct {
			v structpb.Value
			k structpb.Value_NumberValue
		}{}
		x.k.NumberValue = math.Float64frombits(f.x)
		x.v.Kind = &x.k
		return &x.v, true
	case f.num == 3 && f.typ == protowire.BytesType:
		if !utf8.Valid(f.v) {
			return nil, false
		}
		x := &struct {
			v structpb.Value
			k structpb.Value_StringValue
		}{}
		x.k.StringValue = r.str(f.v)
		x.v.Kind = &x.k
		return &x.v, true
	case f.num == 4 && f.typ == protowire.VarintType:
		x := &struct {
			v structpb.Value
			k structpb.Value_BoolValue
		}{}
		x.k.BoolValue = protowire.DecodeBool(f.x)
		x.v.Kind = &x.k
		return &x.v, true
	case f.num == 5 && f.typ == protowire.BytesType:
		s, ok := r.structure(f.v, depth+1)
		if !ok {
			return nil, false
		}
		return &structpb.Value{Kind: &structpb.Value_StructValue{StructValue: s}}, true
	case f.num == 6 && f.typ == protowire.BytesType:
		l := &structpb.ListValue{}
		for p := f.v; len(p) > 0; {
			e, rest, ok := next(p)
			if !ok || e.num != 1 || e.typ != protowire.BytesType {
				return nil, false
			}
			p = rest
			ev, ok := r.value(e.v, depth+1)
			if !ok {
				return nil, false
			}
			l.Values = append(l.Values, ev)
		}
		return &structpb.Value{Kind: &structpb.Value_ListValue{ListValue: l}}, true
	}
	return nil, false
}

// fastHTTPHeaders reads an HttpHeaders message into h, its headers into
// the returned map as headerMap would read them from h.Headers (which stays
// nil).
func fastHTTPHeaders(b []byte, h *extprocv3.HttpHeaders) (map[string]string, bool) {
	var hdrs map[string]string
	for len(b) > 0 {
		f, rest, ok := next(b)
		if !ok {
			return nil, false
		}
		b = rest
		switch {
		case f.num == fieldHeadersEnd && f.typ == protowire.VarintType:
			h.EndOfStream = protowire.DecodeBool(f.x)
		case f.num == fieldHeadersHeaderMap && f.typ == protowire.BytesType && hdrs == nil:
			if hdrs, ok = fastHeaderMap(f.v); !ok {
				return nil, false
			}
		default:
			// attributes, unknown fields, a second HeaderMap (merged by
			// protobuf).
			return nil, false
		}
	}
	if hdrs == nil {
		hdrs = map[string]string{}
	}
	return hdrs, true
}

// fastHeaderMap reads a HeaderMap's HeaderValues in order into a map as
// headerMap does: names lower-cased, raw_value preferred to value when not
// empty, repeated names joined with "," except pseudo-headers (the last
// wins).
func fastHeaderMap(b []byte) (map[string]string, bool) {
	// Sized to the entries (a response's few headers fit the smallest
	// map; a request's dozen or two get no growth).
	n := 0
	for p := b; len(p) > 0; n++ {
		_, _, k := protowire.ConsumeTag(p)
		if k < 0 {
			break
		}
		m := protowire.ConsumeFieldValue(0, protowire.BytesType, p[k:])
		if m < 0 {
			break
		}
		p = p[k+m:]
	}
	out := make(map[string]string, n)
	for len(b) > 0 {
		f, rest, ok := next(b)
		if !ok || f.num != fieldHeaderMapHeaders || f.typ != protowire.BytesType {
			return nil, false
		}
		b = rest
		var key, val, raw []byte
		for e := f.v; len(e) > 0; {
			hf, rest, ok := next(e)
			if !ok || hf.typ != protowire.BytesType {
				return nil, false
			}
			e = rest
			switch hf.num {
			case fieldHeaderValueKey:
				key = hf.v
			case fieldHeaderValueValue:
				val = hf.v
			case fieldHeaderValueRaw:
				raw = hf.v
			default:
				return nil, false
			}
		}
		// key and value are strings: protobuf-go refuses invalid UTF-8.
		if !utf8.Valid(key) || !utf8.Valid(val) {
			return nil, false
		}
		if len(raw) > 0 {
			val = raw
		}
		k := strings.ToLower(intern(key))
		if prev, ok := out[k]; ok && !strings.HasPrefix(k, ":") {
			out[k] = prev + "," + string(val)
			continue
		}
		out[k] = internValue(val)
	}
	return out, true
}

// fastHTTPBody reads an HttpBody whose body aliases b.
func fastHTTPBody(b []byte) (*extprocv3.HttpBody, bool) {
	hb := &extprocv3.HttpBody{}
	for len(b) > 0 {
		f, rest, ok := next(b)
		if !ok {
			return nil, false
		}
		b = rest
		if f.num == fieldHTTPBodyBody && f.typ == protowire.BytesType {
			hb.Body = f.v
			continue
		}
		if f.typ != protowire.VarintType {
			return nil, false
		}
		switch f.num {
		case fieldHTTPBodyEnd:
			hb.EndOfStream = protowire.DecodeBool(f.x)
		case fieldHTTPBodyEndNoMsg:
			hb.EndOfStreamWithoutMessage = protowire.DecodeBool(f.x)
		case fieldHTTPBodyCompressed:
			hb.GrpcMessageCompressed = protowire.DecodeBool(f.x)
		case fieldHTTPBodyDrain:
			hb.DrainComplete = protowire.DecodeBool(f.x)
		default:
			return nil, false
		}
	}
	return hb, true
}

// fastProtocolConfig reads a ProtocolConfiguration into pc (enums are open: any
// int32 is kept, as protobuf-go does).
func fastProtocolConfig(b []byte, pc *extprocv3.ProtocolConfiguration) (*extprocv3.ProtocolConfiguration, bool) {
	*pc = extprocv3.ProtocolConfiguration{}
	for len(b) > 0 {
		f, rest, ok := next(b)
		if !ok || f.typ != protowire.VarintType {
			return nil, false
		}
		b = rest
		switch f.num {
		case fieldProtoReqBodyMode:
			pc.RequestBodyMode = filterv3.ProcessingMode_BodySendMode(int32(f.x))
		case fieldProtoRespBodyMode:
			pc.ResponseBodyMode = filterv3.ProcessingMode_BodySendMode(int32(f.x))
		case fieldProtoSendBody:
			pc.SendBodyWithoutWaitingForHeaderResponse = protowire.DecodeBool(f.x)
		default:
			return nil, false
		}
	}
	return pc, true
}

// decodeInbound reads b into in: the fast reading when it is sure of b,
// decodeProcessingRequest (proto.Unmarshal's result and errors, a response
// body aliased) otherwise.
func decodeInbound(b []byte, in *inbound) (aliased bool, err error) {
	if aliased, ok := fastProcessingRequest(b, in); ok {
		return aliased, nil
	}
	in.reset()
	return decodeProcessingRequest(b, &in.req)
}
