package envoytest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
)

// fakeAuthz answers Check with a test-supplied function.
type fakeAuthz struct {
	authv3.UnimplementedAuthorizationServer
	check func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error)
}

func (f *fakeAuthz) Check(ctx context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return f.check(ctx, r)
}

// fakeProc answers each ProcessingRequest with whatever handle returns (zero, one or more
// messages) and records what it received and whether the client half-closed.
type fakeProc struct {
	extprocv3.UnimplementedExternalProcessorServer
	handle func(context.Context, *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse
	// failWith ends the stream with this error after the first message.
	failWith error
	// closeAfterFirst returns from Process (status OK) after the first message, unanswered.
	closeAfterFirst bool

	mu      sync.Mutex
	got     []*extprocv3.ProcessingRequest
	sawEOF  bool
	streams int
}

func (f *fakeProc) Process(s extprocv3.ExternalProcessor_ProcessServer) error {
	f.mu.Lock()
	f.streams++
	f.mu.Unlock()
	for {
		req, err := s.Recv()
		if errors.Is(err, io.EOF) {
			f.mu.Lock()
			f.sawEOF = true
			f.mu.Unlock()
			return nil
		}
		if err != nil {
			return err
		}
		f.mu.Lock()
		f.got = append(f.got, req)
		f.mu.Unlock()
		if f.failWith != nil {
			return f.failWith
		}
		if f.closeAfterFirst {
			return nil
		}
		for _, resp := range f.handle(s.Context(), req) {
			if err := s.Send(resp); err != nil {
				return err
			}
		}
	}
}

func (f *fakeProc) received() []*extprocv3.ProcessingRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*extprocv3.ProcessingRequest(nil), f.got...)
}

// serve starts register's services in memory for the length of the test.
func serve(t *testing.T, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	conn, stop, err := Serve(register)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return conn
}

func authzConn(t *testing.T, check func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error)) *grpc.ClientConn {
	return serve(t, func(s *grpc.Server) { authv3.RegisterAuthorizationServer(s, &fakeAuthz{check: check}) })
}

func procConn(t *testing.T, p *fakeProc) *grpc.ClientConn {
	return serve(t, func(s *grpc.Server) { extprocv3.RegisterExternalProcessorServer(s, p) })
}

// testTimeout replaces Envoy's 200ms defaults in tests that are not about timeouts: the
// race detector on a shared 2-core machine can stretch one call past 200ms.
const testTimeout = 5 * time.Second

// contactJSON is what the fake CRM returns for GET /api/contacts/c-1.
const contactJSON = `{"id":"c-1","first_name":"Alice","health_notes":"asthma"}`

// upstreamRecorder is a fake backend remembering the last request it served.
type upstreamRecorder struct {
	mu   sync.Mutex
	last *http.Request
	hits int
}

func (u *upstreamRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.last = r.Clone(context.Background())
	u.hits++
	u.mu.Unlock()
	w.Header().Set("content-type", "application/json")
	w.Header().Set("x-backend", "crm")
	_, _ = io.WriteString(w, contactJSON)
}

func (u *upstreamRecorder) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.hits
}

func allowResponse() *authv3.CheckResponse {
	return &authv3.CheckResponse{Status: &status.Status{Code: 0}}
}

// Builders for ProcessingResponses, kept short so tests read as protocol transcripts.

func headersResp(req *extprocv3.ProcessingRequest, cr *extprocv3.CommonResponse) *extprocv3.ProcessingResponse {
	hr := &extprocv3.HeadersResponse{Response: cr}
	if req.GetRequestHeaders() != nil {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: hr}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: hr}}
}

func bodyResp(req *extprocv3.ProcessingRequest, cr *extprocv3.CommonResponse) *extprocv3.ProcessingResponse {
	br := &extprocv3.BodyResponse{Response: cr}
	if req.GetRequestBody() != nil {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: br}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: br}}
}

// passThrough answers every phase with an empty response of the right type.
func passThrough(_ context.Context, req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
	switch req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders, *extprocv3.ProcessingRequest_ResponseHeaders:
		return []*extprocv3.ProcessingResponse{headersResp(req, &extprocv3.CommonResponse{})}
	default:
		return []*extprocv3.ProcessingResponse{bodyResp(req, &extprocv3.CommonResponse{})}
	}
}

func setHeader(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)}}
}

func newBody(b string) *extprocv3.BodyMutation {
	return &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: []byte(b)}}
}

func hasEvent(r *Response, substr string) bool {
	for _, e := range r.Events {
		if strings.Contains(e, substr) {
			return true
		}
	}
	return false
}
