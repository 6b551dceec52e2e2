package envoytest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// AuthzNamespace is the dynamic metadata namespace of Envoy's ext_authz filter; ext_proc
// forwards it in ProcessingRequest.metadata_context when ForwardAuthzMetadata is set.
const AuthzNamespace = "envoy.filters.http.ext_authz"

// Options configures the emulated filter chain: ext_authz (optional), then ext_proc
// (optional), then the router to Upstream.
type Options struct {
	// Authz is the ext_authz gRPC target; nil means no ext_authz filter.
	Authz grpc.ClientConnInterface
	// Proc is the ext_proc gRPC target; nil means no ext_proc filter.
	Proc grpc.ClientConnInterface

	// Upstream is the backend as a handler; it is served on a loopback listener so the
	// router talks real HTTP/1.1 to it (Content-Length vs chunked as a real backend).
	Upstream http.Handler
	// UpstreamURL is the backend's base URL (scheme://host:port); used when Upstream is nil.
	UpstreamURL string

	// WithRequestBody selects the requests whose body ext_authz buffers into the
	// CheckRequest (with_request_body); nil means never.
	WithRequestBody func(method, path string) bool
	// MaxRequestBytes is with_request_body.max_request_bytes (default 8192).
	MaxRequestBytes int
	// AllowPartialMessage is with_request_body.allow_partial_message: send the first
	// MaxRequestBytes instead of answering 413.
	AllowPartialMessage bool
	// PackAsBytes is with_request_body.pack_as_bytes: body goes to raw_body, not body.
	PackAsBytes bool
	// ContextExtensions are the per-route check_settings.context_extensions.
	ContextExtensions map[string]string
	// FilterMetadata is the request's dynamic metadata set by filters that
	// run before ext_authz, per namespace: jwt_authn with payload_in_metadata
	// puts the verified JWT payload under "envoy.filters.http.jwt_authn".
	FilterMetadata func(*http.Request) map[string]*structpb.Struct
	// MetadataContextNamespaces is ext_authz's metadata_context_namespaces:
	// the namespaces of FilterMetadata copied into the CheckRequest's
	// attributes.metadata_context (ext_authz.cc fillMetadataContext).
	MetadataContextNamespaces []string
	// AuthzTimeout is the ext_authz grpc_service.timeout (Envoy default 200ms).
	AuthzTimeout time.Duration
	// AuthzStatusOnError is ext_authz status_on_error (Envoy default 403).
	AuthzStatusOnError int

	// ProcessingMode is the ext_proc processing_mode; nil means request headers SEND,
	// response headers SEND, request body NONE, response body BUFFERED.
	ProcessingMode *extprocfilterv3.ProcessingMode
	// DisallowModeOverride turns off allow_mode_override (on by default here, as gdprgate's
	// example Envoy config enables it).
	DisallowModeOverride bool
	// ForwardAuthzMetadata sets metadata_options.forwarding_namespaces.untyped to
	// [AuthzNamespace]: ext_authz's dynamic metadata goes into every ProcessingRequest.
	ForwardAuthzMetadata bool
	// ForwardNamespaces are more metadata_options.forwarding_namespaces.untyped: those
	// namespaces of FilterMetadata (jwt_authn's, say) go into every ProcessingRequest too.
	ForwardNamespaces []string
	// MessageTimeout is ext_proc message_timeout (Envoy default 200ms).
	MessageTimeout time.Duration
	// MutationRules are ext_proc mutation_rules (zero value = Envoy's default).
	MutationRules MutationRules
	// BufferLimit is the connection buffer limit that bounds a BUFFERED body (Envoy's
	// per_connection_buffer_limit_bytes, default 1 MiB).
	BufferLimit int
	// FailureModeAllow is failure_mode_allow for both filters (default false: fail closed).
	FailureModeAllow bool
	// SpuriousIsError makes an out-of-phase ext_proc response a 500. Envoy does NOT do this
	// (it ignores the processor for the rest of the request and lets the request through
	// unprocessed); turn it on to make such processor bugs loud in tests. Recent Envoy
	// releases behave like this when the runtime flag
	// envoy.reloadable_features.ext_proc_fail_close_spurious_resp is on and
	// failure_mode_allow is off (ext_proc.cc, onReceiveMessage → handleErrorResponse);
	// after the response headers went downstream that local reply is a stream reset.
	SpuriousIsError bool

	// RouteProcessingMode is the route's ExtProcPerRoute overrides.processing_mode, nil
	// when the route has none: it replaces the filter's mode for that request
	// (ext_proc.cc, mergePerRouteConfig). A server's mode_override is still merged onto
	// the FILTER's mode, not the route's (effectiveModeOverride).
	RouteProcessingMode func(method, path string) *extprocfilterv3.ProcessingMode
	// AllowedOverrideModes is allowed_override_modes: when set, a mode_override is applied
	// only if it equals one of them, request_header_mode aside (onReceiveMessage).
	AllowedOverrideModes []*extprocfilterv3.ProcessingMode
	// StreamChunkSize is the size of the data callbacks the upstream codec delivers, i.e.
	// of each body chunk sent to the processor in STREAMED and FULL_DUPLEX_STREAMED modes
	// (default 16 KiB). The last non-empty chunk carries end_of_stream.
	StreamChunkSize int

	// ClientAddr and ListenerAddr are the downstream peer and the Envoy listener, reported
	// as attributes.source / attributes.destination (defaults 127.0.0.1:50000 / :10000).
	ClientAddr, ListenerAddr string
}

// UpstreamRequest is what the backend received, for assertions about header mutations.
type UpstreamRequest struct {
	Method string
	Path   string
	Host   string
	Header http.Header
	Body   []byte
}

// Response is what the downstream client received, plus what happened on the way.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// Phases lists the ext_proc messages sent, in order: "request_headers",
	// "request_body", "response_headers", "response_body".
	Phases []string
	// AuthzDenied is true when ext_authz denied the request (or failed closed).
	AuthzDenied bool
	// CheckRequest is the CheckRequest that was sent, nil without ext_authz.
	CheckRequest *authv3.CheckRequest
	// AuthzMetadata is the dynamic metadata ext_authz emitted (Envoy keeps it
	// in the stream's dynamic metadata whether the check allowed or denied).
	AuthzMetadata *structpb.Struct
	// Upstream is what the backend saw; nil when it was never called.
	Upstream *UpstreamRequest
	// LocalReply names the filter that answered instead of the backend ("ext_authz",
	// "ext_proc", "ext_proc_immediate", "buffer_limit"), empty when the backend answered.
	LocalReply string
	// Details is Envoy's response code details for local replies, e.g.
	// "ext_proc_error_per-message_timeout_exceeded".
	Details string
	// Events records everything Envoy would log or count: ignored mutations, spurious
	// messages, failure-mode-allow fallbacks, content-length mismatches.
	Events []string
	// Reset: Envoy reset the downstream stream after the response headers had gone out
	// (a local reply is impossible then: FilterManager::sendLocalReply resets instead).
	// Status and Header are what the client already got, Body what it got before the
	// reset (HTTP/1.1: a chunked body cut without its last chunk; HTTP/2: RST_STREAM);
	// Details says why.
	Reset bool
	// BodyChunks counts the response body messages sent to the processor.
	BodyChunks int
	// BodyBytes counts the response body bytes the client got (with DoTo, the bytes
	// written to its writer; Body then stays empty).
	BodyBytes int64
	// Trailer holds the response trailers the client got after the body (nil when
	// none): the backend's, as ext_proc's trailers answer left them.
	Trailer http.Header
}

func (r *Response) event(format string, args ...any) {
	r.Events = append(r.Events, fmt.Sprintf(format, args...))
}

// Envoy emulates one Envoy HTTP listener with the configured filter chain. It is safe for
// concurrent use.
type Envoy struct {
	opts     Options
	authz    authv3.AuthorizationClient
	proc     extprocv3.ExternalProcessorClient
	mode     *extprocfilterv3.ProcessingMode
	upstream string
	server   *httptest.Server
	client   *http.Client
	mu       sync.Mutex
	closed   bool
}

// envoyRecvLimit lifts grpc-go's default 4 MiB receive limit on the emulator's calls:
// Envoy's gRPC client has none unless configured (GrpcService.EnvoyGrpc
// max_receive_message_length, "Defaults to 0, which means unlimited"). What bounds a
// message is the processor's own receive limit, on the request side.
var envoyRecvLimit = grpc.MaxCallRecvMsgSize(math.MaxInt32)

// New builds an emulator. Call Close to stop the upstream listener it may have started.
func New(opts Options) *Envoy {
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = 8192
	}
	if opts.AuthzTimeout <= 0 {
		opts.AuthzTimeout = 200 * time.Millisecond
	}
	if opts.AuthzStatusOnError == 0 {
		opts.AuthzStatusOnError = http.StatusForbidden
	}
	if opts.MessageTimeout <= 0 {
		opts.MessageTimeout = 200 * time.Millisecond
	}
	if opts.BufferLimit <= 0 {
		opts.BufferLimit = 1 << 20
	}
	if opts.StreamChunkSize <= 0 {
		opts.StreamChunkSize = 16 << 10
	}
	if opts.ClientAddr == "" {
		opts.ClientAddr = "127.0.0.1:50000"
	}
	if opts.ListenerAddr == "" {
		opts.ListenerAddr = "127.0.0.1:10000"
	}
	e := &Envoy{opts: opts, upstream: strings.TrimRight(opts.UpstreamURL, "/")}
	if opts.Authz != nil {
		e.authz = authv3.NewAuthorizationClient(opts.Authz)
	}
	if opts.Proc != nil {
		e.proc = extprocv3.NewExternalProcessorClient(opts.Proc)
	}
	if opts.ProcessingMode != nil {
		e.mode = proto.Clone(opts.ProcessingMode).(*extprocfilterv3.ProcessingMode)
	} else {
		e.mode = DefaultProcessingMode()
	}
	if opts.Upstream != nil {
		e.server = httptest.NewServer(opts.Upstream)
		e.upstream = e.server.URL
	}
	e.client = &http.Client{
		// Envoy's router neither follows redirects nor decompresses.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64},
	}
	return e
}

// DefaultProcessingMode is the mode gdprgate's Envoy config uses: request headers and
// response headers sent, response body BUFFERED, no request body, no trailers.
func DefaultProcessingMode() *extprocfilterv3.ProcessingMode {
	return &extprocfilterv3.ProcessingMode{
		RequestHeaderMode:  extprocfilterv3.ProcessingMode_SEND,
		ResponseHeaderMode: extprocfilterv3.ProcessingMode_SEND,
		RequestBodyMode:    extprocfilterv3.ProcessingMode_NONE,
		ResponseBodyMode:   extprocfilterv3.ProcessingMode_BUFFERED,
	}
}

// Close stops the upstream listener started for Options.Upstream.
func (e *Envoy) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	e.closed = true
	if e.server != nil {
		e.server.Close()
	}
	if t, ok := e.client.Transport.(*http.Transport); ok {
		t.CloseIdleConnections()
	}
}

// exchange is the state of one HTTP request/response pair travelling the filter chain.
type exchange struct {
	reqHeaders  headerMap
	reqBody     []byte
	respHeaders headerMap
	respBody    []byte
	// upBody is the backend's response body, still unread: the buffered paths read it
	// whole (load), the streamed ones chunk by chunk. upHasBody: at least one byte.
	upBody    *bufio.Reader
	upHasBody bool
	upClose   func()
	loaded    bool
	// upResp is the backend's answer; its Trailer is filled once the body was read to
	// the end.
	upResp *http.Response
	// respTrailers are the trailers as the client gets them, once trailersDone (ext_proc
	// may have mutated them); until then the backend's go through as they are.
	respTrailers headerMap
	trailersDone bool
	// sink, when set (DoTo), receives the downstream body instead of Response.Body.
	sink io.Writer
	// headersSent: the response headers went downstream (streamed modes); after that a
	// failure can only reset the stream.
	headersSent bool
	// respHeadersToAdd are ext_authz's response_headers_to_add, applied when encoding.
	respHeadersToAdd []headerOp
	// authzMetadata is ext_authz's dynamic metadata, forwarded to ext_proc on request.
	authzMetadata *structpb.Struct
	// filterMetadata is the dynamic metadata of filters before ext_authz.
	filterMetadata map[string]*structpb.Struct
	resp           *Response
}

// localReply builds a response generated by Envoy itself (sendLocalReply): text/plain body.
func localReply(resp *Response, who string, status int, body, details string) *Response {
	resp.Status = status
	resp.Header = http.Header{}
	if body != "" {
		resp.Header.Set("content-type", "text/plain")
	}
	resp.Header.Set("content-length", strconv.Itoa(len(body)))
	resp.Body = []byte(body)
	resp.LocalReply = who
	resp.Details = details
	return resp
}

// Do sends req through the emulated filter chain and returns what the client would get.
// An error means the emulator itself could not run (bad request, unreachable upstream);
// every protocol outcome, including processor failures, is a Response.
func (e *Envoy) Do(ctx context.Context, req *http.Request) (*Response, error) {
	return e.do(ctx, req, nil)
}

// DoTo is Do with the downstream body written to w as Envoy would send it (chunk by chunk
// in the streamed modes) rather than kept in Response.Body: for bodies too big to hold.
func (e *Envoy) DoTo(ctx context.Context, req *http.Request, w io.Writer) (*Response, error) {
	if w == nil {
		return nil, fmt.Errorf("envoytest: DoTo needs a writer")
	}
	return e.do(ctx, req, w)
}

func (e *Envoy) do(ctx context.Context, req *http.Request, w io.Writer) (*Response, error) {
	x, err := e.newExchange(req)
	if err != nil {
		return nil, err
	}
	x.sink = w
	defer x.closeUpstream()
	resp := x.resp

	if e.authz != nil {
		done, err := e.runAuthz(ctx, x)
		if err != nil {
			return nil, err
		}
		if done {
			if w != nil {
				b := resp.Body
				resp.Body = nil
				x.writeBody(b)
			}
			return resp, nil
		}
	}

	var ps *procSession
	if e.proc != nil {
		ps = e.openProc(ctx, x)
		defer ps.close()
		if local := ps.decode(x); local != nil {
			return e.finish(x, local), nil
		}
	}

	if err := e.callUpstream(ctx, x); err != nil {
		return nil, err
	}

	if ps != nil {
		local, streamed := ps.encode(x)
		if streamed {
			// The streamed path sent headers and body downstream itself.
			if local == nil {
				ps.finishStream()
			}
			return resp, nil
		}
		if local != nil {
			return e.finish(x, local), nil
		}
		ps.finishStream()
	}
	if err := x.load(); err != nil {
		return nil, err
	}
	return e.finish(x, nil), nil
}

// load reads the rest of the backend's body into respBody (the buffered paths).
func (x *exchange) load() error {
	if x.loaded {
		return nil
	}
	x.loaded = true
	if x.upBody == nil {
		return nil
	}
	b, err := io.ReadAll(x.upBody)
	if err != nil {
		return fmt.Errorf("envoytest: read upstream response: %w", err)
	}
	x.respBody = b
	return nil
}

func (x *exchange) closeUpstream() {
	if x.upClose != nil {
		x.upClose()
	}
}

// downstreamHeaders are the response headers as the client gets them: ext_authz's
// response_headers_to_add applied last (ext_authz sits before ext_proc, so its encode step
// runs after ext_proc's).
func (x *exchange) downstreamHeaders(hm headerMap) {
	for _, op := range x.respHeadersToAdd {
		op.apply(&hm)
	}
	x.resp.Status, _ = strconv.Atoi(valueOr(hm, ":status", "0"))
	x.resp.Header = hm.httpHeader()
}

// writeBody sends body bytes downstream: to the sink, or kept in Response.Body.
func (x *exchange) writeBody(b []byte) {
	if len(b) == 0 {
		return
	}
	x.resp.BodyBytes += int64(len(b))
	if x.sink != nil {
		_, _ = x.sink.Write(b)
		return
	}
	x.resp.Body = append(x.resp.Body, b...)
}

// finish turns the exchange into the downstream response, applying ext_authz's
// response_headers_to_add (ext_authz sits before ext_proc, so its encode step runs last).
func (e *Envoy) finish(x *exchange, local *Response) *Response {
	resp := x.resp
	var hm headerMap
	if local != nil {
		hm = headerMap{{":status", strconv.Itoa(local.Status)}}
		for k, vs := range local.Header {
			for _, v := range vs {
				hm.add(k, v)
			}
		}
		x.respBody = local.Body
	} else {
		hm = x.respHeaders
	}
	x.downstreamHeaders(hm)
	if cl, ok := hm.get("content-length"); ok && local == nil {
		if n, err := strconv.Atoi(cl); err != nil || n != len(x.respBody) {
			resp.event("downstream content-length %q does not match the %d-byte body: a real client would fail or truncate", cl, len(x.respBody))
		}
	}
	resp.Body = nil
	x.writeBody(x.respBody)
	if local == nil {
		x.sendTrailers()
	}
	return resp
}

// upstreamTrailers are the backend's trailers; known once its body was read to the end
// (Go's HTTP client fills Response.Trailer at EOF). Declared but unsent names are left out.
func (x *exchange) upstreamTrailers() headerMap {
	if x.upResp == nil {
		return nil
	}
	var hm headerMap
	for k, vs := range x.upResp.Trailer {
		for _, v := range vs {
			hm.add(strings.ToLower(k), v)
		}
	}
	return hm
}

// sendTrailers ends the downstream response with its trailers: the backend's, or those
// ext_proc left (respTrailers, once trailersDone).
func (x *exchange) sendTrailers() {
	if !x.trailersDone {
		x.respTrailers, x.trailersDone = x.upstreamTrailers(), true
	}
	if len(x.respTrailers) > 0 {
		x.resp.Trailer = x.respTrailers.httpHeader()
	}
}

func valueOr(h headerMap, k, def string) string {
	if v, ok := h.get(k); ok {
		return v
	}
	return def
}

func (e *Envoy) newExchange(req *http.Request) (*exchange, error) {
	if req == nil || req.URL == nil {
		return nil, fmt.Errorf("envoytest: nil request")
	}
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, fmt.Errorf("envoytest: read request body: %w", err)
		}
		body = b
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if host == "" {
		host = "gdprgate.test"
	}
	path := req.URL.RequestURI()
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	// The HTTP connection manager turns the HTTP/1.1 request line and Host into
	// pseudo-headers, then adds x-forwarded-proto and x-request-id before any filter runs.
	hm := headerMap{{":authority", host}, {":path", path}, {":method", method}, {":scheme", "http"}}
	for k, vs := range req.Header {
		lk := strings.ToLower(k)
		if lk == "host" || lk == "content-length" || lk == "transfer-encoding" || lk == "connection" {
			continue
		}
		for _, v := range vs {
			hm.add(lk, v)
		}
	}
	if len(body) > 0 {
		hm.set("content-length", strconv.Itoa(len(body)))
	}
	if !hm.has("x-forwarded-proto") {
		hm.add("x-forwarded-proto", "http")
	}
	if !hm.has("x-request-id") {
		hm.add("x-request-id", newRequestID())
	}
	x := &exchange{reqHeaders: hm, reqBody: body, resp: &Response{}}
	if e.opts.FilterMetadata != nil {
		x.filterMetadata = e.opts.FilterMetadata(req)
	}
	return x, nil
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	s := hex.EncodeToString(b[:])
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

// callUpstream is the router: it sends the (mutated) request to the backend over HTTP/1.1.
func (e *Envoy) callUpstream(ctx context.Context, x *exchange) error {
	if e.upstream == "" {
		return fmt.Errorf("envoytest: no upstream configured")
	}
	method := valueOr(x.reqHeaders, ":method", http.MethodGet)
	path := valueOr(x.reqHeaders, ":path", "/")
	hreq, err := http.NewRequestWithContext(ctx, method, e.upstream+path, bytes.NewReader(x.reqBody))
	if err != nil {
		return fmt.Errorf("envoytest: build upstream request %s %s: %w", method, path, err)
	}
	hreq.Header = x.reqHeaders.httpHeader()
	hreq.Header.Del("content-length")
	hreq.ContentLength = int64(len(x.reqBody))
	if len(x.reqBody) == 0 {
		hreq.Body = http.NoBody
	}
	hreq.Host = valueOr(x.reqHeaders, ":authority", "")
	start := time.Now()
	hresp, err := e.client.Do(hreq)
	if err != nil {
		return fmt.Errorf("envoytest: upstream %s %s: %w", method, path, err)
	}
	x.upClose = func() { _ = hresp.Body.Close() }
	x.upResp = hresp
	x.upBody = bufio.NewReaderSize(hresp.Body, 64<<10)
	if _, err := x.upBody.Peek(1); err == nil {
		x.upHasBody = true
	} else if !errors.Is(err, io.EOF) {
		return fmt.Errorf("envoytest: read upstream response: %w", err)
	}
	x.resp.Upstream = &UpstreamRequest{
		Method: method, Path: path, Host: hreq.Host,
		Header: hreq.Header.Clone(), Body: append([]byte(nil), x.reqBody...),
	}
	hm := headerMap{{":status", strconv.Itoa(hresp.StatusCode)}}
	for k, vs := range hresp.Header {
		for _, v := range vs {
			hm.add(strings.ToLower(k), v)
		}
	}
	hm.add("x-envoy-upstream-service-time", strconv.FormatInt(time.Since(start).Milliseconds(), 10))
	x.respHeaders = hm
	return nil
}

func splitHostPort(addr string) (string, uint32) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	p, _ := strconv.ParseUint(port, 10, 32)
	return host, uint32(p)
}
