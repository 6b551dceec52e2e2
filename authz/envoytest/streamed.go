package envoytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/status"
)

// The response body in STREAMED and FULL_DUPLEX_STREAMED modes, read from Envoy's
// ext_proc filter (ext_proc.cc: onData, handleDataStreamedModeBase, onReceiveMessage,
// onGrpcError, onGrpcCloseWithStatus, onMessageTimeout, failureModeAllow;
// processor_state.cc: handleHeadersResponse, handleStreamedBodyCallback,
// handleStreamedBodyResponse, handleDuplexStreamedBodyResponse, onStartProcessorCall,
// clearAsyncState, queueOverHighLimit/queueBelowLowLimit) and from the HTTP filter
// manager (FilterManager::sendLocalReply: once response headers went downstream, a local
// reply is a stream reset).

// upChunk is one data callback from the upstream codec.
type upChunk struct {
	data []byte
	end  bool
	err  error
}

// streamer moves chunks between the backend, the processor and the client without
// letting a blocked gRPC Send stall the answers: Envoy's side stream is asynchronous.
type streamer struct {
	up     chan upChunk
	out    chan *extprocv3.ProcessingRequest
	cancel context.CancelFunc
}

func (p *procSession) newStreamer(x *exchange) *streamer {
	ctx, cancel := context.WithCancel(context.Background())
	s := &streamer{up: make(chan upChunk), out: make(chan *extprocv3.ProcessingRequest, 64), cancel: cancel}
	size := p.e.opts.StreamChunkSize
	go func() {
		for {
			buf := make([]byte, size)
			n, err := io.ReadFull(x.upBody, buf)
			c := upChunk{data: buf[:n]}
			switch {
			case err == nil || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
				if err == nil {
					// The codec knows the body ended when nothing follows: the last
					// non-empty chunk carries end_stream.
					if _, perr := x.upBody.Peek(1); perr != nil {
						if !errors.Is(perr, io.EOF) {
							c.err = perr
						}
						c.end = true
					}
				} else {
					c.end = true
				}
			default:
				c.err = err
			}
			select {
			case s.up <- c:
			case <-ctx.Done():
				return
			}
			if c.end || c.err != nil {
				return
			}
		}
	}()
	go func() {
		for {
			select {
			case req := <-s.out:
				// A failed Send means the stream broke; the reason comes through Recv.
				p.sendMu.Lock()
				_ = p.stream.Send(req)
				p.sendMu.Unlock()
			case <-ctx.Done():
				return
			}
		}
	}()
	return s
}

func (s *streamer) stop() { s.cancel() }

func responseBodyRequest(data []byte, end bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: data, EndOfStream: end}}}
}

// sendHeadersDownstream lets the response headers go to the client: from here on a
// failure can only reset the stream. Envoy drops content-length in the streamed modes
// (encodeHeaders + shouldRemoveContentLength), whatever the processor set.
func (p *procSession) sendHeadersDownstream(x *exchange, d direction) {
	d.headers.remove("content-length")
	x.downstreamHeaders(*d.headers)
	x.headersSent = true
}

// reset is a failure after the headers went out: FilterManager::sendLocalReply can only
// reset the stream. What the client already has stays as it is.
func (p *procSession) reset(details string) *Response {
	p.complete = true
	p.endStream()
	p.resp.Reset = true
	p.resp.Details = details
	p.resp.event("downstream stream reset after the response headers were sent: %s", details)
	return p.resp
}

// failLocal is Envoy's failure path (immediate response / status_on_error) at a point where
// the headers may or may not have gone downstream.
func (p *procSession) failLocal(x *exchange, status int, details string) (*Response, bool) {
	if x.headersSent {
		return p.reset(details), true
	}
	p.complete = true
	p.endStream()
	return localReply(p.resp, "ext_proc", status, "", details), false
}

// passRest is the "continue unprocessed" path (a spurious message, a closed stream, a
// failure_mode_allow fallback): the chunks Envoy still holds are injected as they came
// (ProcessorState::clearAsyncState) and the rest of the body flows past the filter.
func (p *procSession) passRest(x *exchange, d direction, s *streamer, held [][]byte, upDone bool) (*Response, bool) {
	p.complete = true
	p.endStream()
	if !x.headersSent {
		p.sendHeadersDownstream(x, d)
	}
	var n int64
	for _, b := range held {
		x.writeBody(b)
		n += int64(len(b))
	}
	for !upDone {
		c := <-s.up
		if c.err != nil {
			return p.reset("upstream_reset_after_response_started"), true
		}
		x.writeBody(c.data)
		n += int64(len(c.data))
		upDone = c.end
	}
	p.resp.event("ext_proc: %d body bytes went downstream UNPROCESSED after the processor was dropped", n)
	x.sendTrailers()
	return nil, true
}

// spurious follows onReceiveMessage's FailedPrecondition branch: by default the processor
// is dropped and the rest passes unprocessed; with SpuriousIsError (Envoy's
// ext_proc_fail_close_spurious_resp, failure_mode_allow off) it is the error path.
func (p *procSession) spurious(x *exchange, d direction, s *streamer, held [][]byte, upDone bool, why string) (*Response, bool) {
	p.resp.event("ext_proc: spurious message: %s", why)
	if p.e.opts.SpuriousIsError {
		return p.failLocal(x, http.StatusInternalServerError, "ext_proc_error_spurious_message")
	}
	return p.passRest(x, d, s, held, upDone)
}

type queuedChunk struct {
	data []byte
	end  bool
}

// streamed is the STREAMED response body. The headers answer has come back, so the
// headers go downstream (handleHeadersResponse continues the chain); each data callback is
// sent at once and queued (handleDataStreamedModeBase), chunks are pipelined, each body
// answer pops the oldest queued chunk, replaces it with body_mutation (clear_body or an
// empty body drops it) and injects it (handleStreamedBodyResponse); the chunk with
// end_stream ends the response. Above the buffer limit of queued bytes Envoy raises a
// watermark (stops reading the backend) until the queue drains below half of it. The
// message timer is armed at each send and stopped at each answer (onStartProcessorCall,
// onFinishProcessorCall).
func (p *procSession) streamed(x *exchange, d direction) (*Response, bool) {
	p.sendHeadersDownstream(x, d)
	s := p.newStreamer(x)
	defer s.stop()
	limit := p.e.opts.BufferLimit
	var (
		queue       []queuedChunk
		queuedBytes int
		watermark   bool
		pending     *queuedChunk
		next        *extprocv3.ProcessingRequest
		upDone      bool
		timer       = time.NewTimer(time.Hour)
		timerC      <-chan time.Time
	)
	timer.Stop()
	defer timer.Stop()
	held := func() [][]byte {
		out := make([][]byte, 0, len(queue)+1)
		for _, q := range queue {
			out = append(out, q.data)
		}
		if pending != nil {
			out = append(out, pending.data)
		}
		return out
	}
	for {
		var upc <-chan upChunk
		if !upDone && !watermark && pending == nil {
			upc = s.up
		}
		var sendq chan<- *extprocv3.ProcessingRequest
		if pending != nil {
			sendq = s.out
		}
		select {
		case c := <-upc:
			if c.err != nil {
				return p.reset("upstream_reset_after_response_started"), true
			}
			upDone = c.end
			if len(c.data) == 0 && !c.end {
				continue
			}
			pending = &queuedChunk{data: c.data, end: c.end}
			// With trailers the codec never says end_stream with data: the trailers
			// end the body (onData with end_stream false, then onTrailers).
			next = responseBodyRequest(c.data, c.end && len(x.upstreamTrailers()) == 0)
			if err := p.prepare(PhaseResponseBody, next); err != nil {
				return p.failLocal(x, http.StatusInternalServerError, "ext_proc_error_gRPC_error_"+strconv.Itoa(int(status.Code(err))))
			}
		case sendq <- next:
			queue = append(queue, *pending)
			queuedBytes += len(pending.data)
			pending = nil
			p.resp.BodyChunks++
			if queuedBytes > limit && !watermark {
				watermark = true
				p.resp.event("ext_proc: %d bytes queued for the processor, over the %d-byte buffer limit: watermark raised, backend reads paused", queuedBytes, limit)
			}
			timer.Reset(p.e.opts.MessageTimeout)
			timerC = timer.C
		case <-timerC:
			// onMessageTimeout: failure_mode_allow drops the processor, else 504 — a
			// reset here, the headers being gone.
			p.resp.event("ext_proc: message timeout in %s", PhaseResponseBody)
			if p.e.opts.FailureModeAllow {
				return p.passRest(x, d, s, held(), upDone)
			}
			return p.failLocal(x, http.StatusGatewayTimeout, "ext_proc_error_per-message_timeout_exceeded")
		case r := <-p.recv:
			timer.Stop()
			timerC = nil
			if r.err != nil {
				if errors.Is(r.err, io.EOF) {
					p.resp.event("ext_proc: processor closed the stream while %d chunks were pending; the rest continues unprocessed", len(queue))
					return p.passRest(x, d, s, held(), upDone)
				}
				if p.e.opts.FailureModeAllow {
					p.resp.event("ext_proc: gRPC error %v; failure_mode_allow: the rest continues unprocessed", r.err)
					return p.passRest(x, d, s, held(), upDone)
				}
				p.resp.event("ext_proc: gRPC error %v", r.err)
				return p.failLocal(x, http.StatusInternalServerError, "ext_proc_error_gRPC_error_"+strconv.Itoa(int(status.Code(r.err))))
			}
			m := r.m
			if m.GetOverrideMessageTimeout() != nil {
				p.resp.event("ext_proc: override_message_timeout received (not emulated)")
				continue
			}
			p.modeOverride(PhaseResponseBody, m)
			if ir := m.GetImmediateResponse(); ir != nil {
				p.resp.event("ext_proc: immediate response (status %d) after the response headers went downstream", ir.GetStatus().GetCode())
				return p.failLocal(x, int(ir.GetStatus().GetCode()), ir.GetDetails())
			}
			br := m.GetResponseBody()
			switch {
			case br == nil:
				return p.spurious(x, d, s, held(), upDone, fmt.Sprintf("%s answer while response body chunks were pending", responseKind(m)))
			case len(queue) == 0:
				return p.spurious(x, d, s, held(), upDone, "response_body answer with no chunk pending")
			case br.GetResponse().GetBodyMutation().GetStreamedResponse() != nil:
				return p.spurious(x, d, s, held(), upDone, "streamed_response is received while body_mode_ is not FULL_DUPLEX_STREAMED")
			}
			cr := br.GetResponse()
			if cr.GetHeaderMutation() != nil {
				p.resp.event("ext_proc: header_mutation in a streamed body answer ignored (headers already sent)")
			}
			q := queue[0]
			queue = queue[1:]
			queuedBytes -= len(q.data)
			out := q.data
			if bm := cr.GetBodyMutation(); bm != nil {
				applyBodyMutation(bm, &out)
			}
			x.writeBody(out)
			if watermark && queuedBytes < limit/2 {
				watermark = false
			}
			if q.end {
				return p.streamedTrailers(x, s), true
			}
		}
	}
}

// duplex is the FULL_DUPLEX_STREAMED response body (handleDataFullDuplexStreamedMode):
// chunks go to the processor as they arrive, even while the headers answer is awaited, and
// Envoy keeps no copy (no queue, no watermark) and runs no message timer
// (onStartProcessorCall). The headers answer must come first and releases the headers
// downstream (until then the processor can still answer with a local reply); body answers
// must carry body_mutation.streamed_response, whose bytes are injected as they come, any
// number of them, until one says end_of_stream (handleDuplexStreamedBodyResponse). Once a
// body chunk was received, failure_mode_allow no longer applies (Filter::failureModeAllow).
func (p *procSession) duplex(x *exchange, d direction) (*Response, bool) {
	s := p.newStreamer(x)
	defer s.stop()
	headersPending := false
	if d.sendHeaders(p.mode) {
		req := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extprocv3.HttpHeaders{Headers: d.headers.toProto()}}}
		if err := p.prepare(PhaseResponseHeaders, req); err != nil {
			return p.failLocal(x, http.StatusInternalServerError, "ext_proc_error_gRPC_error_"+strconv.Itoa(int(status.Code(err))))
		}
		s.out <- req
		headersPending = true
	} else {
		p.sendHeadersDownstream(x, d)
	}
	var (
		next    *extprocv3.ProcessingRequest
		hasNext bool
		upDone  bool
		gotBody bool
		// afterNext is the trailers message, sent right after the last chunk;
		// trailersPending: the trailers are with the processor.
		afterNext       *extprocv3.ProcessingRequest
		trailersPending bool
	)
	allow := func() bool { return p.e.opts.FailureModeAllow && !gotBody }
	for {
		var upc <-chan upChunk
		if !upDone && !hasNext {
			upc = s.up
		}
		var sendq chan<- *extprocv3.ProcessingRequest
		if hasNext {
			sendq = s.out
		}
		select {
		case c := <-upc:
			if c.err != nil {
				if x.headersSent {
					return p.reset("upstream_reset_after_response_started"), true
				}
				p.complete = true
				p.endStream()
				return localReply(p.resp, "upstream", http.StatusServiceUnavailable, "upstream reset", "upstream_reset_before_response_started"), false
			}
			gotBody = true
			upDone = c.end
			if len(c.data) == 0 && !c.end {
				continue
			}
			hasNext = true
			var tr headerMap
			if c.end {
				// Known only at the body's end; before it the reader
				// goroutine may still be filling them in.
				tr = x.upstreamTrailers()
			}
			next = responseBodyRequest(c.data, c.end && len(tr) == 0)
			if err := p.prepare(PhaseResponseBody, next); err != nil {
				return p.failLocal(x, http.StatusInternalServerError, "ext_proc_error_gRPC_error_"+strconv.Itoa(int(status.Code(err))))
			}
			if c.end && len(tr) > 0 {
				// onTrailers does not wait for pending answers in this mode: with
				// SEND the trailers follow the last chunk at once. With SKIP they
				// wait for the processor's end of the body, which it can only
				// guess: it is never told that the body ended.
				x.respTrailers, x.trailersDone = tr, true
				if p.mode.GetResponseTrailerMode() == extprocfilterv3.ProcessingMode_SEND {
					afterNext = trailersRequest(tr)
					trailersPending = true
				} else {
					p.resp.event("ext_proc: FULL_DUPLEX_STREAMED answer ends with trailers under trailer mode SKIP: the processor is not told that the body ended")
				}
			}
		case sendq <- next:
			hasNext = false
			if next.GetResponseBody() != nil {
				p.resp.BodyChunks++
			}
			if afterNext != nil {
				// The trailers, right behind the last chunk.
				if err := p.prepare(PhaseResponseTrailers, afterNext); err != nil {
					return p.failLocal(x, http.StatusInternalServerError, "ext_proc_error_gRPC_error_"+strconv.Itoa(int(status.Code(err))))
				}
				next, afterNext, hasNext = afterNext, nil, true
			}
		case r := <-p.recv:
			if r.err != nil {
				if errors.Is(r.err, io.EOF) {
					// onGrpcCloseWithStatus: processing complete, nothing queued to give
					// back: what Envoy drained into the processor is gone.
					p.resp.event("ext_proc: processor closed the stream before end_of_stream in FULL_DUPLEX_STREAMED; the body it was sent is lost and the response cannot complete")
					if !x.headersSent {
						p.sendHeadersDownstream(x, d)
					}
					return p.reset("ext_proc_stream_closed_mid_body"), true
				}
				if allow() {
					p.resp.event("ext_proc: gRPC error %v; failure_mode_allow: continues unprocessed", r.err)
					return p.passRest(x, d, s, nil, upDone)
				}
				p.resp.event("ext_proc: gRPC error %v", r.err)
				return p.failLocal(x, http.StatusInternalServerError, "ext_proc_error_gRPC_error_"+strconv.Itoa(int(status.Code(r.err))))
			}
			m := r.m
			if m.GetOverrideMessageTimeout() != nil {
				p.resp.event("ext_proc: override_message_timeout ignored (no message timer in FULL_DUPLEX_STREAMED)")
				continue
			}
			kind := PhaseResponseBody
			if headersPending {
				kind = PhaseResponseHeaders
			}
			p.modeOverride(kind, m)
			if ir := m.GetImmediateResponse(); ir != nil {
				if x.headersSent {
					p.resp.event("ext_proc: immediate response (status %d) after the response headers went downstream", ir.GetStatus().GetCode())
					return p.reset(ir.GetDetails()), true
				}
				p.complete = true
				p.endStream()
				return p.immediate(ir), false
			}
			if hr := m.GetResponseHeaders(); hr != nil {
				if !headersPending {
					return p.duplexSpurious(x, d, s, upDone, "response_headers answer when none is pending")
				}
				if err := p.applyHeadersResponse(d, hr.GetResponse()); err != nil {
					return p.failLocal(x, http.StatusInternalServerError, err.Error())
				}
				headersPending = false
				p.sendHeadersDownstream(x, d)
				continue
			}
			if tr := m.GetResponseTrailers(); tr != nil && !headersPending {
				// handleTrailersResponse: in this mode the answer may come while
				// body answers are still due; the response ends with it.
				if !trailersPending {
					return p.duplexSpurious(x, d, s, upDone, "response_trailers answer when no trailers were sent")
				}
				if hm := tr.GetHeaderMutation(); hm != nil {
					if err := applyHeaderMutation(hm, &x.respTrailers, false, p.e.opts.MutationRules, p.ignored); err != nil {
						return p.reset(err.Error()), true
					}
				}
				x.sendTrailers()
				return nil, true
			}
			br := m.GetResponseBody()
			switch {
			case br == nil:
				return p.duplexSpurious(x, d, s, upDone, responseKind(m)+" answer in FULL_DUPLEX_STREAMED")
			case headersPending:
				return p.duplexSpurious(x, d, s, upDone, "response_body answer before the response_headers answer")
			case br.GetResponse().GetBodyMutation().GetStreamedResponse() == nil:
				return p.duplexSpurious(x, d, s, upDone, "Normal body mutation response is received while body_mode_ is FULL_DUPLEX_STREAMED")
			}
			if br.GetResponse().GetHeaderMutation() != nil {
				p.resp.event("ext_proc: header_mutation in a streamed body answer ignored (headers already sent)")
			}
			sr := br.GetResponse().GetBodyMutation().GetStreamedResponse()
			x.writeBody(sr.GetBody())
			if sr.GetEndOfStream() {
				if !upDone {
					p.resp.event("ext_proc: processor ended the body before the backend did; later backend bytes are not sent")
				}
				if trailersPending {
					// Not read from Envoy's sources: the stream's end goes downstream
					// with the data, so no trailers can follow it.
					p.resp.event("ext_proc: processor ended the body with end_of_stream while the trailers were with it: trailers dropped")
					x.respTrailers = nil
				}
				x.sendTrailers()
				return nil, true
			}
		}
	}
}

// duplexSpurious: in FULL_DUPLEX_STREAMED a spurious message finds nothing queued to give
// back, so even the fail-open path loses the chunks already sent.
func (p *procSession) duplexSpurious(x *exchange, d direction, s *streamer, upDone bool, why string) (*Response, bool) {
	if !p.e.opts.SpuriousIsError {
		p.resp.event("ext_proc: the body chunks already sent to the processor are lost")
	}
	return p.spurious(x, d, s, nil, upDone, why)
}

// streamedTrailers ends a STREAMED response once its last chunk was answered. With
// trailers and the trailer mode SEND they go to the processor now (finalizeBodyResponse:
// the queue is empty), under the message timer, and its answer may mutate them; the
// headers being gone, a failure resets the stream. A processor that is dropped (a closed
// stream, failure_mode_allow, a spurious answer by default) lets them through as they came.
func (p *procSession) streamedTrailers(x *exchange, s *streamer) *Response {
	tr := x.upstreamTrailers()
	x.respTrailers, x.trailersDone = tr, true
	if len(tr) == 0 || p.complete || p.mode.GetResponseTrailerMode() != extprocfilterv3.ProcessingMode_SEND {
		x.sendTrailers()
		return nil
	}
	req := trailersRequest(tr)
	if err := p.prepare(PhaseResponseTrailers, req); err != nil {
		return p.reset("ext_proc_error_gRPC_error_" + strconv.Itoa(int(status.Code(err))))
	}
	s.out <- req
	timer := time.NewTimer(p.e.opts.MessageTimeout)
	defer timer.Stop()
	dropped := func(why string) *Response {
		p.resp.event("ext_proc: %s; the trailers go downstream unprocessed", why)
		p.complete = true
		p.endStream()
		x.sendTrailers()
		return nil
	}
	select {
	case <-timer.C:
		p.resp.event("ext_proc: message timeout in %s", PhaseResponseTrailers)
		if p.e.opts.FailureModeAllow {
			return dropped("failure_mode_allow")
		}
		return p.reset("ext_proc_error_per-message_timeout_exceeded")
	case r := <-p.recv:
		if r.err != nil {
			if errors.Is(r.err, io.EOF) {
				return dropped("processor closed the stream while the trailers were pending")
			}
			if p.e.opts.FailureModeAllow {
				return dropped(fmt.Sprintf("gRPC error %v, failure_mode_allow", r.err))
			}
			return p.reset("ext_proc_error_gRPC_error_" + strconv.Itoa(int(status.Code(r.err))))
		}
		m := r.m
		if ir := m.GetImmediateResponse(); ir != nil {
			p.resp.event("ext_proc: immediate response (status %d) after the response headers went downstream", ir.GetStatus().GetCode())
			return p.reset(ir.GetDetails())
		}
		tr := m.GetResponseTrailers()
		if tr == nil {
			p.resp.event("ext_proc: spurious message: %s answer while the trailers were pending", responseKind(m))
			if p.e.opts.SpuriousIsError {
				return p.reset("ext_proc_error_spurious_message")
			}
			return dropped("spurious message")
		}
		if hm := tr.GetHeaderMutation(); hm != nil {
			if err := applyHeaderMutation(hm, &x.respTrailers, false, p.e.opts.MutationRules, p.ignored); err != nil {
				return p.reset(err.Error())
			}
		}
		x.sendTrailers()
		return nil
	}
}
