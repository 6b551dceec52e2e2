// Package gate is gdprgate's request and response decisions, independent of
// the protocol that carries them: Envoy ext_authz and ext_proc, the HTTP
// authz mode and the reverse proxy all call Gate.
//
// A request is matched against the route map, its caller identified, its
// subject's facts read from the store (warm: the local cache) and the policy
// asked (warm: its memo). The resulting Exchange carries what the response
// stage needs to redact the body.
package gate

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	opametrics "github.com/open-policy-agent/opa/v1/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/canon"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/identity"
	"github.com/gdprgate/gdprgate/internal/observe"
	"github.com/gdprgate/gdprgate/policy"
	"github.com/gdprgate/gdprgate/policy/model"
)

// Headers gdprgate sets. A client must not be able to forge them, so the
// gate strips any client-sent copy before the request reaches the backend.
const (
	HeaderCoverage = "x-gdpr-coverage"
	// HeaderCoverageBits colours each sensitivity bit the caller may see,
	// "0:blue,1:blue,3:red", for UIs that colour fields.
	HeaderCoverageBits = "x-gdpr-coverage-bits"
	HeaderRedacted     = "x-gdpr-redacted"
	HeaderDecisionID   = "x-gdpr-decision-id"
	// HeaderCommSensitivity is a communication's sensitivity mask (decimal)
	// from the rules table, or the registers' default_sensitivity.
	HeaderCommSensitivity = "x-gdpr-comm-sensitivity"
	// HeaderEvidence lists the evidence ids a communication recorded;
	// HeaderEvidenceRefused the legalisations it could not record evidence
	// for, with the reason ("marketing-consent:evidence_key");
	// HeaderRenewed the evidence ids it renewed.
	HeaderEvidence        = "x-gdpr-evidence"
	HeaderEvidenceRefused = "x-gdpr-evidence-refused"
	HeaderRenewed         = "x-gdpr-renewed"
)

// Forgeable lists the response-only headers stripped from client requests.
var Forgeable = []string{HeaderCoverage, HeaderCoverageBits, HeaderRedacted, HeaderDecisionID,
	HeaderCommSensitivity, HeaderEvidence, HeaderEvidenceRefused, HeaderRenewed}

// OwnHeaderPrefix starts every header gdprgate reads or sets. A client's
// copies never reach the backend: every front-end strips them upstream
// (IsOwnHeader) after the decision has read what it needs.
const OwnHeaderPrefix = "x-gdpr-"

// IsOwnHeader reports whether a request header name is one of gdprgate's
// (x-gdpr-*), case-insensitively and reading "_" as "-" as CGI-style
// backends do (x_gdpr_roles and x-gdpr-roles both become HTTP_X_GDPR_ROLES).
func IsOwnHeader(name string) bool {
	if len(name) < len(OwnHeaderPrefix) {
		return false
	}
	for i := 0; i < len(OwnHeaderPrefix); i++ {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		if c != OwnHeaderPrefix[i] {
			return false
		}
	}
	return true
}

// Options wires a Gate.
type Options struct {
	// DecisionLog, when set, receives every request decision in OPA's
	// decision-log event shape.
	DecisionLog *observe.DecisionLog
	Config      *config.Config
	Store       cache.Store
	Engine      *policy.Engine
	Identity    *identity.Verifier
	Hasher      audit.Hasher
	Logger      *slog.Logger
	// Registerer receives the decision metrics (nil: not registered).
	Registerer prometheus.Registerer
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// RectifyRetryFor is how long a rectification audit entry the store
	// refused is retried before it is logged as lost (0: 10 minutes).
	RectifyRetryFor time.Duration
	// BatchLookups: the store's reads are round trips (Redis), so a list
	// answer's subjects are collected first and read together
	// (Store.FactsMany) instead of one by one while it is rewritten. Off
	// for an in-process store, where the extra pass over the answer costs
	// more than it saves.
	BatchLookups bool
	// PlanKey is the secret sealed plans are derived from (see plan.go):
	// the configured hash key, so that every replica opens the others'
	// plans; nil gives a random key, good within this process.
	PlanKey []byte
}

// Gate makes the decisions. It is safe for concurrent use.
type Gate struct {
	cfg      *config.Config
	store    cache.Store
	engine   *policy.Engine
	ident    *identity.Verifier
	hasher   audit.Hasher
	log      *slog.Logger
	now      func() time.Time
	sample   float64
	metrics  *metrics
	idPrefix string
	idSeq    atomic.Uint64

	identityHeaders []string

	tableMu sync.Mutex
	table   atomic.Pointer[table]

	// origins are the subjects whose origin this process is recording or
	// recorded (until the store's invalidation reaches the cached facts),
	// so that a burst of answers for a new subject writes once.
	origins   sync.Map
	originsN  atomic.Int64
	originSem chan struct{}

	// unseen watches each route's answers for mapped paths never seen;
	// kept here so that a table rebuilt for new registers keeps counting.
	unseen map[*config.Route]*unseen

	rectifier *rectifier
	// batchLookups: see Options.BatchLookups.
	batchLookups bool
	commRetry    *commRetry
	// planKeys seal the plans ext_authz hands to ext_proc.
	planKeys *planKeys

	// dlog sends OPA-shaped decision logs (nil: not configured).
	dlog *observe.DecisionLog
}

// New builds a Gate.
func New(opts Options) (*Gate, error) {
	if opts.Config == nil || opts.Store == nil || opts.Engine == nil || opts.Identity == nil {
		return nil, errors.New("gate: config, store, engine and identity are required")
	}
	g := &Gate{
		cfg: opts.Config, store: opts.Store, engine: opts.Engine, ident: opts.Identity,
		hasher: opts.Hasher, log: opts.Logger, now: opts.Now,
		sample: *opts.Config.Decisions.Sample,

		originSem: make(chan struct{}, 16),
		dlog:      opts.DecisionLog,
	}
	if g.log == nil {
		g.log = slog.Default()
	}
	if g.now == nil {
		g.now = time.Now
	}
	var b [6]byte
	_, _ = crand.Read(b[:])
	g.idPrefix = hex.EncodeToString(b[:])
	for _, h := range []string{opts.Config.Identity.RolesHeader, opts.Config.Identity.CallerHeader, opts.Config.Identity.ProjectHeader, opts.Config.Identity.ModeHeader} {
		if h != "" {
			g.identityHeaders = append(g.identityHeaders, strings.ToLower(h))
		}
	}
	g.metrics = newMetrics(opts.Registerer)
	g.planKeys = newPlanKeys(opts.PlanKey, opts.Config.Routes)
	g.batchLookups = opts.BatchLookups
	g.rectifier = newRectifier(g, opts.RectifyRetryFor)
	g.commRetry = newCommRetry(g, opts.RectifyRetryFor)
	g.unseen = map[*config.Route]*unseen{}
	after := 0
	if opts.Config.Body.UnseenAfter != nil {
		after = *opts.Config.Body.UnseenAfter
	}
	for i := range opts.Config.Routes {
		rc := &opts.Config.Routes[i]
		paths := make([]string, 0, len(rc.Fields))
		for p := range rc.Fields {
			paths = append(paths, p)
		}
		sort.Strings(paths) // the order of redact.Map.Paths
		if u := newUnseen(rc.Name, paths, after); u != nil {
			g.unseen[rc] = u
		}
	}
	return g, nil
}

// Request is one HTTP request as the front-end saw it.
type Request struct {
	Method string
	// Path is the request target: path and optional ?query.
	Path   string
	Host   string
	Scheme string
	// Header returns a request header by lower-case name ("" when absent).
	Header func(name string) string
	// Headers returns every request header, lower-cased, for policies that
	// read input.attributes.request.http.headers (called only for them).
	Headers func() map[string]string
	// Body is the request body when the front-end has it (outbound routes).
	Body []byte
	// ResponseOnly: the caller only needs the response-stage plan (ext_proc
	// after ext_authz). Subjects in the request body are then not required:
	// those routes have no response work.
	ResponseOnly bool

	// Attributes is Envoy's CheckRequest.attributes when the front-end is
	// ext_authz: policies get it as input.attributes, as from
	// opa-envoy-plugin. Other front-ends leave it nil and describe the
	// request with the fields above and below.
	Attributes *authv3.AttributeContext
	// LazyAttributes, when Attributes is nil, gives them on demand (the
	// ext_authz fast path decodes them only when something reads them: a
	// policy that is not memoised, identity from Envoy's metadata, a
	// decision log).
	LazyAttributes func() *authv3.AttributeContext
	// Protocol is the HTTP version ("HTTP/1.1"); RemoteAddr and LocalAddr
	// are the client's and the listener's host:port.
	Protocol, RemoteAddr, LocalAddr string
	// Metadata is Envoy's dynamic metadata (ext_proc's metadata_context).
	Metadata *corev3.Metadata
	// NoResponse: the front-end never sees the backend's answer (the HTTP
	// authz mode), so a write's audit entry is written at the decision, and
	// a communication route (whose evidence comes from the answer) is
	// refused.
	NoResponse bool
	// BodyPartial: Body is only the first part of the request body (a
	// front-end limit: Envoy's allow_partial_message, the proxy's
	// body.max_request_bytes).
	BodyPartial bool
	// BodyUnseen: the request may carry a body the front-end did not pass
	// (Envoy without with_request_body for the route, on HTTP/2 where no
	// content-length announces it).
	BodyUnseen bool
}

// HeaderGetter adapts net/http headers to Request.Header. A repeated
// header's values are joined with ",", as Envoy joins them in a
// CheckRequest, so that every front-end gives the gate the same value (and
// the gate can refuse a repeated header it decides on).
func HeaderGetter(h http.Header) func(name string) string {
	return func(name string) string {
		v := h[CanonicalHeader(name)] // h.Values(name), without a new key each call
		switch len(v) {
		case 0:
			return ""
		case 1:
			return v[0]
		}
		return strings.Join(v, ",")
	}
}

// filterMetadata is one namespace of Envoy's dynamic metadata as the
// front-end has it: ext_authz's metadata_context, or ext_proc's.
func (req *Request) filterMetadata(namespace string) *structpb.Struct {
	if md := req.attributes().GetMetadataContext(); md != nil {
		return md.GetFilterMetadata()[namespace]
	}
	return req.Metadata.GetFilterMetadata()[namespace]
}

// attributes are Envoy's CheckRequest.attributes (nil from other
// front-ends), decoded on first use when they are lazy.
func (req *Request) attributes() *authv3.AttributeContext {
	if req.Attributes == nil && req.LazyAttributes != nil {
		req.Attributes, req.LazyAttributes = req.LazyAttributes(), nil
	}
	return req.Attributes
}

// HeaderMap adapts net/http headers to Request.Headers.
func HeaderMap(h http.Header) func() map[string]string {
	return func() map[string]string {
		m := make(map[string]string, len(h))
		for k, v := range h {
			m[strings.ToLower(k)] = strings.Join(v, ",")
		}
		return m
	}
}

// Verdict is the request-level answer.
type Verdict struct {
	Allow  bool
	Status int
	// Body is the JSON body of a denial; it never holds personal data.
	Body   []byte
	Reason string
	// UpstreamHeaders are set on the request forwarded to the backend.
	UpstreamHeaders map[string]string
	// ResponseHeaders are added to the response the client gets.
	ResponseHeaders map[string]string

	// Policy is what an opa-envoy-plugin policy asked for; nil when it
	// asked for nothing (read it through Additions).
	Policy *Additions
	// PlainBody: Body is the policy's own denial body, sent as it is
	// (opa-envoy-plugin's "body"), not gdprgate's JSON.
	PlainBody bool
}

// Additions are an opa-envoy-plugin policy's requests, with their meaning
// there. AppendHeaders ("headers") are added, without replacing existing
// values, to the upstream request when allowed and to the denial when
// denied. RemoveHeaders are removed from the upstream request and
// AddResponseHeaders added to the client's response (allowed).
// DynamicMetadata goes into ext_authz's dynamic metadata.
type Additions struct {
	AppendHeaders      []policy.Header
	RemoveHeaders      []string
	AddResponseHeaders []policy.Header
	DynamicMetadata    map[string]any
}

// Additions returns the policy's additions (none when Policy is nil).
func (v *Verdict) Additions() Additions {
	if v.Policy == nil {
		return Additions{}
	}
	return *v.Policy
}

// additions keeps nil for a result that asks for nothing.
func additions(a Additions) *Additions {
	if a.AppendHeaders == nil && a.RemoveHeaders == nil && a.AddResponseHeaders == nil && a.DynamicMetadata == nil {
		return nil
	}
	return &a
}

// Exchange is one request's decision state, kept for its response.
type Exchange struct {
	DecisionID string
	Verdict    Verdict

	route   *route
	caller  identity.Caller
	base    policy.Facts // caller and route facts, without a subject
	subject model.SubjectRef
	hasSubj bool
	visible uint32
	// origin is how the request-side subject's origin is recorded.
	origin cache.OriginSource
	// rect is an allowed write's audit entry, written when the backend
	// has answered (Gate.Responded).
	rect *Rectification
	// changed are the mapped fields a write's body changes.
	changed []string
	// comm is a communication route's plan (nil on other kinds).
	comm *commPlan
	// needsRequestBody: the response plan of a communication route needs
	// the request body (ext_proc must ask for it).
	needsRequestBody bool
	// layer is a layered policy's state (nil otherwise: no cost per
	// request for the default policy).
	layer *layerState
	// shadow is set in shadow mode: what enforcement would have done.
	shadow *shadowState
}

type shadowState struct {
	wouldDeny bool
	status    int
	reason    string
}

// Shadow reports whether the exchange runs in shadow mode (decided and
// redacted in a dry run only).
func (ex *Exchange) Shadow() bool { return ex != nil && ex.shadow != nil }

type layerState struct {
	// layered: the policy's entry point is not the GDPR decision.
	layered bool
	// result is the policy's result and metrics the decision's timers,
	// for the decision log.
	result  any
	metrics opametrics.Metrics
	// rd is the request's canonical reading (nil: unreadable).
	rd *reading
	// facts are the facts the request decision saw.
	facts policy.Facts
	// mask is an explicit visible_mask of the entry point: it replaces the
	// GDPR mask of the request's subject and narrows the masks of subjects
	// found in the response.
	mask    uint32
	maskSet bool
}

func (ex *Exchange) setEntryMask(m uint32) {
	ex.layer.mask, ex.layer.maskSet = m, true
	ex.visible = m
}

// Mapped reports whether the request matched a route of the route map.
func (ex *Exchange) Mapped() bool { return ex != nil && ex.route != nil }

// RouteName is the matched route's name ("" when unmapped).
func (ex *Exchange) RouteName() string {
	if ex == nil || ex.route == nil {
		return ""
	}
	return ex.route.cfg.Name
}

// NeedsBody reports whether the response body must be seen (and so
// buffered): the route maps fields, its subject is in the response or
// confirmed by it (subject.confirm), or the backend's creation instant of a
// subject gdprgate has not recorded it for is (origin_from).
func (ex *Exchange) NeedsBody() bool {
	if !ex.Mapped() || !ex.Verdict.Allow {
		return false
	}
	r := ex.route
	return r.fields != nil || r.subjectIn != nil && r.cfg.Subject.From == config.FromResponseBody ||
		r.confirmIn != nil && ex.hasSubj ||
		r.originIn != nil && ex.hasSubj && ex.origin < cache.OriginStated || ex.comm != nil
}

// NeedsRequestBody reports whether the response plan needs the request
// body (a communication route whose values are in it): ext_proc then asks
// Envoy for it and calls Check again with it.
func (ex *Exchange) NeedsRequestBody() bool { return ex != nil && ex.needsRequestBody }

// Warm reads the registers and compiles the route map against them, so
// that a mismatch is reported at start and fail-open has a route map even
// if the store is lost before the first request.
func (g *Gate) Warm(ctx context.Context) error {
	ix, err := g.store.Registers(ctx)
	if err != nil {
		return fmt.Errorf("gate: registers: %w", err)
	}
	if _, err := g.routes(ix); err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	return nil
}

// routes returns the route table for the current registers, rebuilding it
// when their version changed.
func (g *Gate) routes(ix *model.Index) (*table, error) {
	if t := g.table.Load(); t != nil && t.version == ix.Version {
		return t, nil
	}
	g.tableMu.Lock()
	defer g.tableMu.Unlock()
	if t := g.table.Load(); t != nil && t.version == ix.Version {
		return t, nil
	}
	t, err := compile(g.cfg, ix, g.cfg.HashKey)
	if err != nil {
		return nil, err
	}
	for _, rs := range t.byMethod {
		for _, r := range rs {
			r.unseen = g.unseen[r.cfg]
		}
	}
	g.table.Store(t)
	return t, nil
}

// decisionID is this process's random prefix and a counter. The dot keeps
// an id from reading like a subject id ("…c-1"), so a search of logs and
// audit entries for an id in clear finds only the id itself.
func (g *Gate) decisionID() string {
	return g.idPrefix + "." + strconv.FormatUint(g.idSeq.Add(1), 36)
}

// Check decides one request. It never returns an allow on an internal error:
// store, policy and deadline failures deny (503) unless the operator set
// fail_open, which the policy sees as a fact.
func (g *Gate) Check(ctx context.Context, req *Request) *Exchange {
	if req.ResponseOnly && req.Body == nil {
		// ext_proc: ext_authz's sealed plan, when it proves itself, is
		// the decision (it was logged and counted there).
		ex, result, err := g.openPlan(req)
		one(&g.metrics.planSeries, g.metrics.plans, result).Inc()
		if err == nil {
			return ex
		}
	}
	start := time.Now()
	ex := &Exchange{DecisionID: g.decisionID()}
	if layered := g.engine.Layered(); layered || g.dlog != nil {
		ex.layer = &layerState{layered: layered}
		if g.dlog != nil {
			ex.layer.metrics = opametrics.New()
			ex.layer.metrics.Timer(opametrics.ServerHandler).Start()
		}
	}
	ex.Verdict = g.check(ctx, req, ex)
	if ex.layer != nil && ex.layer.layered {
		ex.Verdict = g.layer(ctx, req, ex, ex.Verdict)
	}
	if r := ex.Rectification(); r != nil && req.NoResponse {
		// The front-end never sees the answer: record the change now, and
		// a change that cannot be audited does not happen.
		if err := g.rectifier.append(ctx, r.entry(g.now(), "unseen")); err != nil {
			g.log.Warn("rectification audit entry not written", "decision_id", ex.DecisionID, "err", err)
			ex.Verdict = deny(503, "audit_unavailable", "the change cannot be audited right now")
		} else {
			g.metrics.rectify.WithLabelValues("written").Inc()
		}
		ex.rect = nil
	}
	if g.shadowed(ex) {
		g.shadowVerdict(ex, req)
	}
	if ex.Verdict.ResponseHeaders == nil {
		ex.Verdict.ResponseHeaders = map[string]string{}
	}
	if ex.Verdict.Allow {
		if ex.Verdict.UpstreamHeaders == nil {
			ex.Verdict.UpstreamHeaders = map[string]string{}
		}
		ex.Verdict.UpstreamHeaders[HeaderDecisionID] = ex.DecisionID
	}
	stage := "request"
	if req.ResponseOnly {
		// ext_proc re-derives what ext_authz decided: count it apart so
		// metrics and logs do not show every request twice.
		stage = "response_plan"
	}
	if observe.Enabled() {
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			span.SetAttributes(attribute.String("gdprgate.decision_id", ex.DecisionID), attribute.String("gdprgate.route", ex.RouteName()),
				attribute.Bool("gdprgate.allow", ex.Verdict.Allow), attribute.String("gdprgate.reason", ex.Verdict.Reason))
		}
	}
	g.logDecision(ctx, ex, stage, time.Since(start))
	if g.dlog != nil && !req.ResponseOnly && g.sampled() {
		g.logOPA(ctx, ex, req, stage)
	}
	return ex
}

// shadowed reports whether the request's route (or, unmapped, the whole
// gate) runs in shadow mode.
func (g *Gate) shadowed(ex *Exchange) bool {
	if ex.route != nil && ex.route.cfg.Mode != "" {
		return ex.route.cfg.Mode == config.ModeShadow
	}
	return g.cfg.Mode == config.ModeShadow
}

// shadowVerdict lets the request through as it is: a denial is recorded
// (metric, log, decision log) as what enforcement would have done; an
// allowed request loses only gdprgate's response headers, so the client
// sees what it would without gdprgate. The response is redacted in a dry
// run (Rewrite).
func (g *Gate) shadowVerdict(ex *Exchange, req *Request) {
	ex.shadow = &shadowState{}
	v := ex.Verdict
	if !v.Allow {
		ex.shadow.wouldDeny, ex.shadow.status, ex.shadow.reason = true, v.Status, v.Reason
		if !req.ResponseOnly {
			g.metrics.shadow.WithLabelValues(ex.RouteName(), "would_deny", v.Reason).Inc()
			g.log.Info("shadow: request would be denied", "decision_id", ex.DecisionID, "route", ex.RouteName(),
				"status", v.Status, "reason", v.Reason)
		}
		// As opa-envoy-plugin's dry-run: an empty allow.
		ex.Verdict = Verdict{Allow: true, Status: 200, Reason: "shadow"}
		return
	}
	ex.Verdict.ResponseHeaders = nil
}

// sampled applies decisions.sample.
func (g *Gate) sampled() bool { return g.sample >= 1 || rand.Float64() < g.sample }

// logOPA sends the decision to OPA's decision-log plugin: the input the
// policy saw (built now if the decision came from the memo), its result
// and gdprgate's verdict.
func (g *Gate) logOPA(ctx context.Context, ex *Exchange, req *Request, stage string) {
	l := ex.layer
	l.metrics.Timer(opametrics.ServerHandler).Stop()
	var f *policy.Facts
	if ex.Mapped() {
		f = &l.facts
	}
	input, err := policy.InputJSON(f, policyRequest(req, l.rd, g.now()))
	if err != nil {
		input = nil
	}
	custom := map[string]any{
		"stage": stage, "route": ex.RouteName(), "allowed": ex.Verdict.Allow,
		"reason": ex.Verdict.Reason, "http_status": ex.Verdict.Status, "roles": ex.caller.RoleKey(),
	}
	if sh := ex.shadow; sh != nil {
		custom["mode"] = config.ModeShadow
		if sh.wouldDeny {
			custom["would"] = map[string]any{"allowed": false, "http_status": sh.status, "reason": sh.reason}
		}
	}
	e := observe.Event{DecisionID: ex.DecisionID, Input: input, Result: l.result, Metrics: l.metrics, Custom: custom}
	if ex.hasSubj {
		e.SubjectID, e.SubjectHash = ex.subject.ID, g.subjectLabel(ex.subject)
		custom["subject"] = e.SubjectHash
	}
	if l.result == nil {
		// Decided before the policy ran (unmapped, unreadable, 401):
		// gdprgate's verdict is the result.
		e.Result = map[string]any{"allowed": ex.Verdict.Allow, "http_status": ex.Verdict.Status, "reason": ex.Verdict.Reason}
	}
	g.dlog.Log(ctx, e)
}

func (g *Gate) check(ctx context.Context, req *Request, ex *Exchange) Verdict {
	// One reading of the request for every front-end, before anything
	// else: a request that can be read two ways is refused, never guessed.
	rd, err := read(req)
	if err != nil {
		return badRequest(err)
	}
	if ex.layer != nil {
		ex.layer.rd = &rd
	}
	var tbl *table
	storeDown := false
	if ix, err := g.store.Registers(ctx); err != nil {
		// Without registers nothing can be proven. Fail-open still needs
		// the last route map, so that it can redact what it lets through.
		g.metrics.storeErrors.Inc()
		g.log.Warn("registers unavailable", "decision_id", ex.DecisionID, "err", err)
		tbl = g.table.Load()
		if !g.cfg.FailOpen || tbl == nil {
			return deny(503, "store_unavailable", "gdprgate cannot reach its store; failing closed")
		}
		storeDown = true
	} else if tbl, err = g.routes(ix); err != nil {
		g.log.Error("route map does not compile against the registers", "err", err)
		return deny(503, "route_map_invalid", "the route map does not match the registers")
	}
	ix := tbl.index
	if err := rd.effectiveMethod(tbl, req); err != nil {
		return badRequest(err)
	}
	r, param := tbl.match(rd.method, rd.target.Path)
	if r == nil {
		if g.cfg.Unmapped == "deny" {
			return deny(403, "route_not_mapped", "this route is not in gdprgate's route map")
		}
		return Verdict{Allow: true, Reason: "unmapped"}
	}
	ex.route = r

	var caller identity.Caller
	if g.ident.UsesMetadata() {
		caller, err = g.ident.IdentifyEnvoy(req.Header, req.filterMetadata, g.now())
	} else {
		caller, err = g.ident.Identify(req.Header, g.now())
	}
	if err != nil {
		if ex.layer != nil {
			ex.layer.facts = policy.Facts{RouteKind: r.cfg.Kind, CommType: r.cfg.CommType, FailOpen: g.cfg.FailOpen}
		}
		v := deny(401, "unauthenticated", "a valid identity is required")
		v.ResponseHeaders = map[string]string{"www-authenticate": `Bearer realm="gdprgate"`}
		return v
	}
	ex.caller = caller
	perms := ix.Permissions(caller.Roles)
	if storeDown {
		perms = model.Permissions{Roles: caller.Roles}
	}
	ex.base = policy.Facts{
		RouteKind:       r.cfg.Kind,
		CommType:        r.cfg.CommType,
		Enforced:        ix.Registers.Config.GdprEnforced,
		Authenticated:   true,
		Roles:           caller.RoleKey(),
		SensitivityMask: perms.SensitivityMask,
		ViewArchived:    perms.ViewArchived,
		ViewExpired:     perms.ViewExpired,
		ExportEvidence:  perms.ExportEvidence,
		EditItems:       perms.EditItems,
		EditEvidence:    perms.EditEvidence,
		GdprPermission:  perms.GdprPermission,
		ArchiveMode:     strings.EqualFold(req.Header(g.cfg.Identity.ModeHeader), "archive"),
		FailOpen:        g.cfg.FailOpen,
		Unavailable:     storeDown,
	}

	// Where is the subject?
	f := ex.base
	var comm uint32 = r.comm
	var body []canon.Field
	if s := r.cfg.Subject; s != nil {
		if len(r.bodyPaths) > 0 {
			if req.ResponseOnly && len(req.Body) == 0 {
				if r.cfg.Kind == policy.KindCommunication {
					// Its response work (the evidence) needs the body's
					// values: the processor asks for the request body.
					ex.needsRequestBody = true
					return Verdict{Allow: true, Reason: "request_body_needed"}
				}
				// Routes whose subject is in the request body have no
				// response work; ext_authz decided with the body.
				return Verdict{Allow: true, Reason: "request_body_subject"}
			}
			if len(req.Body) == 0 {
				return deny(400, "subject_missing", "the request body must name the subject (is with_request_body configured?)")
			}
			if body, err = r.bodyFields(req.Body, rd.target.RawQuery); err != nil {
				return badRequest(err)
			}
		}
		id, err := g.subjectID(r, &rd, req, param, body)
		if err != nil {
			return badRequest(err)
		}
		if r.bodyComm >= 0 {
			v := body[r.bodyComm]
			ct, ok := r.cfg.CommTypes[v.Value]
			if !v.Found || v.Kind != canon.KindString || !ok {
				return deny(400, "communication_type_unknown", "the request body does not give a known communication type")
			}
			f.CommType = ct
			comm = model.CommTypes[ct]
		}
		if s.From != config.FromItem && s.From != config.FromResponseBody {
			if id == "" {
				return deny(400, "subject_missing", "the request does not name its subject")
			}
			ex.subject = model.SubjectRef{Entity: s.Entity, ID: id}
			ex.hasSubj = true
			ex.base.CommType = f.CommType
			var project string
			if comm != 0 {
				if project, err = g.project(req, caller); err != nil {
					return badRequest(err)
				}
			}
			src, err := g.subjectFacts(ctx, &f, ex.subject, comm, project)
			ex.origin = src
			if err != nil {
				g.metrics.storeErrors.Inc()
				g.log.Warn("store unavailable for a decision", "decision_id", ex.DecisionID, "err", err)
			}
		}
	}
	if r.cfg.Kind == policy.KindWrite && !req.ResponseOnly {
		if v, ok := g.writeFacts(r, req, ex, &f); !ok {
			return v
		}
	}
	if r.cfg.Kind == policy.KindWrite && req.ResponseOnly && len(r.writeFields) > 0 && rectifiedMethod(rd.method) {
		// ext_proc: ext_authz read the body and left the entry to write
		// once the backend answers. Without its metadata the change
		// would go unaudited: stop the write before the backend.
		ns := req.filterMetadata(authzNamespace)
		if ns == nil {
			return deny(500, "write_not_auditable", "gdprgate cannot audit this write: ext_proc must receive ext_authz's metadata (metadata_options.forwarding_namespaces)")
		}
		ex.rect = rectificationFrom(ns)
	}
	if r.cfg.Kind == policy.KindCommunication {
		if req.NoResponse {
			return deny(501, "communication_needs_response_stage", "a communication route records evidence from the backend's answer: protect it with Envoy (ext_authz and ext_proc) or gdprgate proxy")
		}
		plan, err := g.planCommunication(ix, r, &rd, req, param, body, ex)
		if err != nil {
			return badRequest(err)
		}
		ex.comm = plan
	}
	if ex.layer != nil {
		ex.layer.facts = f
	}
	d, err := g.decide(ctx, f, req, &rd)
	if err != nil {
		return g.policyFailure(ex, err)
	}
	ex.visible = d.VisibleMask
	if ex.layer != nil {
		ex.layer.result = d.Result
	}
	if ex.comm != nil {
		ex.comm.record, ex.comm.renewExplicit = d.Allow && d.RecordEvidence, d.Allow && d.RenewExplicit
	}
	if !d.Allow {
		if d.DeniedMask != 0 && len(ex.changed) > 0 {
			return denyFields(d, r.deniedFields(ex.changed, d.DeniedMask))
		}
		return denial(d)
	}
	if r.cfg.Kind == policy.KindWrite && ex.hasSubj && len(ex.changed) > 0 && rectifiedMethod(rd.method) {
		ex.rect = g.newRectification(ex)
	}
	v := Verdict{Allow: true, Status: 200, Reason: orDefault(d.Reason, "allowed"), UpstreamHeaders: copyHeaders(d.Headers), ResponseHeaders: d.Headers}
	if ex.comm != nil {
		// The communication's sensitivity, for a backend that records it
		// and for the agent's UI.
		sens := strconv.FormatUint(uint64(ex.comm.sensitivity), 10)
		v.UpstreamHeaders[HeaderCommSensitivity] = sens
		v.ResponseHeaders = copyHeaders(d.Headers)
		v.ResponseHeaders[HeaderCommSensitivity] = sens
	}
	return v
}

// policyFailure denies a request the policy could not decide: 400 when the
// request itself cannot be read into the policy's input, 503 otherwise.
func (g *Gate) policyFailure(ex *Exchange, err error) Verdict {
	var ie *policy.InputError
	if errors.As(err, &ie) {
		g.log.Info("request not readable as policy input", "decision_id", ex.DecisionID, "err", err)
		return deny(400, "request_unreadable", "the request cannot be read for the policy")
	}
	g.log.Error("policy evaluation failed", "decision_id", ex.DecisionID, "err", err)
	return deny(503, "policy_error", "the policy could not decide")
}

// denial turns a policy's denial into the verdict the front-ends send:
// gdprgate's JSON for its own decision object, the policy's own status,
// body and headers for opa-envoy-plugin's results.
func denial(d policy.Decision) Verdict {
	if d.Shape == policy.ShapeGDPR || d.Shape == "" {
		v := deny(d.Status, d.Reason, d.Message)
		v.ResponseHeaders = d.Headers
		return v
	}
	return Verdict{Status: d.Status, Reason: d.Reason, Body: []byte(d.Body), PlainBody: true,
		Policy: additions(Additions{AppendHeaders: d.EnvoyHeaders, DynamicMetadata: d.DynamicMetadata})}
}

// layer evaluates the entry point of a layered policy (an opa-envoy-plugin
// policy at policy.path) and puts gdprgate's GDPR verdict v on top: the
// request passes only when both allow; a denial of the entry point wins
// (it usually is authentication, which must not learn about subjects);
// the entry point's headers and metadata are added; its explicit
// visible_mask, and only that, changes what the response may show.
func (g *Gate) layer(ctx context.Context, req *Request, ex *Exchange, v Verdict) Verdict {
	if req.ResponseOnly {
		// ext_authz made the request decision; the processor only needs an
		// explicit visible_mask, and an entry point that cannot give one
		// is not asked again.
		if !v.Allow || !ex.NeedsBody() || !g.engine.EntryMaySetMask() {
			return v
		}
		d, err := g.decideEntry(ctx, ex, req)
		switch {
		case err != nil || !d.Allow:
			// Fail closed: show nothing rather than guess.
			ex.setEntryMask(0)
		case d.MaskSet:
			ex.setEntryMask(d.VisibleMask)
		}
		return v
	}
	if !ex.Mapped() && g.cfg.Unmapped == "deny" {
		return v
	}
	d, err := g.decideEntry(ctx, ex, req)
	if err != nil {
		return g.policyFailure(ex, err)
	}
	ex.layer.result = d.Result
	if !d.Allow {
		ex.visible = 0
		return denial(d)
	}
	if !v.Allow {
		return v
	}
	v.Policy = additions(Additions{AppendHeaders: d.EnvoyHeaders, RemoveHeaders: d.RequestHeadersToRemove,
		AddResponseHeaders: d.ResponseHeadersToAdd, DynamicMetadata: d.DynamicMetadata})
	if len(d.Headers) > 0 {
		if v.UpstreamHeaders == nil {
			v.UpstreamHeaders = map[string]string{}
		}
		resp := copyHeaders(v.ResponseHeaders)
		for k, val := range d.Headers {
			v.UpstreamHeaders[k] = val
			resp[k] = val
		}
		v.ResponseHeaders = resp
	}
	if d.MaskSet {
		ex.setEntryMask(d.VisibleMask)
	}
	return v
}

func (g *Gate) decideEntry(ctx context.Context, ex *Exchange, req *Request) (policy.Decision, error) {
	ctx, span := observe.Start(ctx, "policy.entry")
	defer span.End()
	var f *policy.Facts
	var rd *reading
	if ex.layer != nil {
		rd = ex.layer.rd
		if ex.Mapped() {
			f = &ex.layer.facts
		}
	}
	var pr *policy.Request
	if !g.engine.EntryMemoised() || f == nil {
		pr = policyRequest(req, rd, g.now())
	}
	return g.engine.DecideEntry(ctx, f, pr)
}

// subjectFacts fills f with the subject's facts and tells how its origin
// is recorded. A store failure marks the facts unavailable (the policy
// fails closed) and is returned for logging. It only reads: forgetting is
// the lifecycle executor's (internal/forget), never a read's.
func (g *Gate) subjectFacts(ctx context.Context, f *policy.Facts, ref model.SubjectRef, comm uint32, project string) (cache.OriginSource, error) {
	ctx, span := observe.Start(ctx, "store.facts")
	defer span.End()
	sf, err := g.store.Facts(ctx, ref, g.now())
	return fillFacts(f, &sf, err, comm, project)
}

// fillFacts fills f with a subject's stored facts sf (or the store's
// failure err) and tells how its origin is recorded.
func fillFacts(f *policy.Facts, sf *cache.Facts, err error, comm uint32, project string) (cache.OriginSource, error) {
	f.SubjectPresent = true
	if err != nil {
		f.Unavailable = true
		// Redact everything that could be redacted if a fail-open policy
		// lets the request through.
		f.Obliviated = ^uint32(0)
		// Unknown: an origin is not recorded on a guess.
		return cache.OriginSet, err
	}
	st := &sf.State
	f.SubjectKnown = sf.Known
	f.Restricted = sf.Restricted
	f.Active, f.Archived, f.Expired, f.Obliviated = st.Active, st.Archived, st.Expired, st.Obliviated
	f.Coverage = st.Coverage.String()
	f.CoverageExplicit, f.CoverageInherited = st.CoveredExplicit, st.CoveredInherited
	if comm != 0 {
		f.CommPermitted = st.Permits(comm, project)
	}
	return sf.Origin, nil
}

// decide asks the policy; req and rd are nil in the response stage.
func (g *Gate) decide(ctx context.Context, f policy.Facts, req *Request, rd *reading) (policy.Decision, error) {
	ctx, span := observe.Start(ctx, "policy.decide")
	defer span.End()
	var pr *policy.Request
	if req != nil && !g.engine.Memoised() {
		pr = policyRequest(req, rd, g.now())
	}
	return g.engine.Decide(ctx, f, pr)
}

// policyRequest gives the policy the request as Envoy's attributes: those
// Envoy sent (as opa-envoy-plugin passes them on), or ones synthesised
// from what the front-end saw, with the method the backend acts on and the
// canonical path, so that a policy reads the path as the route map does.
// rd is nil when the request could not be read.
func policyRequest(req *Request, rd *reading, now time.Time) *policy.Request {
	if a := req.attributes(); a != nil {
		return &policy.Request{Attributes: a, Now: now}
	}
	h := &authv3.AttributeContext_HttpRequest{
		Method: req.Method, Path: req.Path, Host: req.Host, Scheme: req.Scheme,
		Protocol: req.Protocol, Size: int64(len(req.Body)),
	}
	if rd != nil {
		h.Method, h.Path = rd.method, rd.target.Path
		if rd.target.RawQuery != "" {
			h.Path += "?" + rd.target.RawQuery
		}
	}
	if req.Headers != nil {
		h.Headers = req.Headers()
		h.Id = h.Headers["x-request-id"]
	}
	if len(req.Body) > 0 {
		h.Body = string(req.Body)
	}
	ac := &authv3.AttributeContext{
		Request:         &authv3.AttributeContext_Request{Time: timestamppb.New(now), Http: h},
		MetadataContext: req.Metadata,
	}
	if a := peer(req.RemoteAddr); a != nil {
		ac.Source = a
	}
	if a := peer(req.LocalAddr); a != nil {
		ac.Destination = a
	}
	return &policy.Request{Attributes: ac, Now: now}
}

func peer(hostport string) *authv3.AttributeContext_Peer {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil
	}
	p, _ := strconv.ParseUint(port, 10, 32)
	return &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
		SocketAddress: &corev3.SocketAddress{Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)}},
	}}}
}

func deny(status int, reason, message string) Verdict {
	if status == 0 {
		status = 403
	}
	return Verdict{Status: status, Reason: reason, Body: denyBody(reason, message)}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func copyHeaders(h map[string]string) map[string]string {
	out := make(map[string]string, len(h)+1)
	for k, v := range h {
		out[k] = v
	}
	return out
}

func (g *Gate) logDecision(ctx context.Context, ex *Exchange, stage string, took time.Duration) {
	result := "allow"
	if !ex.Verdict.Allow {
		result = "deny"
	}
	g.metrics.decision(stage, result, ex.Verdict.Reason).Inc()
	g.metrics.latencyOf(stage).Observe(took.Seconds())
	if g.sample < 1 && rand.Float64() >= g.sample {
		return
	}
	if !g.log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	attrs := []slog.Attr{
		slog.String("decision_id", ex.DecisionID),
		slog.String("stage", stage),
		slog.String("route", ex.RouteName()),
		slog.String("roles", ex.caller.RoleKey()),
		slog.String("result", result),
		slog.String("reason", ex.Verdict.Reason),
		slog.Int("status", ex.Verdict.Status),
		slog.Duration("latency", took),
	}
	if ex.hasSubj {
		attrs = append(attrs, slog.String("subject", g.subjectLabel(ex.subject)))
	}
	if traceID, spanID := observe.IDs(ctx); traceID != "" {
		attrs = append(attrs, slog.String("trace_id", traceID), slog.String("span_id", spanID))
	}
	g.log.LogAttrs(context.Background(), slog.LevelInfo, "decision", attrs...)
}

func (g *Gate) subjectLabel(ref model.SubjectRef) string {
	if g.cfg.Decisions.SubjectInClear {
		return ref.String()
	}
	return g.hasher.Subject(ref)
}
