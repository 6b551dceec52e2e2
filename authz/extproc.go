package authz

import (
	"context"
	"errors"
	"io"
	"slices"
	"strconv"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gdprgate/gdprgate/internal/gate"
	"github.com/gdprgate/gdprgate/internal/observe"
)

// stream is one HTTP request's ext_proc conversation.
type stream struct {
	// span covers the whole exchange, from request headers on (a no-op
	// span when tracing is off); ctx carries it to the phases.
	span trace.Span
	ctx  context.Context
	// metadata is Envoy's forwarded dynamic metadata (metadata_context).
	metadata *corev3.Metadata
	ex       *gate.Exchange
	head     bool
	status   int
	respHdrs map[string]string
	// reqHdrs are the request headers, kept when the response plan needs
	// the request body too (a communication route).
	reqHdrs map[string]string
	// pooled is the pool buffer the answer being sent was rewritten into
	// (the codec hands it back to the pool once written).
	pooled *[]byte
	// respMode is the response body mode Envoy announced in protocol_config
	// (the route's, per-route overrides included).
	respMode filterv3.ProcessingMode_BodySendMode
	// body is a STREAMED or FULL_DUPLEX_STREAMED answer in progress.
	body *streamedBody
	// rewrote: the answer's body was rewritten, so trailers computed from
	// the backend's body (a digest) must not follow it.
	rewrote bool
	// extra are answers to send after the phase's own (FULL_DUPLEX_STREAMED:
	// a held headers answer is followed by the body).
	extra []*extprocv3.ProcessingResponse
	// ans holds the answer of a phase answered at once.
	ans answers
}

// answers are the messages of the answers a stream sends at once (request
// headers, response headers not followed by a streamed body, a buffered
// body), reused phase after phase instead of a dozen allocations per
// phase: SendMsg marshals an answer before it returns, and nothing keeps
// it. Answers that may be held and sent later (streamed bodies, st.extra)
// are allocated as before.
type answers struct {
	resp    extprocv3.ProcessingResponse
	reqH    extprocv3.ProcessingResponse_RequestHeaders
	respH   extprocv3.ProcessingResponse_ResponseHeaders
	respB   extprocv3.ProcessingResponse_ResponseBody
	hdrs    extprocv3.HeadersResponse
	body    extprocv3.BodyResponse
	common  extprocv3.CommonResponse
	mut     extprocv3.HeaderMutation
	mode    filterv3.ProcessingMode
	bodyMut extprocv3.BodyMutation
	mutBody extprocv3.BodyMutation_Body
	sets    [4]*corev3.HeaderValueOption
	own     ownHeader
}

// ownHeader is a header set with its value's bytes in place (a decision
// id, a content length).
type ownHeader struct {
	o   corev3.HeaderValueOption
	h   corev3.HeaderValue
	val [48]byte
}

// answer empties the stream's answer messages for a new answer, whose
// header mutation sets no header yet (room for four without allocating).
func (st *stream) answer() *answers {
	a := &st.ans
	*a = answers{}
	a.common.HeaderMutation = &a.mut
	a.mut.SetHeaders = a.sets[:0]
	return a
}

// header is the answer's own header k: v (raw_value, as setHeader); one
// per answer.
func (a *answers) header(k string, v []byte) *corev3.HeaderValueOption {
	h := &a.own
	h.h.Key, h.h.RawValue = k, append(h.val[:0], v...)
	h.o.Header, h.o.AppendAction = &h.h, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	return &h.o
}

// headersAnswer is the answer to a headers phase (request or response).
func (a *answers) headersAnswer(request bool) *extprocv3.ProcessingResponse {
	a.hdrs.Response = &a.common
	if request {
		a.reqH.RequestHeaders = &a.hdrs
		a.resp.Response = &a.reqH
	} else {
		a.respH.ResponseHeaders = &a.hdrs
		a.resp.Response = &a.respH
	}
	return &a.resp
}

// Process answers Envoy's ext_proc stream: one message per phase Envoy was
// configured to send. Every phase gets an answer, including ones gdprgate has
// no work for, so that Envoy never waits for its message timeout.
func (s *Server) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	ctx := srv.Context()
	ps := procPool.Get().(*procState)
	st, in := &ps.st, &ps.in
	defer func() {
		// A write whose answer this stream never saw (Envoy not set to
		// send response headers, the stream cut) may still have reached
		// the backend: its audit entry is written, the outcome unknown.
		if st.ex != nil {
			s.gate.Responded(ctx, st.ex, 0)
		}
		in.release()
		if st.pooled != nil {
			bodyPool.Put(st.pooled)
		}
		if st.span != nil {
			st.span.End()
		}
		ps.put()
	}()
	for {
		// With Codec, a response body aliases the received bytes until
		// release, after the answer is sent.
		err := srv.RecvMsg(in)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if c := status.Code(err); c == codes.Canceled || c == codes.DeadlineExceeded {
				return nil
			}
			return err
		}
		// A nil answer: FULL_DUPLEX_STREAMED needs none per message.
		if resp := s.phase(ctx, st, in); resp != nil {
			ps.out = outbound{resp: resp, pooled: st.pooled}
			st.pooled = nil
			err = srv.SendMsg(&ps.out)
			ps.out = outbound{}
		}
		for _, r := range st.extra {
			if err == nil {
				err = srv.SendMsg(&outbound{resp: r})
			}
		}
		st.extra = nil
		in.release()
		if err != nil {
			return err
		}
	}
}

// procState is what a Process call works in: its stream, the message it
// receives into and the answer it sends. It is taken from procPool and
// given back when the call ends (three allocations of 1.3 KB per exchange
// otherwise, about 2% of a 10 KB exchange's server CPU with the garbage
// they make).
type procState struct {
	st  stream
	in  inbound
	out outbound
}

var procPool = sync.Pool{New: func() any { return new(procState) }}

// put empties ps and gives it back to procPool, unless the stream ended
// while streaming a body: a streamed body's rewriter was given the
// stream's header lookup and may run on (its codec goroutine ends with
// the stream's context), so that state is left to the collector.
func (ps *procState) put() {
	if ps.st.body != nil {
		return
	}
	*ps = procState{}
	procPool.Put(ps)
}

func (s *Server) phase(ctx context.Context, st *stream, in *inbound) *extprocv3.ProcessingResponse {
	req := &in.req
	if md := req.GetMetadataContext(); md != nil {
		st.metadata = md
	}
	if pc := req.GetProtocolConfig(); pc != nil {
		st.respMode = pc.GetResponseBodyMode()
	}
	if observe.Enabled() {
		if st.ctx == nil {
			var hdrs map[string]string
			if rh := req.GetRequestHeaders(); rh != nil {
				hdrs = in.headers(rh)
			}
			md, _ := metadata.FromIncomingContext(ctx)
			st.ctx, st.span = observe.StartServer(ctx, "ext_proc", hdrs, md)
		}
		var span trace.Span
		ctx, span = observe.Start(st.ctx, "ext_proc."+phaseName(req))
		defer span.End()
	}
	switch r := req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return s.requestHeaders(ctx, st, in.headers(r.RequestHeaders))
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return s.responseHeaders(ctx, st, r.ResponseHeaders, in.headers(r.ResponseHeaders))
	case *extprocv3.ProcessingRequest_ResponseBody:
		return s.responseBody(ctx, st, r.ResponseBody)
	case *extprocv3.ProcessingRequest_RequestBody:
		return s.requestBody(ctx, st, r.RequestBody)
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return s.streamTrailers(ctx, st)
	default:
		// A phase this version does not know: answer with an empty request
		// headers response rather than break the stream; Envoy ignores
		// nothing silently, but it is better than a hung request.
		s.log.Warn("ext_proc: unexpected processing request", "type", typeName(req))
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}
	}
}

func (s *Server) requestHeaders(ctx context.Context, st *stream, hdrs map[string]string) *extprocv3.ProcessingResponse {
	st.head = hdrs[":method"] == "HEAD"
	st.ex = s.gate.Check(ctx, &gate.Request{
		Method:       hdrs[":method"],
		Path:         hdrs[":path"],
		Host:         hdrs[":authority"],
		Scheme:       hdrs[":scheme"],
		Header:       func(name string) string { return hdrs[name] },
		Headers:      func() map[string]string { return hdrs },
		ResponseOnly: true,
		Metadata:     st.metadata,
	})
	v := &st.ex.Verdict
	if !v.Allow {
		// ext_authz should have stopped this request; if it is not in the
		// chain (or let it through on a stale view), the processor stops it.
		return immediate(v.Status, v.Body, st.ex.DecisionID, v.ResponseHeaders)
	}
	// The last of gdprgate's filters before the router: no x-gdpr-* header
	// of the client's (identity headers included, now read) goes upstream.
	// gate.Forgeable itself, capped: an own header of the client's is
	// appended to a copy (the encoder only reads the list).
	forgeable := gate.Forgeable
	a := st.answer()
	mut := &a.mut
	mut.RemoveHeaders = forgeable[:len(forgeable):len(forgeable)]
	for k := range hdrs {
		if gate.IsOwnHeader(k) && !slices.Contains(mut.RemoveHeaders, k) {
			mut.RemoveHeaders = append(mut.RemoveHeaders, k)
		}
	}
	// Envoy applies removals before sets (MutationUtils).
	mut.SetHeaders = append(mut.SetHeaders, a.header(gate.HeaderDecisionID, []byte(st.ex.DecisionID)))
	resp := a.headersAnswer(true)
	// Only routes with something to redact have their answer buffered. A
	// communication route's plan needs the request body as well: the
	// processor asks for it and decides again with it.
	switch {
	case st.ex.NeedsRequestBody():
		st.reqHdrs = hdrs
		a.mode = filterv3.ProcessingMode{RequestBodyMode: filterv3.ProcessingMode_BUFFERED,
			ResponseHeaderMode: filterv3.ProcessingMode_SEND, ResponseBodyMode: filterv3.ProcessingMode_BUFFERED}
	case st.ex.NeedsBody():
		// Envoy merges an override's body modes over the filter's, so a
		// route set to stream must be named again here to keep streaming.
		mode := filterv3.ProcessingMode_BUFFERED
		if streamedMode(st.respMode) {
			mode = st.respMode
		}
		a.mode = filterv3.ProcessingMode{ResponseHeaderMode: filterv3.ProcessingMode_SEND, ResponseBodyMode: mode}
	default:
		a.mode = filterv3.ProcessingMode{ResponseHeaderMode: filterv3.ProcessingMode_SEND, ResponseBodyMode: filterv3.ProcessingMode_NONE}
	}
	resp.ModeOverride = &a.mode
	return resp
}

// requestBody is the request body a communication route's plan asked for:
// the response plan is made again with it.
func (s *Server) requestBody(ctx context.Context, st *stream, b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	empty := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
	if st.reqHdrs == nil || !st.ex.NeedsRequestBody() {
		return empty
	}
	if !b.GetEndOfStream() {
		return immediate(502, []byte(`{"error":"body_not_buffered","message":"gdprgate needs the request body of this route whole (request_body_mode BUFFERED)"}`), st.ex.DecisionID, nil)
	}
	hdrs := st.reqHdrs
	st.ex = s.gate.Check(ctx, &gate.Request{
		Method:       hdrs[":method"],
		Path:         hdrs[":path"],
		Host:         hdrs[":authority"],
		Scheme:       hdrs[":scheme"],
		Header:       func(name string) string { return hdrs[name] },
		Headers:      func() map[string]string { return hdrs },
		Body:         b.GetBody(),
		ResponseOnly: true,
		Metadata:     st.metadata,
	})
	v := &st.ex.Verdict
	if !v.Allow {
		return immediate(v.Status, v.Body, st.ex.DecisionID, v.ResponseHeaders)
	}
	mut := &extprocv3.HeaderMutation{}
	if sens := v.UpstreamHeaders[gate.HeaderCommSensitivity]; sens != "" {
		mut.SetHeaders = append(mut.SetHeaders, setHeader(gate.HeaderCommSensitivity, sens))
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{
		Response: &extprocv3.CommonResponse{HeaderMutation: mut},
	}}}
}

func (s *Server) responseHeaders(ctx context.Context, st *stream, h *extprocv3.HttpHeaders, hdrs map[string]string) *extprocv3.ProcessingResponse {
	st.respHdrs = hdrs
	st.status, _ = strconv.Atoi(st.respHdrs[":status"])
	// A streamed body's headers answer may be held (FULL_DUPLEX_STREAMED):
	// its mutation is its own.
	streaming := st.ex != nil && st.ex.NeedsBody() && !h.GetEndOfStream() && streamedMode(st.respMode)
	var a *answers
	var mut *extprocv3.HeaderMutation
	if streaming {
		mut = &extprocv3.HeaderMutation{}
	} else {
		a = st.answer()
		mut = &a.mut
	}
	if st.ex != nil {
		// A write the backend took is audited now (see gate.Responded).
		s.gate.Responded(ctx, st.ex, st.status)
		for k, v := range st.ex.Verdict.ResponseHeaders {
			mut.SetHeaders = append(mut.SetHeaders, setHeader(k, v))
		}
		if !st.ex.NeedsBody() {
			s.gate.Observe(st.ex, st.status)
		}
		if streaming {
			return s.streamHeaders(ctx, st, mut)
		}
		if st.ex.NeedsBody() && h.GetEndOfStream() {
			// No body is coming, so the response stage runs now (a subject
			// named only in the body cannot be checked: nothing to show).
			rw := s.gate.Rewrite(ctx, st.ex, &gate.Response{Status: st.status, Header: st.header, Head: st.head})
			for k, v := range rw.SetHeaders {
				mut.SetHeaders = append(mut.SetHeaders, setHeader(k, v))
			}
		}
	}
	return a.headersAnswer(false)
}

func (st *stream) header(name string) string { return st.respHdrs[name] }

func (s *Server) responseBody(ctx context.Context, st *stream, b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	if st.body != nil {
		if r, done := s.streamBody(ctx, st, b); done {
			return r
		}
	}
	if st.ex == nil || !st.ex.NeedsBody() {
		if st.respMode == filterv3.ProcessingMode_FULL_DUPLEX_STREAMED {
			// Nothing to redact, but in this mode Envoy sends on only what
			// the processor gives back. A copy: the received bytes are
			// released before the transport writes the answer.
			dst := bodyPool.Get(len(b.GetBody()))
			*dst = append((*dst)[:0], b.GetBody()...)
			st.pooled = dst
			return duplexBody(*dst, b.GetEndOfStream())
		}
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
	}
	if !b.GetEndOfStream() && st.respMode != filterv3.ProcessingMode_BUFFERED {
		// Streamed chunks mean Envoy is not buffering: redaction needs the
		// whole body, so refuse rather than pass bytes unchecked. In
		// BUFFERED mode (as protocol_config announced it: gdprgate's own
		// overrides keep it) Envoy sends the body only once it is whole,
		// and without end_of_stream exactly when the backend's answer ends
		// with trailers (Filter::onTrailers sends the buffered data, the
		// trailers follow). A mode Envoy did not announce is not assumed.
		return immediate(502, []byte(`{"error":"body_not_buffered","message":"gdprgate needs response_body_mode BUFFERED"}`), st.ex.DecisionID, nil)
	}
	body := b.GetBody()
	dst := bodyPool.Get(len(body) + len(body)/16 + 512)
	rw := s.gate.Rewrite(ctx, st.ex, &gate.Response{Status: st.status, Header: st.header, Body: body, Head: st.head, Dst: (*dst)[:0]})
	if rw.Modified {
		st.pooled = dst
		st.rewrote = true
	} else {
		bodyPool.Put(dst)
	}
	if rw.Replace {
		return immediate(rw.Status, rw.Body, st.ex.DecisionID, rw.SetHeaders)
	}
	a := st.answer()
	mut := &a.mut
	mut.RemoveHeaders = rw.RemoveHeaders
	for k, v := range rw.SetHeaders {
		mut.SetHeaders = append(mut.SetHeaders, setHeader(k, v))
	}
	if rw.Modified {
		// Envoy keeps the backend's content-length unless told otherwise
		// and rejects a buffered body mutation that contradicts it.
		var n [20]byte
		mut.SetHeaders = append(mut.SetHeaders, a.header("content-length", strconv.AppendInt(n[:0], int64(len(rw.Body)), 10)))
		a.mutBody.Body = rw.Body
		a.bodyMut.Mutation = &a.mutBody
		a.common.BodyMutation = &a.bodyMut
	}
	a.body.Response = &a.common
	a.respB.ResponseBody = &a.body
	a.resp.Response = &a.respB
	return &a.resp
}

func immediate(code int, body []byte, decisionID string, headers map[string]string) *extprocv3.ProcessingResponse {
	mut := &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
		setHeader("content-type", "application/json"), setHeader(gate.HeaderDecisionID, decisionID),
	}}
	for k, v := range headers {
		if k != "content-type" {
			mut.SetHeaders = append(mut.SetHeaders, setHeader(k, v))
		}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(code)},
		Headers: mut,
		Body:    body,
		Details: "gdprgate",
	}}}
}

// setHeader builds an ext_proc header mutation. Envoy reads raw_value.
// The option and its header are allocated together (two allocations per
// header set instead of three).
func setHeader(k, v string) *corev3.HeaderValueOption {
	x := &struct {
		o corev3.HeaderValueOption
		h corev3.HeaderValue
	}{}
	x.h.Key, x.h.RawValue = k, []byte(v)
	x.o.Header, x.o.AppendAction = &x.h, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	return &x.o
}

// phaseName names a phase for its span.
func phaseName(req *extprocv3.ProcessingRequest) string {
	switch req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return "request_headers"
	case *extprocv3.ProcessingRequest_RequestBody:
		return "request_body"
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return "request_trailers"
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return "response_headers"
	case *extprocv3.ProcessingRequest_ResponseBody:
		return "response_body"
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return "response_trailers"
	}
	return "unknown"
}

func typeName(req *extprocv3.ProcessingRequest) string {
	if req.Request == nil {
		return "none"
	}
	return string(req.ProtoReflect().WhichOneof(req.ProtoReflect().Descriptor().Oneofs().ByName("request")).Name())
}
