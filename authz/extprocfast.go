package authz

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The ext_proc fast reading. Envoy sends three or more ProcessingRequests
// per exchange, each with the same metadata_context (ext_authz's plan) and
// the headers as a list of HeaderValue messages; protobuf-go built all of
// it through reflection, a tenth of the server's CPU for a 10 KB exchange.
// As for Check (checkfast.go), the codec first makes sure the whole message
// is one protobuf-go accepts (validMessage), then reads it itself with
// protobuf's rules: the headers straight into the map the processor uses
// (headerMap's reading), the body aliased, the metadata decoded once per
// stream while Envoy keeps sending the same bytes. Whatever it does not
// know (attributes, trailers, flow control, unknown fields, a field sent
// twice where protobuf would merge) is left to proto.Unmarshal.

var processingRequestDesc = (&extprocv3.ProcessingRequest{}).ProtoReflect().Descriptor()

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

// fastProcessingRequest reads b (validated by validMessage) into in as
// proto.Unmarshal would, except that a headers message's HeaderMap goes
// into in.hdrs (as headerMap reads it) instead of req, and a response body
// aliases b. ok is false when b has something it does not read: the caller
// then decodes it another way, from scratch.
func fastProcessingRequest(b []byte, in *inbound) (aliased, ok bool) {
	req := &in.req
	var oneofSeen, mdSeen, pcSeen bool
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:]
		if typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(b)
			b = b[m:]
			if num != fieldReqObservability {
				return false, false
			}
			req.ObservabilityMode = protowire.DecodeBool(v)
			continue
		}
		if typ != protowire.BytesType {
			return false, false
		}
		v, m := protowire.ConsumeBytes(b)
		b = b[m:]
		switch num {
		case fieldReqRequestHeaders, fieldReqResponseHeaders:
			if oneofSeen {
				return false, false
			}
			oneofSeen = true
			h := &extprocv3.HttpHeaders{}
			hdrs, ok := fastHTTPHeaders(v, h)
			if !ok {
				return false, false
			}
			in.hdrs = hdrs
			if num == fieldReqRequestHeaders {
				req.Request = &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: h}
			} else {
				req.Request = &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: h}
			}
		case fieldReqRequestBody, fieldReqResponseBody:
			if oneofSeen {
				return false, false
			}
			oneofSeen = true
			hb, ok := fastHTTPBody(v)
			if !ok {
				return false, false
			}
			if num == fieldReqRequestBody {
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
			md, ok := in.metadata(v)
			if !ok {
				return false, false
			}
			req.MetadataContext = md
		case fieldReqProtocolConfig:
			if pcSeen {
				return false, false
			}
			pcSeen = true
			pc, ok := fastProtocolConfig(v)
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
// message; the processor only reads it), decoded otherwise.
func (in *inbound) metadata(b []byte) (*corev3.Metadata, bool) {
	if in.md != nil && string(in.mdRaw) == string(b) {
		return in.md, true
	}
	md := &corev3.Metadata{}
	if err := proto.Unmarshal(b, md); err != nil {
		return nil, false
	}
	in.md, in.mdRaw = md, append(in.mdRaw[:0], b...)
	return md, true
}

// fastHTTPHeaders reads an HttpHeaders message into h, its headers into
// the returned map as headerMap would read them from h.Headers (which stays
// nil).
func fastHTTPHeaders(b []byte, h *extprocv3.HttpHeaders) (map[string]string, bool) {
	var hdrs map[string]string
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:]
		switch {
		case num == fieldHeadersEnd && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			b = b[m:]
			h.EndOfStream = protowire.DecodeBool(v)
		case num == fieldHeadersHeaderMap && typ == protowire.BytesType && hdrs == nil:
			v, m := protowire.ConsumeBytes(b)
			b = b[m:]
			var ok bool
			if hdrs, ok = fastHeaderMap(v); !ok {
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
	out := make(map[string]string, 16)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:]
		if num != fieldHeaderMapHeaders || typ != protowire.BytesType {
			return nil, false
		}
		e, m := protowire.ConsumeBytes(b)
		b = b[m:]
		var key, val, raw []byte
		for len(e) > 0 {
			num, typ, n := protowire.ConsumeTag(e)
			e = e[n:]
			if typ != protowire.BytesType {
				return nil, false
			}
			v, m := protowire.ConsumeBytes(e)
			e = e[m:]
			switch num {
			case fieldHeaderValueKey:
				key = v
			case fieldHeaderValueValue:
				val = v
			case fieldHeaderValueRaw:
				raw = v
			default:
				return nil, false
			}
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

// internValue is string(b), shared for a few values every exchange
// repeats.
func internValue(b []byte) string {
	switch string(b) {
	case "200":
		return "200"
	case "application/json":
		return "application/json"
	}
	return intern(b)
}

// fastHTTPBody reads an HttpBody whose body aliases b.
func fastHTTPBody(b []byte) (*extprocv3.HttpBody, bool) {
	hb := &extprocv3.HttpBody{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:]
		if num == fieldHTTPBodyBody && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			hb.Body, b = v, b[m:]
			continue
		}
		if typ != protowire.VarintType {
			return nil, false
		}
		v, m := protowire.ConsumeVarint(b)
		b = b[m:]
		switch num {
		case fieldHTTPBodyEnd:
			hb.EndOfStream = protowire.DecodeBool(v)
		case fieldHTTPBodyEndNoMsg:
			hb.EndOfStreamWithoutMessage = protowire.DecodeBool(v)
		case fieldHTTPBodyCompressed:
			hb.GrpcMessageCompressed = protowire.DecodeBool(v)
		case fieldHTTPBodyDrain:
			hb.DrainComplete = protowire.DecodeBool(v)
		default:
			return nil, false
		}
	}
	return hb, true
}

// fastProtocolConfig reads a ProtocolConfiguration (enums are open: any
// int32 is kept, as protobuf-go does).
func fastProtocolConfig(b []byte) (*extprocv3.ProtocolConfiguration, bool) {
	pc := &extprocv3.ProtocolConfiguration{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:]
		if typ != protowire.VarintType {
			return nil, false
		}
		v, m := protowire.ConsumeVarint(b)
		b = b[m:]
		switch num {
		case fieldProtoReqBodyMode:
			pc.RequestBodyMode = filterv3.ProcessingMode_BodySendMode(int32(v))
		case fieldProtoRespBodyMode:
			pc.ResponseBodyMode = filterv3.ProcessingMode_BodySendMode(int32(v))
		case fieldProtoSendBody:
			pc.SendBodyWithoutWaitingForHeaderResponse = protowire.DecodeBool(v)
		default:
			return nil, false
		}
	}
	return pc, true
}

// decodeInbound reads b into in: the fast reading when validMessage is
// sure of b and fastProcessingRequest knows all of it,
// decodeProcessingRequest (proto.Unmarshal's result and errors, a
// response body aliased) otherwise.
func decodeInbound(b []byte, in *inbound) (aliased bool, err error) {
	if validMessage(b, processingRequestDesc, 0) {
		if aliased, ok := fastProcessingRequest(b, in); ok {
			return aliased, nil
		}
		in.reset()
	}
	return decodeProcessingRequest(b, &in.req)
}
