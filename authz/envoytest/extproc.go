package envoytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Phase names used in Response.Phases.
const (
	PhaseRequestHeaders  = "request_headers"
	PhaseRequestBody     = "request_body"
	PhaseResponseHeaders = "response_headers"
	PhaseResponseBody    = "response_body"
	// PhaseResponseTrailers is sent only when the backend's answer has trailers and the
	// response trailer mode is SEND.
	PhaseResponseTrailers = "response_trailers"
)

// drainWait bounds how long the emulator waits, after the last phase, for the processor to
// end its side of the stream; anything it sends meanwhile is a processor bug worth an event.
const drainWait = 100 * time.Millisecond

type recvMsg struct {
	m   *extprocv3.ProcessingResponse
	err error
}

// procSession is the ext_proc filter's state for one HTTP request: one bidirectional
// Process stream, opened lazily with the first message as Envoy does.
type procSession struct {
	e        *Envoy
	resp     *Response
	ctx      context.Context
	cancel   context.CancelFunc
	stream   extprocv3.ExternalProcessor_ProcessClient
	recv     chan recvMsg
	mode     *extprocfilterv3.ProcessingMode
	metadata *corev3.Metadata
	// complete is Envoy's processing_complete_: after a spurious message, a stream close,
	// a failure-mode-allow fallback or an immediate response, nothing more is sent.
	complete  bool
	sentFirst bool
	// sendMu serialises Send and CloseSend when a streamed mode sends from its own goroutine.
	sendMu sync.Mutex
}

func (e *Envoy) openProc(ctx context.Context, x *exchange) *procSession {
	sctx, cancel := context.WithCancel(ctx)
	p := &procSession{
		e: e, resp: x.resp, ctx: sctx, cancel: cancel,
		mode: proto.Clone(e.mode).(*extprocfilterv3.ProcessingMode),
	}
	if f := e.opts.RouteProcessingMode; f != nil {
		if m := f(valueOr(x.reqHeaders, ":method", ""), valueOr(x.reqHeaders, ":path", "")); m != nil {
			p.mode = proto.Clone(m).(*extprocfilterv3.ProcessingMode)
		}
	}
	// The request's dynamic metadata when ext_proc runs: what filters
	// before ext_authz set, with ext_authz's answer merged into its
	// namespace (StreamInfo::setDynamicMetadata is a Struct MergeFrom: the
	// answer's keys replace, the others stay). ext_proc forwards the
	// configured namespaces of it (Filter::addDynamicMetadata).
	dynamic := map[string]*structpb.Struct{}
	for ns, s := range x.filterMetadata {
		dynamic[ns] = s
	}
	if x.authzMetadata != nil {
		merged := &structpb.Struct{Fields: map[string]*structpb.Value{}}
		for k, v := range dynamic[AuthzNamespace].GetFields() {
			merged.Fields[k] = v
		}
		for k, v := range x.authzMetadata.GetFields() {
			merged.Fields[k] = v
		}
		dynamic[AuthzNamespace] = merged
	}
	forward := e.opts.ForwardNamespaces
	if e.opts.ForwardAuthzMetadata {
		forward = append([]string{AuthzNamespace}, forward...)
	}
	for _, ns := range forward {
		if s, ok := dynamic[ns]; ok {
			if p.metadata == nil {
				p.metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{}}
			}
			p.metadata.FilterMetadata[ns] = s
		}
	}
	return p
}

func (p *procSession) close() { p.cancel() }

// start opens the stream and its receive loop.
func (p *procSession) start() error {
	stream, err := p.e.proc.Process(p.ctx, envoyRecvLimit)
	if err != nil {
		return fmt.Errorf("open ext_proc stream: %w", err)
	}
	p.stream = stream
	p.recv = make(chan recvMsg, 4)
	go func() {
		for {
			m, err := stream.Recv()
			select {
			case p.recv <- recvMsg{m, err}:
			case <-p.ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return nil
}

// endStream half-closes the stream and cancels it; Envoy resets the stream when the filter
// is done with it.
func (p *procSession) endStream() {
	// Cancelling first unblocks a streamed-mode Send stuck on flow control.
	p.cancel()
	p.closeSend()
}

// closeSend half-closes the stream; sendMu keeps it apart from the streamed modes' sender.
func (p *procSession) closeSend() {
	if p.stream != nil {
		p.sendMu.Lock()
		_ = p.stream.CloseSend()
		p.sendMu.Unlock()
	}
}

// finishStream is the orderly end after the last phase: half-close, then wait briefly for
// the processor to return, recording any message it still sends.
func (p *procSession) finishStream() {
	if p.stream == nil || p.complete {
		p.endStream()
		return
	}
	p.closeSend()
	timer := time.NewTimer(drainWait)
	defer timer.Stop()
	for {
		select {
		case r := <-p.recv:
			if r.err != nil {
				if !errors.Is(r.err, io.EOF) {
					p.resp.event("ext_proc: stream ended with %v after the last phase", r.err)
				}
				p.cancel()
				return
			}
			p.resp.event("ext_proc: unexpected %s message after the last phase (ignored by Envoy)", responseKind(r.m))
		case <-timer.C:
			p.cancel()
			return
		}
	}
}

func responseKind(m *extprocv3.ProcessingResponse) string {
	switch m.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		return PhaseRequestHeaders
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		return PhaseResponseHeaders
	case *extprocv3.ProcessingResponse_RequestBody:
		return PhaseRequestBody
	case *extprocv3.ProcessingResponse_ResponseBody:
		return PhaseResponseBody
	case *extprocv3.ProcessingResponse_RequestTrailers:
		return "request_trailers"
	case *extprocv3.ProcessingResponse_ResponseTrailers:
		return PhaseResponseTrailers
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		return "immediate_response"
	case nil:
		return "empty"
	default:
		return fmt.Sprintf("%T", m.GetResponse())
	}
}

// prepare opens the stream if needed and completes a request as Envoy sends it: dynamic
// metadata in every message, the body modes in the first (Filter::encodeProtocolConfig:
// the modes in force for this request, a route's override included).
func (p *procSession) prepare(kind string, req *extprocv3.ProcessingRequest) error {
	if p.stream == nil {
		if err := p.start(); err != nil {
			return err
		}
	}
	if p.metadata != nil {
		req.MetadataContext = p.metadata
	}
	if !p.sentFirst {
		req.ProtocolConfig = &extprocv3.ProtocolConfiguration{
			RequestBodyMode:  p.mode.GetRequestBodyMode(),
			ResponseBodyMode: p.mode.GetResponseBodyMode(),
		}
		p.sentFirst = true
	}
	if n := len(p.resp.Phases); n == 0 || p.resp.Phases[n-1] != kind || kind != PhaseResponseBody {
		// Streamed chunks appear once (Response.BodyChunks counts them).
		p.resp.Phases = append(p.resp.Phases, kind)
	}
	return nil
}

// roundTrip sends one phase and waits for its answer. A nil message and nil reply mean the
// processor is out of the picture and the request continues unprocessed (Envoy's
// behaviour after a stream close, a spurious message or a failure-mode-allow fallback).
func (p *procSession) roundTrip(kind string, req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, *Response) {
	if p.complete {
		return nil, nil
	}
	if err := p.prepare(kind, req); err != nil {
		return nil, p.grpcError(err)
	}
	// A failed Send means the stream is broken; the reason arrives through Recv below.
	_ = p.stream.Send(req)

	timer := time.NewTimer(p.e.opts.MessageTimeout)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil, p.timeout(kind)
	case r := <-p.recv:
		if r.err != nil {
			if errors.Is(r.err, io.EOF) {
				// The processor ended the stream without answering: Envoy treats this as a
				// successful close and stops processing this request.
				p.resp.event("ext_proc: processor closed the stream while %s was pending; request continues unprocessed", kind)
				p.complete = true
				p.endStream()
				return nil, nil
			}
			return nil, p.grpcError(r.err)
		}
		m := r.m
		if ir := m.GetImmediateResponse(); ir != nil {
			p.complete = true
			p.endStream()
			return nil, p.immediate(ir)
		}
		if got := responseKind(m); got != kind {
			p.resp.event("ext_proc: spurious %s message while waiting for %s: stream closed, processing stops, request continues unprocessed", got, kind)
			p.complete = true
			p.endStream()
			if p.e.opts.SpuriousIsError {
				return nil, localReply(p.resp, "ext_proc", http.StatusInternalServerError, "", "ext_proc_error_spurious_message")
			}
			return nil, nil
		}
		p.modeOverride(kind, m)
		return m, nil
	}
}

// modeOverride follows Filter::onReceiveMessage: a mode_override is honoured only with
// allow_mode_override, while a headers answer is awaited, and only when the FILTER's
// configured mode streams neither body FULL_DUPLEX_STREAMED; it must match one of
// allowed_override_modes when those are set; and it is merged onto the filter's configured
// mode, not the route's (effectiveModeOverride: header and trailer modes left DEFAULT keep
// the configured ones, body modes always replace).
func (p *procSession) modeOverride(kind string, m *extprocv3.ProcessingResponse) {
	mo := m.GetModeOverride()
	if mo == nil {
		return
	}
	cfg := p.e.mode
	switch {
	case p.e.opts.DisallowModeOverride:
		p.resp.event("ext_proc: mode_override in %s ignored (allow_mode_override off)", kind)
		return
	case kind != PhaseRequestHeaders && kind != PhaseResponseHeaders:
		p.resp.event("ext_proc: mode_override in %s ignored (not a headers answer)", kind)
		return
	case cfg.GetRequestBodyMode() == extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED ||
		cfg.GetResponseBodyMode() == extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED:
		p.resp.event("ext_proc: mode_override in %s ignored (the filter's mode is FULL_DUPLEX_STREAMED)", kind)
		return
	}
	eff := proto.Clone(cfg).(*extprocfilterv3.ProcessingMode)
	if v := mo.GetRequestHeaderMode(); v != extprocfilterv3.ProcessingMode_DEFAULT {
		eff.RequestHeaderMode = v
	}
	if v := mo.GetResponseHeaderMode(); v != extprocfilterv3.ProcessingMode_DEFAULT {
		eff.ResponseHeaderMode = v
	}
	if v := mo.GetRequestTrailerMode(); v != extprocfilterv3.ProcessingMode_DEFAULT {
		eff.RequestTrailerMode = v
	}
	if v := mo.GetResponseTrailerMode(); v != extprocfilterv3.ProcessingMode_DEFAULT {
		eff.ResponseTrailerMode = v
	}
	eff.RequestBodyMode = mo.GetRequestBodyMode()
	eff.ResponseBodyMode = mo.GetResponseBodyMode()
	if allowed := p.e.opts.AllowedOverrideModes; len(allowed) > 0 {
		ok := false
		for _, a := range allowed {
			if eff.GetRequestBodyMode() == a.GetRequestBodyMode() && eff.GetRequestTrailerMode() == a.GetRequestTrailerMode() &&
				eff.GetResponseHeaderMode() == a.GetResponseHeaderMode() && eff.GetResponseBodyMode() == a.GetResponseBodyMode() &&
				eff.GetResponseTrailerMode() == a.GetResponseTrailerMode() {
				ok = true
				break
			}
		}
		if !ok {
			p.resp.event("ext_proc: mode_override in %s ignored (not in allowed_override_modes): %v", kind, eff)
			return
		}
	}
	p.mode = eff
	p.resp.event("ext_proc: mode_override applied in %s: %v", kind, eff)
}

func (p *procSession) timeout(kind string) *Response {
	p.complete = true
	p.endStream()
	if p.e.opts.FailureModeAllow {
		p.resp.event("ext_proc: message timeout in %s; failure_mode_allow: request continues unprocessed", kind)
		return nil
	}
	p.resp.event("ext_proc: message timeout in %s", kind)
	return localReply(p.resp, "ext_proc", http.StatusGatewayTimeout, "", "ext_proc_error_per-message_timeout_exceeded")
}

func (p *procSession) grpcError(err error) *Response {
	p.complete = true
	p.endStream()
	code := status.Code(err)
	if p.e.opts.FailureModeAllow {
		p.resp.event("ext_proc: gRPC error %v; failure_mode_allow: request continues unprocessed", err)
		return nil
	}
	p.resp.event("ext_proc: gRPC error %v", err)
	return localReply(p.resp, "ext_proc", http.StatusInternalServerError, "", "ext_proc_error_gRPC_error_"+strconv.Itoa(int(code)))
}

// mutationError is Envoy's answer to a rejected mutation: 500, stream closed.
func (p *procSession) mutationError(err error) *Response {
	p.complete = true
	p.endStream()
	p.resp.event("ext_proc: %v", err)
	return localReply(p.resp, "ext_proc", http.StatusInternalServerError, "", err.Error())
}

// immediate turns an ImmediateResponse into the local reply Envoy sends.
func (p *procSession) immediate(ir *extprocv3.ImmediateResponse) *Response {
	st := http.StatusOK
	if c := int(ir.GetStatus().GetCode()); c >= 200 {
		st = c
	} else if ir.GetStatus() != nil {
		p.resp.event("ext_proc: immediate response with invalid status %d replaced by 200", c)
	}
	hm := headerMap{{":status", strconv.Itoa(st)}}
	if len(ir.GetBody()) > 0 {
		hm.add("content-type", "text/plain")
	}
	hm.add("content-length", strconv.Itoa(len(ir.GetBody())))
	if err := applyHeaderMutation(ir.GetHeaders(), &hm, false, p.e.opts.MutationRules, p.ignored); err != nil {
		p.resp.event("ext_proc: immediate response headers rejected: %v", err)
	}
	hm.set("content-length", strconv.Itoa(len(ir.GetBody())))
	p.resp.Status = st
	p.resp.Header = hm.httpHeader()
	p.resp.Body = append([]byte(nil), ir.GetBody()...)
	p.resp.LocalReply = "ext_proc_immediate"
	p.resp.Details = ir.GetDetails()
	return p.resp
}

func (p *procSession) ignored(what string) {
	p.resp.event("ext_proc: header mutation ignored by mutation rules: %s", what)
}

// shouldRemoveContentLength mirrors ProcessorState::shouldRemoveContentLength: Envoy drops
// content-length when it cannot keep it correct (streamed modes, or BUFFERED without
// sending headers).
func shouldRemoveContentLength(body extprocfilterv3.ProcessingMode_BodySendMode, sendHeaders bool) bool {
	switch body {
	case extprocfilterv3.ProcessingMode_STREAMED, extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL,
		extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED:
		return true
	case extprocfilterv3.ProcessingMode_BUFFERED:
		return !sendHeaders
	}
	return false
}

// direction is the decode (request) or encode (response) half of the exchange.
type direction struct {
	headersPhase, bodyPhase string
	headers                 *headerMap
	body                    *[]byte
	sendHeaders             func(*extprocfilterv3.ProcessingMode) bool
	bodyMode                func(*extprocfilterv3.ProcessingMode) extprocfilterv3.ProcessingMode_BodySendMode
	setBodyNone             func(*extprocfilterv3.ProcessingMode)
	overLimit               func(*procSession) *Response
	decoding                bool
	// hasBody says whether a body follows the headers; load reads it whole (the
	// buffered paths).
	hasBody func() bool
	load    func() error
}

func (p *procSession) decode(x *exchange) *Response {
	local, _ := p.run(direction{
		headersPhase: PhaseRequestHeaders, bodyPhase: PhaseRequestBody,
		headers: &x.reqHeaders, body: &x.reqBody, decoding: true,
		hasBody: func() bool { return len(x.reqBody) > 0 },
		load:    func() error { return nil },
		sendHeaders: func(m *extprocfilterv3.ProcessingMode) bool {
			return m.GetRequestHeaderMode() != extprocfilterv3.ProcessingMode_SKIP
		},
		bodyMode:    (*extprocfilterv3.ProcessingMode).GetRequestBodyMode,
		setBodyNone: func(m *extprocfilterv3.ProcessingMode) { m.RequestBodyMode = extprocfilterv3.ProcessingMode_NONE },
		overLimit: func(p *procSession) *Response {
			p.resp.event("ext_proc: request body over the %d-byte buffer limit", p.e.opts.BufferLimit)
			return localReply(p.resp, "buffer_limit", http.StatusRequestEntityTooLarge, "Payload Too Large", "request_payload_too_large")
		},
	}, nil)
	return local
}

// encode processes the response. streamed means the response went downstream through
// the STREAMED or FULL_DUPLEX_STREAMED path, which wrote it itself (local is then set only
// when the client got a local reply or a reset).
func (p *procSession) encode(x *exchange) (local *Response, streamed bool) {
	d := direction{
		headersPhase: PhaseResponseHeaders, bodyPhase: PhaseResponseBody,
		headers: &x.respHeaders, body: &x.respBody,
		hasBody: func() bool { return x.upHasBody },
		load:    x.load,
		sendHeaders: func(m *extprocfilterv3.ProcessingMode) bool {
			return m.GetResponseHeaderMode() != extprocfilterv3.ProcessingMode_SKIP
		},
		bodyMode:    (*extprocfilterv3.ProcessingMode).GetResponseBodyMode,
		setBodyNone: func(m *extprocfilterv3.ProcessingMode) { m.ResponseBodyMode = extprocfilterv3.ProcessingMode_NONE },
		overLimit: func(p *procSession) *Response {
			p.resp.event("ext_proc: response body over the %d-byte buffer limit", p.e.opts.BufferLimit)
			return localReply(p.resp, "buffer_limit", http.StatusInternalServerError, "Internal Server Error", "response_payload_too_large")
		},
	}
	if !p.complete && x.upHasBody && p.mode.GetResponseBodyMode() == extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED {
		// Body chunks go out while the headers are still with the processor.
		return p.duplex(x, d)
	}
	return p.run(d, x)
}

// run processes one direction: headers phase, then (if the mode still asks for it and there
// is a body) the body phase. It returns a local reply, or nil to let the exchange go on;
// streamed reports that the response went out through the STREAMED path (x is the
// exchange for the response direction, nil for the request).
func (p *procSession) run(d direction, x *exchange) (local *Response, streamed bool) {
	hasBody := d.hasBody()
	if d.sendHeaders(p.mode) && !p.complete {
		req := &extprocv3.ProcessingRequest{}
		// Trailers follow even an empty body: the headers do not end the stream then.
		hh := &extprocv3.HttpHeaders{Headers: d.headers.toProto(), EndOfStream: !hasBody && (x == nil || len(x.upstreamTrailers()) == 0)}
		if d.decoding {
			req.Request = &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: hh}
		} else {
			req.Request = &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: hh}
		}
		m, local := p.roundTrip(d.headersPhase, req)
		if local != nil {
			return local, false
		}
		if m != nil {
			var cr *extprocv3.CommonResponse
			if d.decoding {
				cr = m.GetRequestHeaders().GetResponse()
			} else {
				cr = m.GetResponseHeaders().GetResponse()
			}
			if err := p.applyHeadersResponse(d, cr); err != nil {
				return p.mutationError(err), false
			}
		}
	}
	mode := d.bodyMode(p.mode)
	if p.complete || !hasBody || mode == extprocfilterv3.ProcessingMode_NONE {
		return p.responseTrailers(x), false
	}
	if x != nil && mode == extprocfilterv3.ProcessingMode_STREAMED {
		return p.streamed(x, d)
	}
	if mode != extprocfilterv3.ProcessingMode_BUFFERED {
		p.resp.event("ext_proc: body mode %v is emulated as one buffered chunk", mode)
	}
	if err := d.load(); err != nil {
		p.complete = true
		p.endStream()
		return localReply(p.resp, "upstream", http.StatusServiceUnavailable, "upstream reset", "upstream_reset_after_response_started"), false
	}
	if shouldRemoveContentLength(mode, d.sendHeaders(p.mode)) {
		d.headers.remove("content-length")
	}
	if len(*d.body) > p.e.opts.BufferLimit {
		p.complete = true
		p.endStream()
		return d.overLimit(p), false
	}
	// A body followed by trailers is sent whole but without end_of_stream: Envoy learns of
	// its end from the trailers (Filter::onTrailers sends the buffered data with
	// end_stream false; releases before it said true).
	hb := &extprocv3.HttpBody{Body: append([]byte(nil), *d.body...), EndOfStream: x == nil || len(x.upstreamTrailers()) == 0}
	req := &extprocv3.ProcessingRequest{}
	if d.decoding {
		req.Request = &extprocv3.ProcessingRequest_RequestBody{RequestBody: hb}
	} else {
		req.Request = &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: hb}
	}
	if !d.decoding {
		p.resp.BodyChunks++
	}
	m, local := p.roundTrip(d.bodyPhase, req)
	if local != nil || m == nil {
		return local, false
	}
	var cr *extprocv3.CommonResponse
	if d.decoding {
		cr = m.GetRequestBody().GetResponse()
	} else {
		cr = m.GetResponseBody().GetResponse()
	}
	if err := p.applyBodyResponse(d, cr, mode); err != nil {
		return p.mutationError(err), false
	}
	return p.responseTrailers(x), false
}

// responseTrailers is the trailers phase of a response that did not stream (Filter::
// onTrailers, ProcessorState::finalizeBodyResponse and handleTrailersResponse): with the
// response trailer mode SEND, the backend's trailers go to the processor after the body
// answer (at once when no body was processed), and the answer's header_mutation applies to
// them under the same rules as to headers. With SKIP, the default for trailers, they go
// downstream as they came. x is nil for the request direction (request trailers are not
// emulated).
func (p *procSession) responseTrailers(x *exchange) *Response {
	if x == nil || p.complete || p.mode.GetResponseTrailerMode() != extprocfilterv3.ProcessingMode_SEND {
		return nil
	}
	if err := x.load(); err != nil {
		p.complete = true
		p.endStream()
		return localReply(p.resp, "upstream", http.StatusServiceUnavailable, "upstream reset", "upstream_reset_after_response_started")
	}
	tr := x.upstreamTrailers()
	if len(tr) == 0 {
		return nil
	}
	m, local := p.roundTrip(PhaseResponseTrailers, trailersRequest(tr))
	if local != nil {
		return local
	}
	x.respTrailers, x.trailersDone = tr, true
	if m == nil {
		return nil
	}
	if hm := m.GetResponseTrailers().GetHeaderMutation(); hm != nil {
		if err := applyHeaderMutation(hm, &x.respTrailers, false, p.e.opts.MutationRules, p.ignored); err != nil {
			return p.mutationError(err)
		}
	}
	return nil
}

func trailersRequest(tr headerMap) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{
		ResponseTrailers: &extprocv3.HttpTrailers{Trailers: tr.toProto()}}}
}

// applyHeadersResponse follows ProcessorState::handleHeadersResponse.
func (p *procSession) applyHeadersResponse(d direction, cr *extprocv3.CommonResponse) error {
	replacing := cr.GetStatus() == extprocv3.CommonResponse_CONTINUE_AND_REPLACE
	if cr.GetHeaderMutation() != nil {
		if err := applyHeaderMutation(cr.GetHeaderMutation(), d.headers, replacing, p.e.opts.MutationRules, p.ignored); err != nil {
			return err
		}
		if shouldRemoveContentLength(d.bodyMode(p.mode), d.sendHeaders(p.mode)) {
			d.headers.remove("content-length")
		}
	}
	p.routeCache(d, cr)
	if replacing {
		if bm := cr.GetBodyMutation(); bm != nil {
			// Envoy removes content-length here: the processor is not expected to fix it.
			d.headers.remove("content-length")
			// The backend's body that follows is drained (onData, bodyReplaced).
			if d.load != nil {
				_ = d.load()
			}
			applyBodyMutation(bm, d.body)
		}
		// After CONTINUE_AND_REPLACE nothing more of this message goes to the processor.
		d.setBodyNone(p.mode)
	} else if cr.GetBodyMutation() != nil {
		p.resp.event("ext_proc: body_mutation in a %s response with status CONTINUE is ignored", d.headersPhase)
	}
	return nil
}

// applyBodyResponse follows ProcessorState::handleBodyResponse for the BUFFERED state.
func (p *procSession) applyBodyResponse(d direction, cr *extprocv3.CommonResponse, mode extprocfilterv3.ProcessingMode_BodySendMode) error {
	if cr.GetHeaderMutation() != nil {
		if err := applyHeaderMutation(cr.GetHeaderMutation(), d.headers, false, p.e.opts.MutationRules, p.ignored); err != nil {
			return err
		}
	}
	if bm := cr.GetBodyMutation(); bm != nil {
		if mode == extprocfilterv3.ProcessingMode_BUFFERED {
			if cl, ok := d.headers.get("content-length"); ok {
				// Envoy compares content-length with body_mutation.body() — also for
				// clear_body, whose body() is empty — and fails the request on mismatch.
				if n, err := strconv.ParseUint(cl, 10, 64); err == nil && n != uint64(len(bm.GetBody())) {
					return fmt.Errorf("%w: mismatch between content length (%d) and the length of the mutated body (%d)", errInvalidMutation, n, len(bm.GetBody()))
				}
			}
		}
		applyBodyMutation(bm, d.body)
	}
	p.routeCache(d, cr)
	return nil
}

func (p *procSession) routeCache(d direction, cr *extprocv3.CommonResponse) {
	if !cr.GetClearRouteCache() || !d.decoding {
		return
	}
	if cr.GetHeaderMutation() == nil {
		p.resp.event("ext_proc: clear_route_cache ignored: no header mutation in the response")
		return
	}
	p.resp.event("ext_proc: route cache cleared")
}

func applyBodyMutation(bm *extprocv3.BodyMutation, body *[]byte) {
	switch m := bm.GetMutation().(type) {
	case *extprocv3.BodyMutation_Body:
		*body = append([]byte(nil), m.Body...)
	case *extprocv3.BodyMutation_ClearBody:
		if m.ClearBody {
			*body = nil
		}
	}
}
