// Package observe is gdprgate's observability in one place: OpenTelemetry
// tracing (W3C trace context and Envoy's B3 headers taken from requests,
// OTLP export configured by the standard OTEL_* variables), OPA-shaped
// decision logs through OPA's decision-log plugin, and the shadow-mode
// counters.
//
// Tracing is off by default and then costs nothing on the hot path: Start
// returns the caller's context and a shared no-op span without allocating.
package observe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
)

// Tracing is a running tracer provider.
type Tracing struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
}

// active is the process's tracing; nil when off.
var active atomic.Pointer[Tracing]

// noop is returned by Start when tracing is off: no allocation.
var noop = trace.SpanFromContext(context.Background())

// propagator reads Envoy's B3 headers (single and multi) and W3C
// traceparent/tracestate; traceparent wins when both are present, and
// both are written to the backend.
var propagator = propagation.NewCompositeTextMapPropagator(
	b3.New(b3.WithInjectEncoding(b3.B3MultipleHeader|b3.B3SingleHeader)),
	propagation.TraceContext{},
	propagation.Baggage{},
)

// TracingWanted reports whether tracing should run: asked for in the
// configuration, or OTEL_TRACES_EXPORTER=otlp; OTEL_SDK_DISABLED=true and
// OTEL_TRACES_EXPORTER=none turn it off.
func TracingWanted(configured bool) bool {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	switch strings.ToLower(os.Getenv("OTEL_TRACES_EXPORTER")) {
	case "none":
		return false
	case "otlp":
		return true
	}
	return configured
}

// StartTracing builds the OTLP exporter from the OTEL_* environment
// (OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL grpc or http/protobuf, the
// default; OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS, _TIMEOUT, ...),
// the resource from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
// (service.name defaults to gdprgate) and the sampler from
// OTEL_TRACES_SAMPLER[_ARG], and makes it the process's tracing.
func StartTracing(ctx context.Context) (*Tracing, error) {
	exp, err := exporter(ctx)
	if err != nil {
		return nil, err
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "gdprgate")),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	t := &Tracing{tp: tp, tracer: tp.Tracer("github.com/gdprgate/gdprgate")}
	active.Store(t)
	return t, nil
}

// NewTracing makes tp the process's tracing (tests: an in-memory exporter).
func NewTracing(tp *sdktrace.TracerProvider) *Tracing {
	t := &Tracing{tp: tp, tracer: tp.Tracer("github.com/gdprgate/gdprgate")}
	active.Store(t)
	return t
}

func exporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	proto := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch proto {
	case "grpc":
		return otlptracegrpc.New(ctx)
	case "", "http/protobuf":
		return otlptracehttp.New(ctx)
	}
	return nil, fmt.Errorf("tracing: OTEL_EXPORTER_OTLP_PROTOCOL %q is not grpc or http/protobuf", proto)
}

// Shutdown flushes the spans still buffered and stops tracing.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	active.CompareAndSwap(t, nil)
	return t.tp.Shutdown(ctx)
}

// Enabled reports whether tracing is on.
func Enabled() bool { return active.Load() != nil }

// Start starts a span, child of the one in ctx. With tracing off it returns
// ctx and a no-op span, allocating nothing.
func Start(ctx context.Context, name string) (context.Context, trace.Span) {
	t := active.Load()
	if t == nil {
		return ctx, noop
	}
	return t.tracer.Start(ctx, name)
}

// StartServer starts the span of an incoming request, joining the trace
// its headers carry (traceparent/tracestate, b3, x-b3-*). headers are
// lower-case names; md, when not nil, is the gRPC metadata of the call,
// consulted when the headers carry no trace.
func StartServer(ctx context.Context, name string, headers map[string]string, md metadata.MD) (context.Context, trace.Span) {
	t := active.Load()
	if t == nil {
		return ctx, noop
	}
	ctx = propagator.Extract(ctx, carrier{headers: headers, md: md})
	return t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
}

// StartServerHTTP is StartServer for net/http headers.
func StartServerHTTP(ctx context.Context, name string, h propagation.HeaderCarrier) (context.Context, trace.Span) {
	t := active.Load()
	if t == nil {
		return ctx, noop
	}
	ctx = propagator.Extract(ctx, h)
	return t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
}

// Inject writes the trace of ctx into outgoing HTTP headers (W3C and B3),
// so that the backend's spans join it. A no-op with tracing off.
func Inject(ctx context.Context, h propagation.HeaderCarrier) {
	if active.Load() == nil {
		return
	}
	propagator.Inject(ctx, h)
}

// IDs returns the trace and span ids of ctx's span ("" without one).
func IDs(ctx context.Context) (traceID, spanID string) {
	if active.Load() == nil {
		return "", ""
	}
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return "", ""
	}
	return sc.TraceID().String(), sc.SpanID().String()
}

// carrier reads trace headers from a request's header map, then from the
// gRPC metadata of the call carrying it.
type carrier struct {
	headers map[string]string
	md      metadata.MD
}

func (c carrier) Get(key string) string {
	if v, ok := c.headers[key]; ok {
		return v
	}
	if vs := c.md.Get(key); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

func (c carrier) Set(string, string) {}

func (c carrier) Keys() []string {
	keys := make([]string, 0, len(c.headers)+len(c.md))
	for k := range c.headers {
		keys = append(keys, k)
	}
	for k := range c.md {
		keys = append(keys, k)
	}
	return keys
}
