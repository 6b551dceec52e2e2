// Package authz speaks Envoy's protocols for gdprgate: the external
// authorization service (envoy.service.auth.v3.Authorization/Check), which
// allows or denies each request before it reaches the backend, and the
// external processor (envoy.service.ext_proc.v3.ExternalProcessor/Process),
// which redacts the backend's JSON answers. Both delegate the decisions to
// internal/gate; this package only maps them onto Envoy's messages.
package authz

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.opentelemetry.io/otel/trace"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gdprgate/gdprgate/internal/gate"
	"github.com/gdprgate/gdprgate/internal/observe"
	"github.com/gdprgate/gdprgate/policy"
)

// MetadataNamespace is where Check puts its dynamic metadata; Envoy forwards
// it to the processor when ext_proc's metadata_options name it.
const MetadataNamespace = "envoy.filters.http.ext_authz"

// Server implements both Envoy services on one gRPC server.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	extprocv3.UnimplementedExternalProcessorServer

	gate   *gate.Gate
	log    *slog.Logger
	health *health.Server
	// streamHook replaces gate.RewriteStream in tests.
	streamHook func(context.Context, *gate.Exchange, *gate.Response) (bodyStream, gate.Rewritten, bool)
}

// New returns a server deciding with g.
func New(g *gate.Gate, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{gate: g, log: log, health: health.NewServer()}
}

// Register adds Check, Process and gRPC health checking to s.
func (s *Server) Register(gs *grpc.Server) {
	// Authorization's service with the fast path's handler (checkfast.go).
	gs.RegisterService(&checkDesc, s)
	extprocv3.RegisterExternalProcessorServer(gs, s)
	healthpb.RegisterHealthServer(gs, s.health)
	s.SetServing(true)
}

// SetServing flips the health status of the whole server and both services.
func (s *Server) SetServing(ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for _, name := range []string{"", "envoy.service.auth.v3.Authorization", "envoy.service.ext_proc.v3.ExternalProcessor"} {
		s.health.SetServingStatus(name, st)
	}
}

// Check answers Envoy's ext_authz call.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	h := messageHTTP(req)
	var greq gate.Request
	ex := s.check(ctx, &h, &greq, req.GetAttributes(), nil)
	return checkResponse(ex, &h.headers, s.gate.IdentityHeaders(), s.gate.SealPlan(ex, &greq)), nil
}

// messageHTTP is what Check reads of a decoded CheckRequest.
func messageHTTP(req *authv3.CheckRequest) fastHTTP {
	h := req.GetAttributes().GetRequest().GetHttp()
	f := fastHTTP{
		method: h.GetMethod(), path: h.GetPath(), host: h.GetHost(), scheme: h.GetScheme(),
		protocol: h.GetProtocol(), rawBody: h.GetRawBody(), headers: headersOf(h.GetHeaders()),
	}
	if b := h.GetBody(); b != "" {
		f.body = []byte(b)
	}
	return f
}

// checkIn answers a Check the codec decoded (fast or whole).
func (s *Server) checkIn(ctx context.Context, in *checkIn) (any, error) {
	if !in.fast {
		return s.Check(ctx, &in.CheckRequest)
	}
	var greq gate.Request
	ex := s.check(ctx, &in.http, &greq, nil, func() *authv3.AttributeContext {
		req, err := in.full()
		if err != nil {
			// validMessage accepted the message: cannot happen. The
			// policy then sees the request as the other front-ends
			// describe it.
			s.log.Error("check request not decodable after validation", "err", err)
			return nil
		}
		return req.GetAttributes()
	})
	if b, ok := appendCheckAnswer(in.answerBuf[:0], ex, &in.http.headers, s.gate.IdentityHeaders(), planSource{s.gate, &greq}); ok {
		in.answer.b = b
		return &in.answer, nil
	}
	return checkResponse(ex, &in.http.headers, s.gate.IdentityHeaders(), s.gate.SealPlan(ex, &greq)), nil
}

// check decides a Check from the request's fields h, filling greq (which
// the exchange's plan is sealed for); attrs are its attributes, or lazy
// gives them.
func (s *Server) check(ctx context.Context, h *fastHTTP, greq *gate.Request, attrs *authv3.AttributeContext, lazy func() *authv3.AttributeContext) *gate.Exchange {
	headers := &h.headers
	if observe.Enabled() {
		md, _ := metadata.FromIncomingContext(ctx)
		var span trace.Span
		ctx, span = observe.StartServer(ctx, "ext_authz.Check", headers.all(), md)
		defer span.End()
	}
	body := h.rawBody
	if len(body) == 0 {
		body = h.body
	}
	method := h.method
	if method == "" {
		method = headers.get(":method")
	}
	path := h.path
	if path == "" {
		path = headers.get(":path")
	}
	*greq = gate.Request{
		Method:         method,
		Path:           path,
		Host:           h.host,
		Scheme:         h.scheme,
		Header:         headers.get,
		Headers:        headers.all,
		Body:           body,
		Attributes:     attrs,
		LazyAttributes: lazy,
	}
	// With with_request_body, Envoy marks every body it sends "true"
	// (truncated: allow_partial_message) or "false", after dropping any
	// copy the client sent (ext_authz check_request_utils.cc). No mark and
	// no body: either there is none, or Envoy was not asked to send it —
	// which only content-length can tell apart on HTTP/2 and HTTP/3, where
	// a body needs no framing header.
	switch headers.get("x-envoy-auth-partial-body") {
	case "true":
		greq.BodyPartial = true
	case "":
		proto := h.protocol
		greq.BodyUnseen = len(body) == 0 && headers.get("content-length") == "" &&
			(strings.HasPrefix(proto, "HTTP/2") || strings.HasPrefix(proto, "HTTP/3"))
	}
	return s.gate.Check(ctx, greq)
}

// planSource seals an exchange's plan for its request straight into an
// answer (gate.AppendPlan).
type planSource struct {
	g   *gate.Gate
	req *gate.Request
}

// checkResponse answers Check. An allow removes the client's x-gdpr-*
// headers from the request, except, on a mapped route, the identity headers
// (identity) that ext_proc, next in the chain, decides with again: ext_proc
// removes those (and gdprgate's example Envoy configs strip a client's
// identity headers before ext_authz).
func checkResponse(ex *gate.Exchange, reqHeaders *reqHeaders, identity []string, plan string) *authv3.CheckResponse {
	v := &ex.Verdict
	add := v.Additions()
	meta := dynamicMetadata(ex, add.DynamicMetadata, plan)
	if !v.Allow {
		ha := newHeaderArena(2 + len(v.ResponseHeaders))
		hdrs := make([]*corev3.HeaderValueOption, 0, 2+len(v.ResponseHeaders)+len(add.AppendHeaders))
		hdrs = append(hdrs, ha.header(gate.HeaderDecisionID, ex.DecisionID))
		if !v.PlainBody {
			hdrs = append(hdrs, ha.header("content-type", "application/json"))
		}
		for k, val := range v.ResponseHeaders {
			hdrs = append(hdrs, ha.header(k, val))
		}
		hdrs = append(hdrs, policyHeaders(add.AppendHeaders)...)
		code := codes.PermissionDenied
		if v.Status == 401 {
			code = codes.Unauthenticated
		}
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(code), Message: v.Reason},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode(v.Status)},
				Headers: hdrs,
				Body:    string(v.Body),
			}},
			DynamicMetadata: meta,
		}
	}
	confirms := ex.ConfirmsSubject()
	n := len(v.UpstreamHeaders)
	if !confirms {
		n += len(v.ResponseHeaders)
	}
	ha := newHeaderArena(n)
	ok := &authv3.OkHttpResponse{
		Headers:         make([]*corev3.HeaderValueOption, 0, len(v.UpstreamHeaders)+len(add.AppendHeaders)),
		HeadersToRemove: make([]string, 0, len(gate.Forgeable)+2+len(add.RemoveHeaders)),
	}
	for k, val := range v.UpstreamHeaders {
		ok.Headers = append(ok.Headers, ha.header(k, val))
	}
	ok.Headers = append(ok.Headers, policyHeaders(add.AppendHeaders)...)
	ok.HeadersToRemove = headersToRemove(ok.HeadersToRemove, ex, reqHeaders, identity)
	ok.HeadersToRemove = append(ok.HeadersToRemove, add.RemoveHeaders...)
	// Envoy adds these after ext_proc has answered (ext_authz encodes
	// last). On a route whose answer says whom it is about, the coverage
	// headers are the answer's subject's, which only ext_proc knows: it
	// sets them.
	if !confirms && len(v.ResponseHeaders)+len(add.AddResponseHeaders) > 0 {
		ok.ResponseHeadersToAdd = make([]*corev3.HeaderValueOption, 0, len(v.ResponseHeaders)+len(add.AddResponseHeaders))
		for k, val := range v.ResponseHeaders {
			ok.ResponseHeadersToAdd = append(ok.ResponseHeadersToAdd, ha.header(k, val))
		}
	}
	ok.ResponseHeadersToAdd = append(ok.ResponseHeadersToAdd, policyHeaders(add.AddResponseHeaders)...)
	return &authv3.CheckResponse{
		Status:          &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: ok},
		DynamicMetadata: meta,
	}
}

// headersToRemove appends the request headers an allowed Check removes:
// gdprgate's response-only headers and the client's other x-gdpr-* ones
// (see checkResponse).
func headersToRemove(dst []string, ex *gate.Exchange, reqHeaders *reqHeaders, identity []string) []string {
	v := &ex.Verdict
	// Envoy applies removals after sets: never remove what is set here
	// (its overwrite replaces a client's copy anyway).
	for _, k := range gate.Forgeable {
		if _, set := v.UpstreamHeaders[k]; !set {
			dst = append(dst, k)
		}
	}
	for k := range reqHeaders.names {
		if !gate.IsOwnHeader(k) {
			continue
		}
		_, set := v.UpstreamHeaders[k]
		keep := ex.Mapped() && slices.Contains(identity, k)
		if !set && !keep && !slices.Contains(gate.Forgeable, k) {
			dst = append(dst, k)
		}
	}
	return dst
}

// dynamicMetadata is the policy's dynamic_metadata, if any, with gdprgate's
// decision id (which wins, as opa-envoy-plugin's does), route and sealed
// plan for ext_proc — always written, empty when there is none, because
// Envoy merges this into whatever the namespace already holds.
func dynamicMetadata(ex *gate.Exchange, policyMD map[string]any, plan string) *structpb.Struct {
	if len(policyMD) == 0 && ownMetadataValid(ex) {
		// Only gdprgate's own strings: built as the Struct it becomes,
		// without the conversion from map[string]any (every Check pays it).
		var vals [3]structpb.Value
		var strs [3]structpb.Value_StringValue
		str := func(i int, s string) *structpb.Value {
			strs[i].StringValue = s
			vals[i].Kind = &strs[i]
			return &vals[i]
		}
		fields := make(map[string]*structpb.Value, 4)
		fields["decision_id"] = str(0, ex.DecisionID)
		fields[gate.PlanMetadataKey] = str(1, plan)
		if r := ex.RouteName(); r != "" {
			fields["route"] = str(2, r)
		}
		if r := ex.Rectification(); r != nil {
			fields["rectify"] = structpb.NewStructValue(r.MetadataStruct())
		}
		return &structpb.Struct{Fields: fields}
	}
	md := make(map[string]any, len(policyMD)+3)
	maps.Copy(md, policyMD)
	md["decision_id"] = ex.DecisionID
	md[gate.PlanMetadataKey] = plan
	if r := ex.RouteName(); r != "" {
		md["route"] = r
	}
	if r := ex.Rectification(); r != nil {
		// The ext_proc stream, which sees the backend's status, writes it.
		md["rectify"] = r.Metadata()
	}
	meta, err := structpb.NewStruct(md)
	if err != nil {
		// A value structpb cannot hold (the policy's): keep ours.
		meta, _ = structpb.NewStruct(map[string]any{"decision_id": ex.DecisionID, gate.PlanMetadataKey: plan})
	}
	return meta
}

// ownMetadataValid reports whether the strings dynamicMetadata takes from
// the request are valid UTF-8 (structpb.NewStruct refuses them otherwise,
// and the fallback keeps only the decision id and the plan).
func ownMetadataValid(ex *gate.Exchange) bool {
	if !utf8.ValidString(ex.RouteName()) {
		return false
	}
	r := ex.Rectification()
	return r == nil || (utf8.ValidString(r.Route) && utf8.ValidString(r.Actor) && utf8.ValidString(r.Subject) &&
		utf8.ValidString(r.Fields) && utf8.ValidString(r.DecisionID))
}

// headerArena hands out an answer's headers from two allocations instead
// of two per header.
type headerArena struct {
	opts []corev3.HeaderValueOption
	vals []corev3.HeaderValue
}

func newHeaderArena(n int) headerArena {
	return headerArena{opts: make([]corev3.HeaderValueOption, n), vals: make([]corev3.HeaderValue, n)}
}

// header is header(k, v), from the arena while it lasts.
func (a *headerArena) header(k, v string) *corev3.HeaderValueOption {
	if len(a.opts) == 0 {
		return header(k, v)
	}
	o, hv := &a.opts[0], &a.vals[0]
	a.opts, a.vals = a.opts[1:], a.vals[1:]
	hv.Key, hv.Value = k, v
	o.Header, o.AppendAction = hv, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	return o
}

// header is one of gdprgate's own headers: it replaces any value a client
// sent.
func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// policyHeaders are an opa-envoy-plugin policy's headers, sent as that
// plugin sends them (no append action: Envoy appends).
func policyHeaders(hs []policy.Header) []*corev3.HeaderValueOption {
	out := make([]*corev3.HeaderValueOption, len(hs))
	for i, h := range hs {
		out[i] = &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: h.Key, Value: h.Value}}
	}
	return out
}

// headerMap flattens Envoy's ext_proc HeaderMap into lower-case keys; Envoy
// sends raw_value (bytes) in current versions and value in older ones.
func headerMap(hm *corev3.HeaderMap) map[string]string {
	out := make(map[string]string, len(hm.GetHeaders()))
	for _, h := range hm.GetHeaders() {
		v := h.GetValue()
		if raw := h.GetRawValue(); len(raw) > 0 {
			v = string(raw)
		}
		k := strings.ToLower(h.GetKey())
		if prev, ok := out[k]; ok && !strings.HasPrefix(k, ":") {
			v = prev + "," + v
		}
		out[k] = v
	}
	return out
}
