package authz

import (
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/gdprgate/gdprgate/internal/bufpool"
)

// appendProcessingResponse writes r in protobuf's wire format as
// proto.Marshal would (field order aside, which protobuf leaves free)
// without its reflection: the ext_proc answers' marshalling and the
// garbage it left were a tenth of the processor's CPU for a 10 KB
// exchange. A body mutation's body is written last in every message that
// holds it; one of at least apartMin bytes (apartMin > 0) is not written
// but counted in the lengths and returned as apart, to follow the prefix
// as its own buffer. ok is false for anything this encoder does not write
// (fields gdprgate never sets, unknown fields, invalid UTF-8, nil
// messages): the caller then lets proto.Marshal do it, errors included.
// TestProcessingWireCoversEveryField fails when go-control-plane adds a
// field.
func appendProcessingResponse(b []byte, r *extprocv3.ProcessingResponse, apartMin int) (out, apart []byte, ok bool) {
	e := procEncoder{wireEncoder: wireEncoder{b: b, ok: true}, apartMin: apartMin}
	if r.DynamicMetadata != nil || r.OverrideMessageTimeout != nil || len(r.TypedDynamicMetadata) > 0 ||
		r.ServerWindowUpdate != nil || unknown(r) {
		return b, nil, false
	}
	if m := r.ModeOverride; m != nil {
		if unknown(m) {
			return b, nil, false
		}
		e.nested(9, func() {
			e.int32(1, int32(m.RequestHeaderMode))
			e.int32(2, int32(m.ResponseHeaderMode))
			e.int32(3, int32(m.RequestBodyMode))
			e.int32(4, int32(m.ResponseBodyMode))
			e.int32(5, int32(m.RequestTrailerMode))
			e.int32(6, int32(m.ResponseTrailerMode))
		})
	}
	e.boolean(12, r.RequestDrain)
	e.boolean(15, r.RequestDrainRequests)
	e.boolean(16, r.RequestDrainResponses)
	// The oneof last: it may hold the body.
	switch x := r.Response.(type) {
	case nil:
	case *extprocv3.ProcessingResponse_RequestHeaders:
		e.headersResponse(1, x.RequestHeaders)
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		e.headersResponse(2, x.ResponseHeaders)
	case *extprocv3.ProcessingResponse_RequestBody:
		e.bodyResponse(3, x.RequestBody)
	case *extprocv3.ProcessingResponse_ResponseBody:
		e.bodyResponse(4, x.ResponseBody)
	case *extprocv3.ProcessingResponse_RequestTrailers:
		e.trailersResponse(5, x.RequestTrailers)
	case *extprocv3.ProcessingResponse_ResponseTrailers:
		e.trailersResponse(6, x.ResponseTrailers)
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		e.immediate(7, x.ImmediateResponse)
	default:
		e.ok = false
	}
	if !e.ok {
		return b, nil, false
	}
	return e.b, e.apart, true
}

func unknown(m proto.Message) bool { return len(m.ProtoReflect().GetUnknown()) > 0 }

// procEncoder is wireEncoder with a body that may be left out of the
// bytes (apart) but not out of the lengths.
type procEncoder struct {
	wireEncoder
	apartMin int
	apart    []byte
	hasApart bool
}

// holder writes field num as a message that may hold the body: when the
// body is left apart inside it, its length counts the body. The body is
// the last thing written in each holder.
func (e *procEncoder) holder(num protowire.Number, body func()) {
	had := e.hasApart
	e.b = protowire.AppendTag(e.b, num, protowire.BytesType)
	start := len(e.b)
	e.b = append(e.b, 0)
	body()
	n := len(e.b) - start - 1
	if e.hasApart && !had {
		n += len(e.apart)
	}
	if n < 0x80 {
		e.b[start] = byte(n)
		return
	}
	w := protowire.SizeVarint(uint64(n))
	content := len(e.b) - start - 1
	e.b = append(e.b, make([]byte, w-1)...)
	copy(e.b[start+w:], e.b[start+1:start+1+content])
	protowire.AppendVarint(e.b[start:start], uint64(n))
}

// body writes a bytes field (always: in a oneof; else when not empty),
// leaving it apart when it is big enough.
func (e *procEncoder) body(num protowire.Number, v []byte, always bool) {
	if len(v) == 0 && !always {
		return
	}
	e.b = protowire.AppendTag(e.b, num, protowire.BytesType)
	if e.apartMin > 0 && len(v) >= e.apartMin && !e.hasApart {
		e.b = protowire.AppendVarint(e.b, uint64(len(v)))
		e.apart, e.hasApart = v, true
		return
	}
	e.b = protowire.AppendBytes(e.b, v)
}

func (e *procEncoder) headersResponse(num protowire.Number, h *extprocv3.HeadersResponse) {
	if h == nil || unknown(h) {
		e.ok = false
		return
	}
	e.holder(num, func() {
		if h.Response != nil {
			e.common(1, h.Response)
		}
	})
}

func (e *procEncoder) bodyResponse(num protowire.Number, br *extprocv3.BodyResponse) {
	if br == nil || unknown(br) {
		e.ok = false
		return
	}
	e.holder(num, func() {
		if br.Response != nil {
			e.common(1, br.Response)
		}
	})
}

func (e *procEncoder) trailersResponse(num protowire.Number, t *extprocv3.TrailersResponse) {
	if t == nil || unknown(t) {
		e.ok = false
		return
	}
	e.nested(num, func() {
		if t.HeaderMutation != nil {
			e.mutation(1, t.HeaderMutation)
		}
	})
}

func (e *procEncoder) common(num protowire.Number, c *extprocv3.CommonResponse) {
	if c.Trailers != nil || unknown(c) {
		e.ok = false
		return
	}
	e.holder(num, func() {
		e.int32(1, int32(c.Status))
		if c.HeaderMutation != nil {
			e.mutation(2, c.HeaderMutation)
		}
		e.boolean(5, c.ClearRouteCache)
		if bm := c.BodyMutation; bm != nil {
			e.bodyMutation(3, bm)
		}
	})
}

func (e *procEncoder) mutation(num protowire.Number, m *extprocv3.HeaderMutation) {
	if unknown(m) {
		e.ok = false
		return
	}
	e.nested(num, func() {
		e.headers(1, m.SetHeaders)
		for _, k := range m.RemoveHeaders {
			e.strAlways(2, k)
		}
	})
}

func (e *procEncoder) bodyMutation(num protowire.Number, bm *extprocv3.BodyMutation) {
	if unknown(bm) {
		e.ok = false
		return
	}
	e.holder(num, func() {
		switch x := bm.Mutation.(type) {
		case nil:
		case *extprocv3.BodyMutation_Body:
			e.body(1, x.Body, true)
		case *extprocv3.BodyMutation_ClearBody:
			e.b = protowire.AppendTag(e.b, 2, protowire.VarintType)
			e.b = protowire.AppendVarint(e.b, protowire.EncodeBool(x.ClearBody))
		case *extprocv3.BodyMutation_StreamedResponse:
			sr := x.StreamedResponse
			if sr == nil || unknown(sr) {
				e.ok = false
				return
			}
			e.holder(3, func() {
				e.boolean(2, sr.EndOfStream)
				e.boolean(3, sr.EndOfStreamWithoutMessage)
				e.boolean(4, sr.GrpcMessageCompressed)
				e.boolean(5, sr.DrainComplete)
				e.body(1, sr.Body, false)
			})
		default:
			e.ok = false
		}
	})
}

func (e *procEncoder) immediate(num protowire.Number, ir *extprocv3.ImmediateResponse) {
	if ir == nil || ir.GrpcStatus != nil || unknown(ir) {
		e.ok = false
		return
	}
	e.holder(num, func() {
		if s := ir.Status; s != nil {
			if unknown(s) {
				e.ok = false
			}
			e.nested(1, func() { e.int32(1, int32(s.Code)) })
		}
		if ir.Headers != nil {
			e.mutation(2, ir.Headers)
		}
		e.str(5, ir.Details)
		e.body(3, ir.Body, false)
	})
}

// inlineBodyLen is the length of r's body mutation when it is written
// into the message (under zeroCopyMin), for sizing the buffer.
func inlineBodyLen(r *extprocv3.ProcessingResponse) int {
	var n int
	switch x := r.Response.(type) {
	case *extprocv3.ProcessingResponse_ResponseBody:
		bm := x.ResponseBody.GetResponse().GetBodyMutation()
		n = len(bm.GetBody()) + len(bm.GetStreamedResponse().GetBody())
	case *extprocv3.ProcessingResponse_RequestBody:
		bm := x.RequestBody.GetResponse().GetBodyMutation()
		n = len(bm.GetBody()) + len(bm.GetStreamedResponse().GetBody())
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		n = len(x.ImmediateResponse.GetBody())
	}
	if n >= zeroCopyMin {
		return 0
	}
	return n
}

// pooledPrefixMin is the message size from which the written message goes
// into a pool buffer (what the transport frees once written).
const pooledPrefixMin = 4 << 10

// marshalProcessing writes r with appendProcessingResponse: the message,
// then a big body as its own buffer (handed back to the body pool once
// written when it is the pooled buffer). ok is false when the encoder does
// not apply; pooled is then untouched.
func marshalProcessing(r *extprocv3.ProcessingResponse, pooled *[]byte) (mem.BufferSlice, bool) {
	size := 512 + inlineBodyLen(r)
	var buf *[]byte
	var b []byte
	if size >= pooledPrefixMin {
		buf = bufpool.Pool.Get(size)
		b = (*buf)[:0]
	} else {
		b = make([]byte, 0, size)
	}
	out, apart, ok := appendProcessingResponse(b, r, zeroCopyMin)
	if !ok {
		if buf != nil {
			bufpool.Pool.Put(buf)
		}
		return nil, false
	}
	var prefix mem.Buffer = mem.SliceBuffer(out)
	if buf != nil {
		if cap(out) == cap(*buf) && &out[:1][0] == &(*buf)[:1][0] {
			*buf = out
			prefix = mem.NewBuffer(buf, bufpool.Pool)
		} else {
			// The message outgrew the buffer.
			bufpool.Pool.Put(buf)
		}
	}
	if apart == nil {
		if pooled != nil {
			// The body, if it was this buffer, is copied into the message.
			bodyPool.Put(pooled)
		}
		return mem.BufferSlice{prefix}, true
	}
	var bodyBuf mem.Buffer = mem.SliceBuffer(apart)
	if pooled != nil && cap(*pooled) > 0 && &(*pooled)[:1][0] == &apart[:1][0] {
		// The transport hands the pool its buffer back once written.
		*pooled = apart
		bodyBuf = mem.NewBuffer(pooled, bodyPool)
	} else if pooled != nil {
		bodyPool.Put(pooled)
	}
	return mem.BufferSlice{prefix, bodyBuf}, true
}
