package authz

import (
	"math"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gdprgate/gdprgate/internal/gate"
)

// appendCheckResponse writes r in protobuf's wire format as proto.Marshal
// would (field order aside, which protobuf leaves free), without its
// reflection over every field and map entry: a Check answer's marshalling
// was a third of gdprgate's own CPU per Check. ok is false for anything
// this encoder does not write (fields Check never sets, invalid UTF-8,
// nil elements): the caller then lets proto.Marshal do it, errors included.
// TestCheckWireCoversEveryField fails when go-control-plane adds a field.
func appendCheckResponse(b []byte, r *authv3.CheckResponse) ([]byte, bool) {
	e := wireEncoder{b: b, ok: true}
	if r.Status != nil {
		e.nested(1, func() { e.status(r.Status) })
	}
	switch h := r.HttpResponse.(type) {
	case nil:
	case *authv3.CheckResponse_DeniedResponse:
		e.denied(2, h.DeniedResponse)
	case *authv3.CheckResponse_OkResponse:
		if h.OkResponse == nil {
			return b, false
		}
		e.nested(3, func() { e.okResponse(h.OkResponse) })
	case *authv3.CheckResponse_ErrorResponse:
		e.denied(5, h.ErrorResponse)
	default:
		return b, false
	}
	if r.DynamicMetadata != nil {
		e.nested(4, func() { e.structValue(r.DynamicMetadata) })
	}
	if len(r.ProtoReflect().GetUnknown()) > 0 {
		return b, false
	}
	return e.b, e.ok
}

type wireEncoder struct {
	b  []byte
	ok bool
}

// nested writes field num as a message whose content body writes.
func (e *wireEncoder) nested(num protowire.Number, body func()) {
	e.b = protowire.AppendTag(e.b, num, protowire.BytesType)
	start := len(e.b)
	e.b = append(e.b, 0) // the length, if it fits one byte
	body()
	n := len(e.b) - start - 1
	if n < 0x80 {
		e.b[start] = byte(n)
		return
	}
	w := protowire.SizeVarint(uint64(n))
	e.b = append(e.b, make([]byte, w-1)...)
	copy(e.b[start+w:], e.b[start+1:start+1+n])
	protowire.AppendVarint(e.b[start:start], uint64(n))
}

// str writes a proto3 string field (omitted when empty).
func (e *wireEncoder) str(num protowire.Number, s string) {
	if s == "" {
		return
	}
	if !utf8.ValidString(s) {
		e.ok = false
		return
	}
	e.b = protowire.AppendTag(e.b, num, protowire.BytesType)
	e.b = protowire.AppendString(e.b, s)
}

// strAlways writes a string that is part of a repeated field or a oneof:
// present even when empty.
func (e *wireEncoder) strAlways(num protowire.Number, s string) {
	if !utf8.ValidString(s) {
		e.ok = false
		return
	}
	e.b = protowire.AppendTag(e.b, num, protowire.BytesType)
	e.b = protowire.AppendString(e.b, s)
}

// int32 writes a proto3 int32 or enum field (omitted when zero).
func (e *wireEncoder) int32(num protowire.Number, v int32) {
	if v == 0 {
		return
	}
	e.b = protowire.AppendTag(e.b, num, protowire.VarintType)
	e.b = protowire.AppendVarint(e.b, uint64(int64(v)))
}

func (e *wireEncoder) boolean(num protowire.Number, v bool) {
	if !v {
		return
	}
	e.b = protowire.AppendTag(e.b, num, protowire.VarintType)
	e.b = protowire.AppendVarint(e.b, 1)
}

func (e *wireEncoder) status(s *rpcstatus.Status) {
	if len(s.Details) > 0 || len(s.ProtoReflect().GetUnknown()) > 0 {
		e.ok = false
		return
	}
	e.int32(1, s.Code)
	e.str(2, s.Message)
}

func (e *wireEncoder) denied(num protowire.Number, d *authv3.DeniedHttpResponse) {
	if d == nil || len(d.ProtoReflect().GetUnknown()) > 0 {
		e.ok = false
		return
	}
	e.nested(num, func() {
		if d.Status != nil {
			if len(d.Status.ProtoReflect().GetUnknown()) > 0 {
				e.ok = false
			}
			e.nested(1, func() { e.int32(1, int32(d.Status.Code)) })
		}
		e.headers(2, d.Headers)
		e.str(3, d.Body)
	})
}

func (e *wireEncoder) okResponse(ok *authv3.OkHttpResponse) {
	if ok.DynamicMetadata != nil || len(ok.QueryParametersToSet) > 0 || len(ok.ProtoReflect().GetUnknown()) > 0 {
		e.ok = false
		return
	}
	e.headers(2, ok.Headers)
	for _, k := range ok.HeadersToRemove {
		e.strAlways(5, k)
	}
	e.headers(6, ok.ResponseHeadersToAdd)
	for _, k := range ok.QueryParametersToRemove {
		e.strAlways(8, k)
	}
}

func (e *wireEncoder) headers(num protowire.Number, hs []*corev3.HeaderValueOption) {
	for _, h := range hs {
		if h == nil || h.Append != nil || len(h.ProtoReflect().GetUnknown()) > 0 {
			e.ok = false
			return
		}
		e.nested(num, func() {
			if hv := h.Header; hv != nil {
				if len(hv.ProtoReflect().GetUnknown()) > 0 {
					e.ok = false
				}
				e.nested(1, func() {
					e.str(1, hv.Key)
					e.str(2, hv.Value)
					if len(hv.RawValue) > 0 {
						e.b = protowire.AppendTag(e.b, 3, protowire.BytesType)
						e.b = protowire.AppendBytes(e.b, hv.RawValue)
					}
				})
			}
			e.int32(3, int32(h.AppendAction))
			e.boolean(4, h.KeepEmptyValue)
		})
	}
}

func (e *wireEncoder) structValue(s *structpb.Struct) {
	if len(s.ProtoReflect().GetUnknown()) > 0 {
		e.ok = false
		return
	}
	for k, v := range s.Fields {
		if v == nil {
			e.ok = false
			return
		}
		e.nested(1, func() {
			e.strAlways(1, k)
			e.nested(2, func() { e.value(v) })
		})
	}
}

func (e *wireEncoder) value(v *structpb.Value) {
	if len(v.ProtoReflect().GetUnknown()) > 0 {
		e.ok = false
		return
	}
	switch k := v.Kind.(type) {
	case nil:
	case *structpb.Value_NullValue:
		e.b = protowire.AppendTag(e.b, 1, protowire.VarintType)
		e.b = protowire.AppendVarint(e.b, uint64(int64(k.NullValue)))
	case *structpb.Value_NumberValue:
		e.b = protowire.AppendTag(e.b, 2, protowire.Fixed64Type)
		e.b = protowire.AppendFixed64(e.b, math.Float64bits(k.NumberValue))
	case *structpb.Value_StringValue:
		e.strAlways(3, k.StringValue)
	case *structpb.Value_BoolValue:
		e.b = protowire.AppendTag(e.b, 4, protowire.VarintType)
		e.b = protowire.AppendVarint(e.b, protowire.EncodeBool(k.BoolValue))
	case *structpb.Value_StructValue:
		if k.StructValue == nil {
			e.ok = false
			return
		}
		e.nested(5, func() { e.structValue(k.StructValue) })
	case *structpb.Value_ListValue:
		if k.ListValue == nil || len(k.ListValue.ProtoReflect().GetUnknown()) > 0 {
			e.ok = false
			return
		}
		e.nested(6, func() {
			for _, item := range k.ListValue.Values {
				if item == nil {
					e.ok = false
					return
				}
				e.nested(1, func() { e.value(item) })
			}
		})
	default:
		e.ok = false
	}
}

// checkAnswer is a Check answer already in wire format (appendCheckAnswer).
// It lives in its request's checkIn, and out is the one-buffer slice the
// codec hands gRPC: neither costs an allocation of its own per Check.
type checkAnswer struct {
	b   mem.SliceBuffer
	out [1]mem.Buffer // &b: a pointer in an interface is not boxed
}

// appendCheckAnswer writes the answer checkResponse(ex, reqHeaders,
// identity, plan's SealPlan) describes, straight from the exchange, without building
// the message first (its headers, Struct and their allocations were a
// sixth of a Check's CPU). It covers the answers of gdprgate's own policy,
// a write's pending rectification included; ok is false for the others
// (an opa-envoy-plugin policy's additions, strings structpb refuses): the
// caller then builds the message. TestCheckAnswerAsCheckResponse holds the two equal.
func appendCheckAnswer(b []byte, ex *gate.Exchange, reqHeaders *reqHeaders, identity []string, plan planSource) ([]byte, bool) {
	v := &ex.Verdict
	if v.Policy != nil || !ownMetadataValid(ex) {
		return b, false
	}
	e := wireEncoder{b: b, ok: true}
	if !v.Allow {
		code := codes.PermissionDenied
		if v.Status == 401 {
			code = codes.Unauthenticated
		}
		e.nested(1, func() {
			e.int32(1, int32(code))
			e.str(2, v.Reason)
		})
		e.nested(2, func() {
			e.nested(1, func() { e.int32(1, int32(v.Status)) })
			e.ownHeader(2, gate.HeaderDecisionID, ex.DecisionID)
			if !v.PlainBody {
				e.ownHeader(2, "content-type", "application/json")
			}
			for k, val := range v.ResponseHeaders {
				e.ownHeader(2, k, val)
			}
			if len(v.Body) > 0 {
				if !utf8.Valid(v.Body) {
					e.ok = false
				}
				e.b = protowire.AppendTag(e.b, 3, protowire.BytesType)
				e.b = protowire.AppendBytes(e.b, v.Body)
			}
		})
	} else {
		e.nested(1, func() {})
		e.nested(3, func() {
			for k, val := range v.UpstreamHeaders {
				e.ownHeader(2, k, val)
			}
			var buf [16]string
			for _, k := range headersToRemove(buf[:0], ex, reqHeaders, identity) {
				e.strAlways(5, k)
			}
			if !ex.ConfirmsSubject() {
				for k, val := range v.ResponseHeaders {
					e.ownHeader(6, k, val)
				}
			}
		})
	}
	e.nested(4, func() {
		e.metaString("decision_id", ex.DecisionID)
		e.nested(1, func() {
			e.strAlways(1, gate.PlanMetadataKey)
			e.nested(2, func() {
				// A string field (base64: valid UTF-8) as nested writes
				// a message: tag, length, bytes.
				e.nested(3, func() { e.b = plan.g.AppendPlan(e.b, ex, plan.req) })
			})
		})
		if r := ex.RouteName(); r != "" {
			e.metaString("route", r)
		}
		if r := ex.Rectification(); r != nil {
			// Rectification.MetadataStruct, for ext_proc to write once
			// the backend answers.
			e.nested(1, func() {
				e.strAlways(1, "rectify")
				e.nested(2, func() {
					e.nested(5, func() {
						e.metaString("route", r.Route)
						e.metaString("actor", r.Actor)
						e.metaString("subject", r.Subject)
						e.metaString("fields", r.Fields)
						e.metaString("decision_id", r.DecisionID)
					})
				})
			})
		}
	})
	return e.b, e.ok
}

// ownHeader writes a HeaderValueOption that replaces any value a client
// sent (header()).
func (e *wireEncoder) ownHeader(num protowire.Number, k, v string) {
	e.nested(num, func() {
		e.nested(1, func() {
			e.str(1, k)
			e.str(2, v)
		})
		e.int32(3, int32(corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD))
	})
}

// metaString writes one Struct field holding a string value.
func (e *wireEncoder) metaString(k, v string) {
	e.nested(1, func() {
		e.strAlways(1, k)
		e.nested(2, func() { e.strAlways(3, v) })
	})
}
