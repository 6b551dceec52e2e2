package authz_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"

	"github.com/gdprgate/gdprgate/authz/envoytest"
	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/observe"
	"github.com/gdprgate/gdprgate/internal/proxy"
)

// receiver is a local OTLP/gRPC trace receiver.
type receiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (r *receiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// inTrace returns the spans of one trace by name.
func (r *receiver) inTrace(traceID string) map[string]*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]*tracepb.Span{}
	for _, s := range r.spans {
		if hexID(s.GetTraceId()) == traceID {
			out[s.GetName()] = s
		}
	}
	return out
}

func hexID(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func startReceiver(t *testing.T) (*receiver, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, r)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return r, lis.Addr().String()
}

func waitSpans(t *testing.T, r *receiver, traceID string, names ...string) map[string]*tracepb.Span {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := r.inTrace(traceID)
		missing := []string{}
		for _, n := range names {
			if got[n] == nil {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s lacks spans %v (has %d)", traceID, missing, len(got))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTracesJoinEnvoysTraceAndReachOTLP: with the OTEL_* variables
// pointing at a local OTLP receiver, Check, each ext_proc phase, the store,
// the policy and the rewrite are spans of the trace the request carried
// (W3C traceparent, or Envoy's B3 headers), and the proxy passes the trace
// on to the backend.
func TestTracesJoinEnvoysTraceAndReachOTLP(t *testing.T) {
	r, addr := startReceiver(t)
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+addr)
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	t.Setenv("OTEL_SERVICE_NAME", "gdprgate-test")

	now := time.Now().UTC().Truncate(time.Second)
	var backendTrace sync.Map
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		backendTrace.Store(req.URL.Path, req.Header.Get("traceparent"))
		crm.New(now).ServeHTTP(w, req)
	}))
	t.Cleanup(backend.Close)
	sc := apptest.New(t, apptest.Options{Now: now, Configure: func(c *config.Config) { c.Upstream = backend.URL }})
	conn := sc.GRPC(t)
	env := envoytest.New(envoytest.Options{Authz: conn, Proc: conn, UpstreamURL: backend.URL, ForwardAuthzMetadata: true,
		AuthzTimeout: 10 * time.Second, MessageTimeout: 10 * time.Second})
	t.Cleanup(env.Close)

	const w3cTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	resp := do(t, env, "GET", "/api/contacts/c-1", map[string]string{
		"x-gdpr-roles": "agent", "traceparent": "00-" + w3cTrace + "-00f067aa0ba902b7-01"}, "")
	if resp.Status != 200 {
		t.Fatalf("status %d", resp.Status)
	}
	spans := waitSpans(t, r, w3cTrace, "ext_authz.Check", "ext_proc", "ext_proc.request_headers",
		"ext_proc.response_headers", "ext_proc.response_body", "store.facts", "policy.decide", "redact.rewrite")
	if got := hexID(spans["ext_authz.Check"].GetParentSpanId()); got != "00f067aa0ba902b7" {
		t.Errorf("Check's parent span %s, want the request's 00f067aa0ba902b7", got)
	}
	if hexID(spans["ext_proc.response_body"].GetParentSpanId()) != hexID(spans["ext_proc"].GetSpanId()) {
		t.Error("the response body phase is not a child of the ext_proc span")
	}

	const b3Trace = "80f198ee56343ba864fe8b2a57d3eff7"
	resp = do(t, env, "GET", "/api/contacts/c-2", map[string]string{
		"x-gdpr-roles": "agent", "x-b3-traceid": b3Trace, "x-b3-spanid": "e457b5a2e4d86bd1", "x-b3-sampled": "1"}, "")
	if resp.Status != 200 {
		t.Fatalf("status %d", resp.Status)
	}
	waitSpans(t, r, b3Trace, "ext_authz.Check", "ext_proc")

	p, err := proxy.New(proxy.Options{Gate: sc.App.Gate, Upstream: backend.URL, MaxRequestBytes: 1 << 16, MaxBodyBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ps := httptest.NewServer(p)
	t.Cleanup(ps.Close)
	const proxyTrace = "0af7651916cd43dd8448eb211c80319c"
	req, _ := http.NewRequest("GET", ps.URL+"/api/contacts/c-3", nil)
	req.Header.Set("x-gdpr-roles", "agent")
	req.Header.Set("traceparent", "00-"+proxyTrace+"-b7ad6b7169203331-01")
	hresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	hresp.Body.Close()
	waitSpans(t, r, proxyTrace, "proxy", "policy.decide", "redact.rewrite")
	if tp, _ := backendTrace.Load("/api/contacts/c-3"); !strings.Contains(tp.(string), proxyTrace) {
		t.Errorf("backend got traceparent %q, want trace %s", tp, proxyTrace)
	}
}

// BenchmarkCheckTraced is BenchmarkCheck with tracing on: every Check
// creates its spans (joined to the request's traceparent) and hands them
// to a batching exporter that discards them.
func BenchmarkCheckTraced(b *testing.B) {
	tr := observe.NewTracing(sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter())))
	defer func() { _ = tr.Shutdown(context.Background()) }()
	client := authv3.NewAuthorizationClient(server(b))
	req := checkRequest(b, "GET", "/api/contacts/c-1", map[string]string{"x-gdpr-roles": "agent", "user-agent": "bench", "x-request-id": "r",
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "")
	ctx := context.Background()
	if _, err := client.Check(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Check(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
