package authz

import (
	"fmt"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/gdprgate/gdprgate/internal/bufpool"
)

// Codec is gdprgate's gRPC codec (give it to the server with
// grpc.ForceServerCodecV2). The wire format is protobuf, as grpc-go's own
// codec writes it; what differs is where the bytes go:
//
//   - a Check answer is written by hand (checkwire.go), the rest of the
//     messages are marshalled into pooled buffers, with go-control-plane's
//     generated code (MarshalToSizedBufferVTStrict) when the binary is
//     built with -tags vtprotobuf, by protobuf-go otherwise (the default
//     builds: measured, the tag saves about 7% of the server CPU of a 10 KB
//     ext_proc exchange and nothing on a 1 MB one, whose body is sent
//     apart);
//   - an ext_proc answer's body is not copied into the message: the
//     message is written as a prefix buffer followed by the body's own
//     buffer (protobuf lets a field come last whatever its number), and a
//     body the processor rewrote into a pooled buffer goes back to the pool
//     once the transport has written it;
//   - an ext_proc request's body aliases the received bytes instead of
//     being copied out of them; the Process loop releases them after its
//     answer is sent.
type Codec struct{}

var protoCodec = encoding.GetCodecV2(grpcproto.Name)

// Name is protobuf's: the codec replaces grpc-go's for the same content type.
func (Codec) Name() string { return grpcproto.Name }

type vtMessage interface {
	SizeVT() int
	MarshalToSizedBufferVTStrict([]byte) (int, error)
}

// bodyPool holds the buffers bodies are rewritten into.
var bodyPool = bufpool.Pool

// zeroCopyMin is the body size from which a body travels as its own buffer:
// below it, one copy costs less than one more buffer.
const zeroCopyMin = 16 << 10

// Marshal implements encoding.CodecV2.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	var pooled *[]byte
	if o, ok := v.(*outbound); ok {
		v, pooled = o.resp, o.pooled
	}
	if r, ok := v.(*extprocv3.ProcessingResponse); ok {
		if data, ok := marshalProcessing(r, pooled); ok {
			return data, nil
		}
		if data, ok, err := marshalBodyApart(r, pooled); ok || err != nil {
			return data, err
		}
		if pooled != nil {
			// The body is copied into the message: its buffer is free
			// once that is done.
			defer bodyPool.Put(pooled)
		}
	}
	if a, ok := v.(*checkAnswer); ok {
		a.out[0] = &a.b
		return a.out[:], nil
	}
	if r, ok := v.(*authv3.CheckResponse); ok {
		if b, ok := appendCheckResponse(make([]byte, 0, 512), r); ok {
			return mem.BufferSlice{mem.SliceBuffer(b)}, nil
		}
	}
	m, ok := v.(vtMessage)
	if !ok {
		return protoCodec.Marshal(v)
	}
	size := m.SizeVT()
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf := make([]byte, size)
		if _, err := m.MarshalToSizedBufferVTStrict(buf); err != nil {
			return nil, fmt.Errorf("marshal %T: %w", v, err)
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	pool := bufpool.Pool
	buf := pool.Get(size)
	if _, err := m.MarshalToSizedBufferVTStrict((*buf)[:size]); err != nil {
		pool.Put(buf)
		return nil, fmt.Errorf("marshal %T: %w", v, err)
	}
	*buf = (*buf)[:size]
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// Field numbers of the ext_proc messages the codec writes and reads by hand
// (envoy/service/ext_proc/v3/external_processor.proto).
const (
	fieldRespResponseBody = 4 // ProcessingResponse.response_body (BodyResponse)
	fieldBodyRespResponse = 1 // BodyResponse.response (CommonResponse)
	fieldCommonBodyMut    = 3 // CommonResponse.body_mutation (BodyMutation)
	fieldMutBody          = 1 // BodyMutation.body
	fieldMutStreamed      = 3 // BodyMutation.streamed_response (StreamedBodyResponse)
	fieldStreamedBody     = 1 // StreamedBodyResponse.body
	fieldStreamedEnd      = 2 // StreamedBodyResponse.end_of_stream
	fieldReqRequestBody   = 4 // ProcessingRequest.request_body (HttpBody)
	fieldReqResponseBody  = 5 // ProcessingRequest.response_body (HttpBody)
	fieldHTTPBodyBody     = 1 // HttpBody.body
	fieldHTTPBodyEnd      = 2 // HttpBody.end_of_stream
	fieldHTTPBodyEndNoMsg = 3 // HttpBody.end_of_stream_without_message
	firstReqOneofField    = 2 // ProcessingRequest.request oneof: fields 2 to 7
	lastReqOneofField     = 7
)

// marshalBodyApart writes a response whose body mutation is large as a
// prefix and the body's own buffer. ok is false when it does not apply.
func marshalBodyApart(r *extprocv3.ProcessingResponse, pooled *[]byte) (mem.BufferSlice, bool, error) {
	br := r.GetResponseBody()
	cr := br.GetResponse()
	bm := cr.GetBodyMutation()
	var body []byte
	var streamed *extprocv3.StreamedBodyResponse
	switch m := bm.GetMutation().(type) {
	case *extprocv3.BodyMutation_Body:
		body = m.Body
	case *extprocv3.BodyMutation_StreamedResponse:
		streamed = m.StreamedResponse
		body = streamed.GetBody()
		if streamed.GetEndOfStreamWithoutMessage() {
			return nil, false, nil
		}
	default:
		return nil, false, nil
	}
	if len(body) < zeroCopyMin || len(br.ProtoReflect().GetUnknown()) > 0 || len(bm.ProtoReflect().GetUnknown()) > 0 {
		return nil, false, nil
	}
	// The message without its body part, then the nesting written by hand
	// around the body, last in each message.
	r.Response, cr.BodyMutation = nil, nil
	outer, err := marshalMsg(r)
	inner, err2 := marshalMsg(cr)
	r.Response, cr.BodyMutation = &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: br}, bm
	if err == nil {
		err = err2
	}
	if err != nil {
		return nil, true, fmt.Errorf("marshal ext_proc answer: %w", err)
	}
	// BodyMutation: body (1) or streamed_response (3){end_of_stream (2), body (1)}.
	var mutHead []byte
	bodyField := protowire.AppendTag(nil, fieldMutBody, protowire.BytesType)
	if streamed != nil {
		bodyField = protowire.AppendTag(nil, fieldStreamedBody, protowire.BytesType)
	}
	bodyField = protowire.AppendVarint(bodyField, uint64(len(body)))
	mutLen := len(bodyField) + len(body)
	if streamed != nil {
		var eos []byte
		if streamed.GetEndOfStream() {
			eos = protowire.AppendTag(nil, fieldStreamedEnd, protowire.VarintType)
			eos = protowire.AppendVarint(eos, 1)
		}
		srLen := len(eos) + mutLen
		mutHead = protowire.AppendTag(mutHead, fieldMutStreamed, protowire.BytesType)
		mutHead = protowire.AppendVarint(mutHead, uint64(srLen))
		mutHead = append(mutHead, eos...)
		mutLen = len(mutHead) + mutLen
	}
	crLen := len(inner) + protowire.SizeTag(fieldCommonBodyMut) + protowire.SizeBytes(mutLen)
	brLen := protowire.SizeTag(fieldBodyRespResponse) + protowire.SizeBytes(crLen)
	prefix := make([]byte, 0, len(outer)+64+len(inner)+len(mutHead)+len(bodyField))
	prefix = append(prefix, outer...)
	prefix = protowire.AppendTag(prefix, fieldRespResponseBody, protowire.BytesType)
	prefix = protowire.AppendVarint(prefix, uint64(brLen))
	prefix = protowire.AppendTag(prefix, fieldBodyRespResponse, protowire.BytesType)
	prefix = protowire.AppendVarint(prefix, uint64(crLen))
	prefix = append(prefix, inner...)
	prefix = protowire.AppendTag(prefix, fieldCommonBodyMut, protowire.BytesType)
	prefix = protowire.AppendVarint(prefix, uint64(mutLen))
	prefix = append(prefix, mutHead...)
	prefix = append(prefix, bodyField...)
	var bodyBuf mem.Buffer = mem.SliceBuffer(body)
	if pooled != nil && cap(*pooled) > 0 && cap(body) > 0 && &(*pooled)[:1][0] == &body[:1][0] {
		// The transport hands the pool its buffer back once written.
		*pooled = body
		bodyBuf = mem.NewBuffer(pooled, bodyPool)
	} else if pooled != nil {
		bodyPool.Put(pooled)
	}
	return mem.BufferSlice{mem.SliceBuffer(prefix), bodyBuf}, true, nil
}

// marshalMsg marshals m with the generated code when the build has it
// (the vtprotobuf build tag), with protobuf-go otherwise.
func marshalMsg(m proto.Message) ([]byte, error) {
	if vt, ok := m.(vtMessage); ok {
		buf := make([]byte, vt.SizeVT())
		_, err := vt.MarshalToSizedBufferVTStrict(buf)
		return buf, err
	}
	return proto.Marshal(m)
}

// Unmarshal implements encoding.CodecV2.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	if in, ok := v.(*checkIn); ok {
		// The fast reading keeps the buffer until the Check is answered
		// (checkHandler releases it): no copy of the message.
		buf := data.MaterializeToBuffer(bufpool.Pool)
		if err := decodeCheckIn(buf.ReadOnlyData(), in); err != nil || !in.fast {
			buf.Free()
			return err
		}
		in.buf = buf
		return nil
	}
	if cr, ok := v.(*authv3.CheckRequest); ok {
		buf := data.MaterializeToBuffer(bufpool.Pool)
		defer buf.Free()
		return decodeCheckRequest(buf.ReadOnlyData(), cr)
	}
	in, ok := v.(*inbound)
	if !ok {
		return protoCodec.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(bufpool.Pool)
	aliased, err := decodeInbound(buf.ReadOnlyData(), in)
	if err != nil || !aliased {
		buf.Free()
		return err
	}
	in.buf = buf
	return nil
}

// decodeProcessingRequest unmarshals b into req as proto.Unmarshal does,
// except that a response body aliases b (aliased reports it). Every other
// field goes through proto.Unmarshal (a request body too: a communication
// route's plan keeps values read from it).
func decodeProcessingRequest(b []byte, req *extprocv3.ProcessingRequest) (aliased bool, err error) {
	var (
		rest     []byte // the fields decoded by proto.Unmarshal, in order
		body     *extprocv3.HttpBody
		bodyNum  protowire.Number
		lastOnef protowire.Number
	)
	for p := b; len(p) > 0; {
		num, typ, n := protowire.ConsumeTag(p)
		if n < 0 {
			return false, fmt.Errorf("ext_proc request: %w", protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, p[n:])
		if m < 0 {
			return false, fmt.Errorf("ext_proc request: %w", protowire.ParseError(m))
		}
		field := p[:n+m]
		p = p[n+m:]
		if num >= firstReqOneofField && num <= lastReqOneofField && typ == protowire.BytesType {
			// (Of another wire type it is an unknown field to protobuf.)
			lastOnef = num
		}
		if num == fieldReqResponseBody && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(field[n:])
			hb, ok := decodeHTTPBody(v, body, num == bodyNum)
			if !ok {
				// Something this decoder does not know: proto reads it all.
				if err := proto.Unmarshal(b, req); err != nil {
					return false, fmt.Errorf("ext_proc request: %w", err)
				}
				return false, nil
			}
			body, bodyNum = hb, num
			continue
		}
		rest = append(rest, field...)
	}
	if err := proto.Unmarshal(rest, req); err != nil {
		return false, fmt.Errorf("ext_proc request: %w", err)
	}
	if body == nil || lastOnef != bodyNum {
		// A oneof field after the body replaced it, as in proto.Unmarshal.
		return false, nil
	}
	req.Request = &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: body}
	return len(body.Body) > 0, nil
}

// decodeHTTPBody reads an HttpBody whose body aliases b, merging into prev
// when the same field came before (proto's merge of a repeated message
// field). ok is false for anything it does not know (left to proto).
func decodeHTTPBody(b []byte, prev *extprocv3.HttpBody, merge bool) (*extprocv3.HttpBody, bool) {
	hb := &extprocv3.HttpBody{}
	if merge && prev != nil {
		hb = prev
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false
		}
		b = b[n:]
		switch {
		case num == fieldHTTPBodyBody && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, false
			}
			hb.Body, b = v, b[m:]
		case (num == fieldHTTPBodyEnd || num == fieldHTTPBodyEndNoMsg) && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return nil, false
			}
			if num == fieldHTTPBodyEnd {
				hb.EndOfStream = v != 0
			} else {
				hb.EndOfStreamWithoutMessage = v != 0
			}
			b = b[m:]
		default:
			return nil, false
		}
	}
	return hb, true
}

// inbound is an ext_proc request received by the codec: its body aliases
// buf until release.
type inbound struct {
	req extprocv3.ProcessingRequest
	buf mem.Buffer
	// fast: the fast reading (extprocfast.go) read req; a headers
	// message's headers are then in hdrs, not in req.
	fast bool
	hdrs map[string]string
	// md is the last metadata_context the fast reading decoded on this
	// stream, from the bytes mdRaw: later messages with the same bytes
	// share it.
	md    *corev3.Metadata
	mdRaw string
	// Messages the fast reading fills instead of allocating: a headers
	// message and its oneof, the protocol configuration. The processor
	// reads them while it handles the message and keeps none.
	hh          extprocv3.HttpHeaders
	reqHeaders  extprocv3.ProcessingRequest_RequestHeaders
	respHeaders extprocv3.ProcessingRequest_ResponseHeaders
	pc          extprocv3.ProtocolConfiguration
}

// headers are the headers of h, a headers message of req, as headerMap
// reads them.
func (in *inbound) headers(h *extprocv3.HttpHeaders) map[string]string {
	if in.fast {
		return in.hdrs
	}
	return headerMap(h.GetHeaders())
}

// reset empties the message (the metadata memo stays).
func (in *inbound) reset() {
	proto.Reset(&in.req)
	in.fast, in.hdrs = false, nil
}

func (in *inbound) release() {
	if in.buf != nil {
		in.buf.Free()
		in.buf = nil
	}
	in.reset()
}

// outbound is an ext_proc answer to send; pooled, when set, is the pool
// buffer its body was rewritten into.
type outbound struct {
	resp   *extprocv3.ProcessingResponse
	pooled *[]byte
}

// checkHeadersPath leads from a CheckRequest to its HttpRequest:
// attributes (1), AttributeContext.request (4), Request.http (2); the
// headers map is HttpRequest field 3.
var checkHeadersPath = [...]protowire.Number{1, 4, 2}

const fieldHTTPHeaders = 3

// decodeCheckRequest unmarshals b into req as proto.Unmarshal does, but
// reads the request's headers map itself: protobuf-go sets map entries
// through reflection, which was the largest part of decoding a Check.
// Anything unusual in the headers (an entry field it does not expect,
// invalid UTF-8) is left to proto.Unmarshal of the whole message, errors
// included.
func decodeCheckRequest(b []byte, req *authv3.CheckRequest) error {
	headers := make(map[string]string, 16)
	rest, ok := stripHeaders(b, 0, make([]byte, 0, len(b)), headers)
	if !ok {
		return proto.Unmarshal(b, req)
	}
	if err := proto.Unmarshal(rest, req); err != nil {
		return err
	}
	if h := req.GetAttributes().GetRequest().GetHttp(); h != nil && len(headers) > 0 {
		h.Headers = headers
	}
	return nil
}

// stripHeaders appends b to out without the headers map's entries, which
// it puts in headers; the messages on checkHeadersPath are rewritten with
// their new lengths.
func stripHeaders(b []byte, depth int, out []byte, headers map[string]string) ([]byte, bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, false
		}
		field := b[:n+m]
		b = b[n+m:]
		if typ != protowire.BytesType {
			out = append(out, field...)
			continue
		}
		switch {
		case depth < len(checkHeadersPath) && num == checkHeadersPath[depth]:
			v, _ := protowire.ConsumeBytes(field[n:])
			out = append(out, field[:n]...)
			// The length, written once the content is known.
			start := len(out)
			inner, ok := stripHeaders(v, depth+1, out, headers)
			if !ok {
				return nil, false
			}
			content := len(inner) - start
			lenBytes := protowire.AppendVarint(nil, uint64(content))
			inner = append(inner, lenBytes...)
			copy(inner[start+len(lenBytes):], inner[start:start+content])
			copy(inner[start:], lenBytes)
			out = inner
		case depth == len(checkHeadersPath) && num == fieldHTTPHeaders:
			v, _ := protowire.ConsumeBytes(field[n:])
			if !headerEntry(v, headers) {
				return nil, false
			}
		default:
			out = append(out, field...)
		}
	}
	return out, true
}

// headerEntry reads one map<string, string> entry into headers; false for
// anything but a key (1) and value (2), both valid UTF-8.
func headerEntry(b []byte, headers map[string]string) bool {
	var key, val []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType || (num != 1 && num != 2) {
			return false
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return false
		}
		if num == 1 {
			key = v
		} else {
			val = v
		}
		b = b[n+m:]
	}
	if !utf8.Valid(key) || !utf8.Valid(val) {
		return false
	}
	headers[string(key)] = string(val)
	return true
}
