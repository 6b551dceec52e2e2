package authz

import (
	"context"
	"strconv"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/gdprgate/gdprgate/internal/gate"
)

// Streamed answers: Envoy's STREAMED and FULL_DUPLEX_STREAMED response body
// modes. The headers go to the client before the body is read, so once they
// are gone a failure cannot become an error status: the processor answers
// with an ImmediateResponse, which Envoy turns into a reset of the client's
// stream (FilterManager::sendLocalReply after the headers were sent), and
// every chunk released before it was redacted. An ImmediateResponse rather
// than a gRPC error, because failure_mode_allow would let the rest of the
// body through unprocessed after a gRPC error, never after an
// ImmediateResponse.

// bodyStream is gate.BodyStream as this file uses it (tests substitute it).
type bodyStream interface {
	Write(dst, chunk []byte) ([]byte, error)
	Close(dst []byte) ([]byte, error)
}

// streamedBody is one streamed answer in progress.
type streamedBody struct {
	duplex bool
	// bs redacts chunk by chunk; nil when the answer needs the whole body
	// (RewriteStream said ok=false) and is collected in buf for Rewrite.
	bs  bodyStream
	buf []byte
	// held is the response headers answer a FULL_DUPLEX_STREAMED collection
	// holds back until the body is checked: until it is sent the client has
	// nothing, and a refusal is a real error status.
	held *extprocv3.HeaderMutation
	// done: the answer was finished or aborted; Envoy stops listening.
	done bool
	// trailers: the body ended with trailers, so no answer carries
	// end_of_stream (the trailers answer ends it).
	trailers bool
}

func streamedMode(m filterv3.ProcessingMode_BodySendMode) bool {
	return m == filterv3.ProcessingMode_STREAMED || m == filterv3.ProcessingMode_FULL_DUPLEX_STREAMED
}

// rewriteStream is gate.RewriteStream unless a test replaced it.
func (s *Server) rewriteStream(ctx context.Context, ex *gate.Exchange, resp *gate.Response) (bodyStream, gate.Rewritten, bool) {
	if s.streamHook != nil {
		return s.streamHook(ctx, ex, resp)
	}
	bs, head, ok := s.gate.RewriteStream(ctx, ex, resp)
	if bs == nil {
		return nil, head, ok
	}
	return bs, head, ok
}

// streamHeaders answers the response headers of a mapped route whose body
// Envoy streams. mut already holds the exchange's own header changes.
func (s *Server) streamHeaders(ctx context.Context, st *stream, mut *extprocv3.HeaderMutation) *extprocv3.ProcessingResponse {
	duplex := st.respMode == filterv3.ProcessingMode_FULL_DUPLEX_STREAMED
	var (
		bs   bodyStream
		head gate.Rewritten
		ok   bool
	)
	// An answer known to be short (body.stream_above, as the proxy reads
	// it; -1 never streams) is rewritten whole, where a refusal is still an
	// error status.
	above := s.gate.StreamAbove()
	if n, err := strconv.Atoi(st.respHdrs["content-length"]); above >= 0 && (err != nil || n > above) {
		bs, head, ok = s.rewriteStream(ctx, st.ex, &gate.Response{Status: st.status, Header: st.header, Head: st.head})
	}
	headers := func(m *extprocv3.HeaderMutation) *extprocv3.ProcessingResponse {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{
			Response: &extprocv3.CommonResponse{HeaderMutation: m}}}}
	}
	switch {
	case ok && head.Replace:
		return immediate(head.Status, head.Body, st.ex.DecisionID, head.SetHeaders)
	case ok && bs != nil:
		st.body = &streamedBody{duplex: duplex, bs: bs}
		addRewrittenHeaders(mut, head)
		return headers(mut)
	case duplex:
		// Hold the headers (Envoy has no message timer in this mode and
		// keeps no copy of the body): the whole answer is checked first.
		st.body = &streamedBody{duplex: true, held: mut}
		return nil
	default:
		// STREAMED: ask Envoy to buffer this answer instead, where a refusal
		// is still an error status (allow_mode_override; Envoy's buffer limit
		// then bounds it). If the override is not honoured the chunks come
		// anyway and are collected here (streamBody).
		st.body = &streamedBody{}
		r := headers(mut)
		r.ModeOverride = &filterv3.ProcessingMode{ResponseHeaderMode: filterv3.ProcessingMode_SEND, ResponseBodyMode: filterv3.ProcessingMode_BUFFERED}
		return r
	}
}

func addRewrittenHeaders(mut *extprocv3.HeaderMutation, rw gate.Rewritten) {
	mut.RemoveHeaders = append(mut.RemoveHeaders, rw.RemoveHeaders...)
	for k, v := range rw.SetHeaders {
		mut.SetHeaders = append(mut.SetHeaders, setHeader(k, v))
	}
}

// streamBody answers one body chunk of a streamed answer. done=false hands
// the chunk to the buffered path (Envoy honoured the BUFFERED override and
// sent the whole body at once).
func (s *Server) streamBody(ctx context.Context, st *stream, b *extprocv3.HttpBody) (*extprocv3.ProcessingResponse, bool) {
	sb := st.body
	chunk, eos := b.GetBody(), b.GetEndOfStream()
	if sb.done {
		// Envoy has stopped listening after our last answer.
		return nil, true
	}
	if sb.bs != nil {
		// The codec sends a body from its own buffer, after SendMsg
		// returns: each answer gets a pooled buffer of its own, handed back
		// once written (st.pooled), never one reused for the next chunk.
		dst := bodyPool.Get(len(chunk) + len(chunk)/8 + 512)
		out, err := sb.bs.Write((*dst)[:0], chunk)
		if err == nil && eos {
			out, err = sb.bs.Close(out)
		}
		if err != nil {
			bodyPool.Put(dst)
			sb.done = true
			s.log.Warn("ext_proc: streamed answer aborted", "decision_id", st.ex.DecisionID, "err", err)
			return abortStream(st), true
		}
		switch {
		case len(out) > duplexPiece && sb.duplex:
			// Sent in pieces that all share dst: left to the collector.
		case cap(out) > 0 && &out[:1][0] == &(*dst)[:1][0]:
			st.pooled = dst
		default:
			bodyPool.Put(dst)
		}
		if eos {
			sb.done = true
		}
		if sb.duplex {
			return duplexOut(st, out, eos && !sb.trailers), true
		}
		return chunkBody(out), true
	}
	if !sb.duplex && eos && len(sb.buf) == 0 {
		return nil, false
	}
	if len(sb.buf)+len(chunk) > s.gate.MaxBodyBytes() {
		sb.done = true
		sb.buf = nil
		// Before the headers were released (FULL_DUPLEX) this is a 502 the
		// client sees; after (STREAMED) Envoy resets the stream.
		return immediate(502, []byte(`{"error":"body_too_large","message":"the backend's answer is larger than gdprgate may check"}`), st.ex.DecisionID, nil), true
	}
	sb.buf = append(sb.buf, chunk...)
	if !eos {
		if sb.duplex {
			return nil, true
		}
		// STREAMED: every chunk needs an answer; an empty body holds it back.
		return chunkBody(nil), true
	}
	sb.done = true
	rw := s.gate.Rewrite(ctx, st.ex, &gate.Response{Status: st.status, Header: st.header, Body: sb.buf, Head: st.head})
	body := sb.buf
	if rw.Modified {
		body = rw.Body
	}
	if rw.Replace {
		return immediate(rw.Status, rw.Body, st.ex.DecisionID, rw.SetHeaders), true
	}
	if !sb.duplex {
		// The headers are gone: rw's header changes cannot follow.
		return chunkBody(body), true
	}
	addRewrittenHeaders(sb.held, rw)
	first := duplexOut(st, body, !sb.trailers)
	st.extra = append([]*extprocv3.ProcessingResponse{first}, st.extra...)
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{
		Response: &extprocv3.CommonResponse{HeaderMutation: sb.held}}}}, true
}

// duplexPiece is the largest streamed_response gdprgate sends: Envoy's
// processing_mode documentation recommends at most 64 KiB per message.
const duplexPiece = 64 << 10

// duplexOut answers with out in streamed_response pieces: the first is
// returned, the rest queued in st.extra; eos goes on the last.
func duplexOut(st *stream, out []byte, eos bool) *extprocv3.ProcessingResponse {
	if len(out) <= duplexPiece {
		return duplexBody(out, eos)
	}
	first := duplexBody(out[:duplexPiece], false)
	for rest := out[duplexPiece:]; len(rest) > 0; {
		n := min(len(rest), duplexPiece)
		st.extra = append(st.extra, duplexBody(rest[:n], eos && n == len(rest)))
		rest = rest[n:]
	}
	return first
}

// streamTrailers: in FULL_DUPLEX_STREAMED (whose trailer mode must be SEND)
// trailers, not end_of_stream, tell the processor that the body is
// complete. The rest of the answer goes out without end_of_stream, then the
// trailers answer.
//
// In every mode, the trailers of an answer whose body was (or is being)
// rewritten lose the names computed from the backend's body: a digest of
// the original would let a client confirm guesses of redacted values.
func (s *Server) streamTrailers(ctx context.Context, st *stream) *extprocv3.ProcessingResponse {
	tr := &extprocv3.TrailersResponse{}
	if st.rewrote || st.body != nil {
		tr.HeaderMutation = &extprocv3.HeaderMutation{RemoveHeaders: gate.ContentDerived()}
	}
	trailers := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: tr}}
	sb := st.body
	if sb != nil && !sb.duplex && !sb.done {
		// STREAMED: a body that ends with trailers never gets a chunk with
		// end_of_stream (Envoy's onTrailers), and a trailers answer carries
		// no body, so what the rewrite still holds (the list's end, a held
		// item) can never be sent. Without this the client would get a
		// body cut short under a normal ending; an immediate response makes
		// Envoy reset the stream, as for any failure mid-way.
		sb.done = true
		s.log.Warn("ext_proc: streamed answer aborted: the backend's body ended with trailers (use FULL_DUPLEX_STREAMED or BUFFERED for such answers)", "decision_id", st.ex.DecisionID)
		return abortStream(st)
	}
	if sb == nil || !sb.duplex || sb.done {
		return trailers
	}
	sb.trailers = true
	r, _ := s.streamBody(ctx, st, &extprocv3.HttpBody{EndOfStream: true})
	if r.GetImmediateResponse() != nil {
		return r
	}
	st.extra = append(st.extra, trailers)
	return r
}

// abortStream ends a streamed answer whose rest cannot be checked: the
// headers are with the client, so Envoy resets its stream.
func abortStream(st *stream) *extprocv3.ProcessingResponse {
	return immediate(502, []byte(`{"error":"body_rejected","message":"the backend's answer could not be checked"}`), st.ex.DecisionID, nil)
}

// chunkBody replaces a STREAMED chunk with out. An empty out must still be
// a body mutation: no mutation would let the original chunk through.
func chunkBody(out []byte) *extprocv3.ProcessingResponse {
	if out == nil {
		out = []byte{}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{
		Response: &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: out}}}}}}
}

// duplexBody is a FULL_DUPLEX_STREAMED answer: Envoy forwards only what the
// processor sends back in streamed_response.
func duplexBody(out []byte, eos bool) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{
		Response: &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{
			StreamedResponse: &extprocv3.StreamedBodyResponse{Body: out, EndOfStream: eos}}}}}}}
}
