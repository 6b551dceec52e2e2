package envoytest

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// redacted is what the fake processor turns contactJSON into.
const redacted = `{"id":"c-1","first_name":"Alice"}`

// onPhase builds a handler from per-phase answers; phases without an entry pass through.
func onPhase(answers map[string]func(*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse) func(context.Context, *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
	return func(ctx context.Context, req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
		if f, ok := answers[phaseOf(req)]; ok {
			return f(req)
		}
		return passThrough(ctx, req)
	}
}

func phaseOf(req *extprocv3.ProcessingRequest) string {
	switch req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return PhaseRequestHeaders
	case *extprocv3.ProcessingRequest_RequestBody:
		return PhaseRequestBody
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return PhaseResponseHeaders
	case *extprocv3.ProcessingRequest_ResponseBody:
		return PhaseResponseBody
	}
	return "other"
}

func runProc(t *testing.T, p *fakeProc, opts Options) (*Response, *upstreamRecorder) {
	t.Helper()
	up := &upstreamRecorder{}
	opts.Proc = procConn(t, p)
	opts.Upstream = up
	if opts.MessageTimeout == 0 {
		opts.MessageTimeout = testTimeout
	}
	e := New(opts)
	defer e.Close()
	resp, err := e.Do(context.Background(), get(t, "/api/contacts/c-1", map[string]string{"x-gdpr-roles": "agent"}))
	if err != nil {
		t.Fatal(err)
	}
	return resp, up
}

func TestExtProcPassThroughSendsThePhasesAndClosesTheStream(t *testing.T) {
	p := &fakeProc{handle: passThrough}
	resp, _ := runProc(t, p, Options{})
	if resp.Status != 200 || string(resp.Body) != contactJSON {
		t.Fatalf("status %d body %q", resp.Status, resp.Body)
	}
	want := []string{PhaseRequestHeaders, PhaseResponseHeaders, PhaseResponseBody}
	if strings.Join(resp.Phases, ",") != strings.Join(want, ",") {
		t.Fatalf("phases %v, want %v", resp.Phases, want)
	}
	got := p.received()
	rh := got[0].GetRequestHeaders()
	if !rh.GetEndOfStream() {
		t.Error("GET request headers must carry end_of_stream")
	}
	keys := map[string]string{}
	for _, h := range rh.GetHeaders().GetHeaders() {
		if h.GetValue() != "" {
			t.Errorf("header %s uses value, Envoy sends raw_value", h.GetKey())
		}
		keys[h.GetKey()] = string(h.GetRawValue())
	}
	if keys[":path"] != "/api/contacts/c-1" || keys[":method"] != "GET" || keys["x-gdpr-roles"] != "agent" {
		t.Errorf("request headers %v", keys)
	}
	resHdr := map[string]string{}
	for _, h := range got[1].GetResponseHeaders().GetHeaders().GetHeaders() {
		resHdr[h.GetKey()] = string(h.GetRawValue())
	}
	if resHdr[":status"] != "200" || resHdr["content-length"] != strconv.Itoa(len(contactJSON)) {
		t.Errorf("response headers %v", resHdr)
	}
	if b := got[2].GetResponseBody(); string(b.GetBody()) != contactJSON || !b.GetEndOfStream() {
		t.Errorf("response body %q eos=%v", b.GetBody(), b.GetEndOfStream())
	}
	deadline := time.Now().Add(time.Second)
	for {
		p.mu.Lock()
		eof := p.sawEOF
		p.mu.Unlock()
		if eof || time.Now().After(deadline) {
			if !eof {
				t.Error("processor never saw the half-close")
			}
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestExtProcHeaderMutations(t *testing.T) {
	tests := []struct {
		name     string
		mutation *extprocv3.HeaderMutation
		rules    MutationRules
		check    func(t *testing.T, r *Response)
	}{
		{
			name: "set and remove reach the upstream",
			mutation: &extprocv3.HeaderMutation{
				SetHeaders:    []*corev3.HeaderValueOption{setHeader("x-gdpr-mask", "7")},
				RemoveHeaders: []string{"x-gdpr-roles"},
			},
			check: func(t *testing.T, r *Response) {
				if r.Upstream.Header.Get("x-gdpr-mask") != "7" || r.Upstream.Header.Get("x-gdpr-roles") != "" {
					t.Errorf("upstream headers %v", r.Upstream.Header)
				}
			},
		},
		{
			name: "host and pseudo-header changes are ignored by default",
			mutation: &extprocv3.HeaderMutation{
				SetHeaders:    []*corev3.HeaderValueOption{setHeader(":authority", "evil.test"), setHeader("x-envoy-foo", "1")},
				RemoveHeaders: []string{":path", "host"},
			},
			check: func(t *testing.T, r *Response) {
				if r.Status != 200 || r.Upstream.Host != "crm.test" || r.Upstream.Header.Get("x-envoy-foo") != "" {
					t.Errorf("status %d host %q", r.Status, r.Upstream.Host)
				}
				for _, w := range []string{"set :authority", "set x-envoy-foo", "remove :path", "remove host"} {
					if !hasEvent(r, w) {
						t.Errorf("no event for %q in %q", w, r.Events)
					}
				}
			},
		},
		{
			name:     "disallow_is_error turns an ignored change into a 500",
			mutation: &extprocv3.HeaderMutation{RemoveHeaders: []string{":path"}},
			rules:    MutationRules{DisallowIsError: true},
			check: func(t *testing.T, r *Response) {
				if r.Status != 500 || r.Upstream != nil {
					t.Errorf("status %d upstream %v", r.Status, r.Upstream)
				}
			},
		},
		{
			name: "value and raw_value together is a 500",
			mutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				{Header: &corev3.HeaderValue{Key: "x-a", Value: "1", RawValue: []byte("1")}},
			}},
			check: func(t *testing.T, r *Response) {
				if r.Status != 500 || !strings.Contains(r.Details, "raw_value") {
					t.Errorf("status %d details %q", r.Status, r.Details)
				}
			},
		},
		{
			name: "value instead of raw_value sets an empty header",
			mutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				{Header: &corev3.HeaderValue{Key: "x-gdpr-mask", Value: "7"}},
			}},
			check: func(t *testing.T, r *Response) {
				if v := r.Upstream.Header.Values("x-gdpr-mask"); len(v) != 1 || v[0] != "" || !hasEvent(r, "raw_value") {
					t.Errorf("x-gdpr-mask %q events %q", v, r.Events)
				}
			},
		},
		{
			name: ":path may be changed",
			mutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				setHeader(":path", "/api/contacts/c-2"),
			}},
			check: func(t *testing.T, r *Response) {
				if r.Upstream.Path != "/api/contacts/c-2" {
					t.Errorf("upstream path %q", r.Upstream.Path)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &fakeProc{handle: onPhase(map[string]func(*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse{
				PhaseRequestHeaders: func(req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
					return []*extprocv3.ProcessingResponse{headersResp(req, &extprocv3.CommonResponse{HeaderMutation: tc.mutation})}
				},
			})}
			resp, _ := runProc(t, p, Options{MutationRules: tc.rules})
			tc.check(t, resp)
		})
	}
}

// TestExtProcBodyMutationAndContentLength pins Envoy's content-length rule for BUFFERED
// body responses (processor_state.cc handleBodyResponse).
func TestExtProcBodyMutationAndContentLength(t *testing.T) {
	rmCL := &extprocv3.HeaderMutation{RemoveHeaders: []string{"content-length"}}
	tests := []struct {
		name        string
		headers     *extprocv3.CommonResponse
		body        *extprocv3.CommonResponse
		wantStatus  int
		wantBody    string
		wantCL      string
		wantPhases  int
		wantDetails string
	}{
		{
			name:        "stale content-length makes Envoy answer 500",
			body:        &extprocv3.CommonResponse{BodyMutation: newBody(redacted)},
			wantStatus:  500,
			wantPhases:  3,
			wantDetails: "mismatch between content length",
		},
		{
			name:       "content-length removed in the headers response",
			headers:    &extprocv3.CommonResponse{HeaderMutation: rmCL},
			body:       &extprocv3.CommonResponse{BodyMutation: newBody(redacted)},
			wantStatus: 200, wantBody: redacted, wantPhases: 3,
		},
		{
			name:       "content-length removed in the body response",
			body:       &extprocv3.CommonResponse{HeaderMutation: rmCL, BodyMutation: newBody(redacted)},
			wantStatus: 200, wantBody: redacted, wantPhases: 3,
		},
		{
			name: "content-length set to the new length in the body response",
			body: &extprocv3.CommonResponse{
				HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("content-length", strconv.Itoa(len(redacted)))}},
				BodyMutation:   newBody(redacted),
			},
			wantStatus: 200, wantBody: redacted, wantCL: strconv.Itoa(len(redacted)), wantPhases: 3,
		},
		{
			name:        "clear_body with content-length is a mismatch too",
			body:        &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_ClearBody{ClearBody: true}}},
			wantStatus:  500,
			wantPhases:  3,
			wantDetails: "mismatch",
		},
		{
			name: "CONTINUE_AND_REPLACE in response headers replaces the body and skips the body phase",
			headers: &extprocv3.CommonResponse{
				Status:       extprocv3.CommonResponse_CONTINUE_AND_REPLACE,
				BodyMutation: newBody(redacted),
			},
			wantStatus: 200, wantBody: redacted, wantPhases: 2,
		},
		{
			name:       "body_mutation in a CONTINUE headers response is ignored",
			headers:    &extprocv3.CommonResponse{BodyMutation: newBody(redacted)},
			wantStatus: 200, wantBody: contactJSON, wantCL: strconv.Itoa(len(contactJSON)), wantPhases: 3,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			answers := map[string]func(*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse{}
			if tc.headers != nil {
				answers[PhaseResponseHeaders] = func(req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
					return []*extprocv3.ProcessingResponse{headersResp(req, tc.headers)}
				}
			}
			if tc.body != nil {
				answers[PhaseResponseBody] = func(req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
					return []*extprocv3.ProcessingResponse{bodyResp(req, tc.body)}
				}
			}
			resp, _ := runProc(t, &fakeProc{handle: onPhase(answers)}, Options{})
			if resp.Status != tc.wantStatus {
				t.Fatalf("status %d, want %d (details %q events %q)", resp.Status, tc.wantStatus, resp.Details, resp.Events)
			}
			if len(resp.Phases) != tc.wantPhases {
				t.Errorf("phases %v, want %d", resp.Phases, tc.wantPhases)
			}
			if tc.wantDetails != "" && !strings.Contains(resp.Details, tc.wantDetails) {
				t.Errorf("details %q, want %q", resp.Details, tc.wantDetails)
			}
			if tc.wantStatus != 200 {
				return
			}
			if string(resp.Body) != tc.wantBody {
				t.Errorf("body %q, want %q", resp.Body, tc.wantBody)
			}
			if got := resp.Header.Get("content-length"); got != tc.wantCL {
				t.Errorf("content-length %q, want %q", got, tc.wantCL)
			}
			if len(resp.Events) > 0 && tc.wantCL != "" && hasEvent(resp, "does not match") {
				t.Errorf("events %q", resp.Events)
			}
		})
	}
}

func TestExtProcImmediateResponse(t *testing.T) {
	for _, phase := range []string{PhaseRequestHeaders, PhaseResponseHeaders, PhaseResponseBody} {
		t.Run(phase, func(t *testing.T) {
			p := &fakeProc{handle: onPhase(map[string]func(*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse{
				phase: func(*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
					return []*extprocv3.ProcessingResponse{{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
						Status:  &typev3.HttpStatus{Code: typev3.StatusCode_NotFound},
						Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("content-type", "application/json")}},
						Body:    []byte(`{"error":"subject wiped"}`),
						Details: "gdprgate_wiped",
					}}}}
				},
			})}
			resp, up := runProc(t, p, Options{})
			if resp.Status != 404 || string(resp.Body) != `{"error":"subject wiped"}` || resp.Header.Get("content-type") != "application/json" {
				t.Fatalf("status %d body %q header %v", resp.Status, resp.Body, resp.Header)
			}
			if resp.LocalReply != "ext_proc_immediate" || resp.Details != "gdprgate_wiped" {
				t.Errorf("local reply %q details %q", resp.LocalReply, resp.Details)
			}
			if wantUp := phase != PhaseRequestHeaders; (up.count() == 1) != wantUp {
				t.Errorf("upstream hits %d", up.count())
			}
			if resp.Phases[len(resp.Phases)-1] != phase {
				t.Errorf("phases %v should stop at %s", resp.Phases, phase)
			}
		})
	}
}

func TestExtProcModeOverride(t *testing.T) {
	skipBody := func(req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
		r := headersResp(req, &extprocv3.CommonResponse{})
		r.ModeOverride = &extprocfilterv3.ProcessingMode{ResponseBodyMode: extprocfilterv3.ProcessingMode_NONE}
		return []*extprocv3.ProcessingResponse{r}
	}
	tests := []struct {
		name       string
		phase      string
		disallow   bool
		wantPhases string
	}{
		{"override in response headers skips the body phase", PhaseResponseHeaders, false, "request_headers,response_headers"},
		{"override in request headers skips the body phase", PhaseRequestHeaders, false, "request_headers,response_headers"},
		{"override is ignored without allow_mode_override", PhaseResponseHeaders, true, "request_headers,response_headers,response_body"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &fakeProc{handle: onPhase(map[string]func(*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse{tc.phase: skipBody})}
			resp, _ := runProc(t, p, Options{DisallowModeOverride: tc.disallow})
			if got := strings.Join(resp.Phases, ","); got != tc.wantPhases {
				t.Fatalf("phases %s, want %s", got, tc.wantPhases)
			}
			if resp.Status != 200 || string(resp.Body) != contactJSON {
				t.Errorf("status %d body %q", resp.Status, resp.Body)
			}
		})
	}
}

func TestExtProcProtocolErrors(t *testing.T) {
	wrongType := func(*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
		// a body response to a headers request
		return []*extprocv3.ProcessingResponse{{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{
			Response: &extprocv3.CommonResponse{BodyMutation: newBody(redacted)},
		}}}}
	}
	double := func(req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
		// two answers to one request: the second arrives while the next phase is pending
		r := headersResp(req, &extprocv3.CommonResponse{})
		return []*extprocv3.ProcessingResponse{r, r}
	}
	tests := []struct {
		name       string
		phase      string
		answer     func(*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse
		strict     bool
		wantStatus int
		wantBody   string
		wantEvent  string
	}{
		{"wrong type lets the response through unprocessed (Envoy)", PhaseResponseHeaders, wrongType, false, 200, contactJSON, "spurious response_body message while waiting for response_headers"},
		{"wrong type is a 500 with SpuriousIsError", PhaseResponseHeaders, wrongType, true, 500, "", "spurious"},
		{"a second answer is spurious in the next phase", PhaseRequestHeaders, double, false, 200, contactJSON, "spurious request_headers message while waiting for response_headers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &fakeProc{handle: onPhase(map[string]func(*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse{tc.phase: tc.answer})}
			resp, _ := runProc(t, p, Options{SpuriousIsError: tc.strict})
			if resp.Status != tc.wantStatus || string(resp.Body) != tc.wantBody {
				t.Fatalf("status %d body %q", resp.Status, resp.Body)
			}
			if !hasEvent(resp, tc.wantEvent) {
				t.Errorf("events %q, want %q", resp.Events, tc.wantEvent)
			}
		})
	}
}

func TestExtProcFailures(t *testing.T) {
	slow := func(ctx context.Context, req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
		return passThrough(ctx, req)
	}
	tests := []struct {
		name       string
		proc       *fakeProc
		allow      bool
		wantStatus int
		wantDetail string
	}{
		{"message timeout is 504", &fakeProc{handle: slow}, false, 504, "per-message_timeout"},
		{"message timeout with failure_mode_allow continues", &fakeProc{handle: slow}, true, 200, ""},
		{"gRPC error is 500", &fakeProc{handle: passThrough, failWith: status.Error(codes.Unavailable, "boom")}, false, 500, "gRPC_error_14"},
		{"gRPC error with failure_mode_allow continues", &fakeProc{handle: passThrough, failWith: status.Error(codes.Internal, "boom")}, true, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			timeout := testTimeout
			if strings.Contains(tc.name, "timeout") {
				timeout = 50 * time.Millisecond
			}
			resp, _ := runProc(t, tc.proc, Options{FailureModeAllow: tc.allow, MessageTimeout: timeout})
			if resp.Status != tc.wantStatus {
				t.Fatalf("status %d, want %d (events %q)", resp.Status, tc.wantStatus, resp.Events)
			}
			if !strings.Contains(resp.Details, tc.wantDetail) {
				t.Errorf("details %q, want %q", resp.Details, tc.wantDetail)
			}
		})
	}
}

func TestExtProcStreamClosedByProcessorContinuesUnprocessed(t *testing.T) {
	// Returning from Process without answering ends the stream with OK: Envoy treats that
	// as a successful close and stops processing, so the backend's body goes out as is.
	p := &fakeProc{handle: passThrough, closeAfterFirst: true}
	resp, _ := runProc(t, p, Options{})
	if resp.Status != 200 || string(resp.Body) != contactJSON || !hasEvent(resp, "closed the stream") {
		t.Fatalf("status %d body %q events %q", resp.Status, resp.Body, resp.Events)
	}
	if len(resp.Phases) != 1 {
		t.Errorf("phases %v: nothing may be sent after the close", resp.Phases)
	}
}

func TestExtProcBufferLimit(t *testing.T) {
	resp, _ := runProc(t, &fakeProc{handle: passThrough}, Options{BufferLimit: 10})
	if resp.Status != 500 || resp.LocalReply != "buffer_limit" {
		t.Fatalf("status %d local %q", resp.Status, resp.LocalReply)
	}
}

func TestExtProcRequestBodyBuffered(t *testing.T) {
	p := &fakeProc{handle: onPhase(map[string]func(*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse{
		PhaseRequestBody: func(req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
			return []*extprocv3.ProcessingResponse{bodyResp(req, &extprocv3.CommonResponse{
				HeaderMutation: &extprocv3.HeaderMutation{RemoveHeaders: []string{"content-length"}},
				BodyMutation:   newBody(`{"contact_id":"c-1"}`),
			})}
		},
	})}
	mode := DefaultProcessingMode()
	mode.RequestBodyMode = extprocfilterv3.ProcessingMode_BUFFERED
	up := &upstreamRecorder{}
	e := New(Options{AuthzTimeout: testTimeout, MessageTimeout: testTimeout, Proc: procConn(t, p), Upstream: up, ProcessingMode: mode})
	defer e.Close()
	req, _ := http.NewRequest(http.MethodPost, "http://crm.test/api/outbound/calls", strings.NewReader(`{"contact_id":"c-1","type":"campaign"}`))
	resp, err := e.Do(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(resp.Phases, ","); got != "request_headers,request_body,response_headers,response_body" {
		t.Fatalf("phases %s", got)
	}
	if string(resp.Upstream.Body) != `{"contact_id":"c-1"}` {
		t.Errorf("upstream body %q", resp.Upstream.Body)
	}
	if p.received()[0].GetRequestHeaders().GetEndOfStream() {
		t.Error("request headers of a POST with a body must not carry end_of_stream")
	}
}
