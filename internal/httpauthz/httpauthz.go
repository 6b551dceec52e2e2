// Package httpauthz is gdprgate's HTTP authorization mode: the request
// decision of the gRPC ext_authz server, answered over plain HTTP for
// proxies that ask an HTTP service whether a request may pass: Envoy's HTTP
// ext_authz service, nginx auth_request, Caddy forward_auth and Traefik
// forwardAuth.
//
// # Where the original request comes from
//
// The handler is asked about a request it does not receive itself. Each
// proxy describes it differently, and the handler recognises, in order:
//
//   - Envoy HTTP ext_authz: the check request carries the original method
//     and, with path_prefix set, the original path and query appended to
//     the prefix ("/authz/api/contacts/c-1"). When Options.PathPrefix is set
//     and the request path continues below it, this form wins and the
//     X-Original-* / X-Forwarded-* headers are ignored: Envoy passes client
//     headers on to the check, so a client could otherwise forge them.
//   - nginx auth_request: X-Original-Method and X-Original-URI, which
//     nginx.conf sets with proxy_set_header ($request_method, $request_uri).
//   - Caddy forward_auth and Traefik forwardAuth: X-Forwarded-Method and
//     X-Forwarded-Uri (both proxies set them themselves, overwriting any
//     client copy), with X-Forwarded-Host and X-Forwarded-Proto.
//
// When the request path is exactly PathPrefix and neither header pair is
// present the proxy is misconfigured and the handler denies (400
// original_request_unknown) rather than deciding about the auth endpoint's
// own path, which is unmapped and would be allowed. With an empty PathPrefix
// the headers, when present, take precedence over the request's own path;
// set a prefix when Envoy can reach the handler.
//
// The original request's headers are the check request's headers: all four
// proxies pass them on (Envoy subject to allowed_headers).
//
// # Request bodies
//
// Outbound-communication routes name their subject in the request body.
// Envoy can forward the body (with_request_body) and Traefik can
// (forwardBody); up to 64 KiB of it is read, a larger body is not used.
// nginx auth_request and Caddy forward_auth never send the body, so such
// routes are denied there (400 subject_missing): gdprgate fails closed.
// Protect them with Envoy, ext_authz over gRPC, or `gdprgate proxy`.
//
// # Answers
//
// An allow is 200 with the decision's upstream and response headers
// (x-gdpr-coverage, x-gdpr-coverage-bits, x-gdpr-decision-id) as response headers, for the proxy
// to copy onto the upstream request and the client's response (nginx
// auth_request_set, Caddy copy_headers, Traefik authResponseHeaders, Envoy
// allowed_upstream_headers / allowed_client_headers_on_success). A denial
// is the decision's status with its JSON body, which Envoy, Caddy and
// Traefik hand to the client as is.
//
// nginx auth_request only understands 2xx, 401 and 403 from the auth
// subrequest; any other status becomes a 500 and the body is always
// dropped. When the request came in nginx's form (X-Original-URI) a denial
// other than 401 is therefore answered 403, and every answer carries
// X-Gdpr-Status (the real status) and X-Gdpr-Reason so that nginx.conf can
// restore the status: testdata/nginx.conf maps it in a named location, so a
// wiped subject reaches the client as 404, not 403.
//
// # Proxy settings
//
//   - Envoy: http_service with server_uri on the handler's listener and
//     path_prefix equal to Options.PathPrefix (not path_override or
//     method_override: the check must carry the original path and method);
//     with_request_body for outbound routes; authorization_response
//     allowed_upstream_headers x-gdpr-coverage, x-gdpr-coverage-bits and
//     x-gdpr-decision-id, allowed_client_headers_on_success x-gdpr-coverage
//     and x-gdpr-coverage-bits, and
//     allowed_client_headers content-type and www-authenticate.
//   - nginx: testdata/nginx.conf.
//   - Caddy: testdata/Caddyfile.
//   - Traefik: forwardAuth address http://<gdprgate>/authz (exactly the
//     prefix), authResponseHeaders x-gdpr-coverage, x-gdpr-coverage-bits and
//     x-gdpr-decision-id,
//     trustForwardHeader false (Traefik then sets X-Forwarded-* itself).
//
// # Identity and gdprgate's own headers
//
// The check request carries the client's headers, so the identity headers
// (x-gdpr-roles, x-gdpr-caller, x-gdpr-project) gdprgate decides with must
// be set by the proxy from its own authentication, never passed from the
// client (or gdprgate verifies a JWT itself). No client's x-gdpr-* header
// may reach the backend: an allow lists the client's copies in
// X-Envoy-Auth-Headers-To-Remove, which Envoy's HTTP ext_authz removes;
// nginx.conf and the Caddyfile in testdata drop them explicitly, and Traefik
// needs a headers middleware after forwardAuth doing the same.
//
// # What this mode cannot do
//
// The auth request is made before the backend answers and never sees its
// response, so this mode gives request decisions only: response bodies are
// not redacted (an agent allowed to read a contact gets every field the
// backend returns, health notes included), list items are not filtered and
// subjects named in a response body are not checked. Routes that need that
// must go through ext_proc (Envoy) or `gdprgate proxy`. The handler logs a
// warning the first time it allows each such route.
package httpauthz

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/propagation"

	"github.com/gdprgate/gdprgate/internal/gate"
	"github.com/gdprgate/gdprgate/internal/observe"
)

// MaxBodyBytes bounds the request body read for a decision.
const MaxBodyBytes = 64 << 10

// Headers of the answer that carry the decision for proxies that cannot
// read the status or the body (nginx auth_request).
const (
	HeaderStatus = "X-Gdpr-Status"
	HeaderReason = "X-Gdpr-Reason"
)

// Request headers naming the original request.
const (
	headerOriginalMethod  = "X-Original-Method"
	headerOriginalURI     = "X-Original-URI"
	headerForwardedMethod = "X-Forwarded-Method"
	headerForwardedURI    = "X-Forwarded-Uri"
	headerForwardedHost   = "X-Forwarded-Host"
	headerForwardedProto  = "X-Forwarded-Proto"
)

// Options configures the handler.
type Options struct {
	// PathPrefix is where the handler is mounted ("/authz"). Envoy's HTTP
	// ext_authz appends the original path to its path_prefix, which must
	// then be the same; nginx, Caddy and Traefik must call exactly this
	// path.
	PathPrefix string
	// Logger receives warnings (nil: slog.Default()).
	Logger *slog.Logger
}

// convention is the way a proxy described the original request.
type convention int

const (
	conventionEnvoy     convention = iota // the request's own method and path
	conventionNginx                       // X-Original-*
	conventionForwarded                   // X-Forwarded-* (Caddy, Traefik)
)

type handler struct {
	g      *gate.Gate
	prefix string
	log    *slog.Logger
	// warned holds the routes already reported as needing response work
	// this mode cannot do, so the warning is logged once per route.
	warned sync.Map
}

// New returns the HTTP authz handler deciding with g.
func New(g *gate.Gate, opts Options) http.Handler {
	h := &handler{g: g, prefix: strings.TrimSuffix(opts.PathPrefix, "/"), log: opts.Logger}
	if h.log == nil {
		h.log = slog.Default()
	}
	return h
}

// errUnknownOriginal means the check request did not say what it checks.
var errUnknownOriginal = errors.New("the check request does not name the original request")

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if observe.Enabled() {
		ctx, span := observe.StartServerHTTP(r.Context(), "http_authz", propagation.HeaderCarrier(r.Header))
		defer span.End()
		r = r.WithContext(ctx)
	}
	req, conv, err := h.original(r)
	if err != nil {
		if errors.Is(err, errNotHere) {
			http.NotFound(w, r)
			return
		}
		h.log.Warn("http authz: unusable check request", "path", r.URL.Path, "err", err)
		body, _ := json.Marshal(map[string]string{"error": "original_request_unknown", "message": err.Error()})
		writeDeny(w, conv, gate.Verdict{Status: http.StatusBadRequest, Reason: "original_request_unknown", Body: body}, "")
		return
	}
	req.Body = readBody(r, h.log)

	ex := h.g.Check(r.Context(), req)
	v := ex.Verdict
	if !v.Allow {
		writeDeny(w, conv, v, ex.DecisionID)
		return
	}
	if ex.NeedsBody() {
		if _, seen := h.warned.LoadOrStore(ex.RouteName(), true); !seen {
			h.log.Warn("http authz: route needs response redaction, which this mode cannot do; its responses pass unredacted (use ext_proc or gdprgate proxy)",
				"route", ex.RouteName())
			if ex.SpellingUnguarded() {
				h.log.Warn("http authz: route's subject is confirmed from the answer (subject.confirm), which this mode never sees; another spelling of an id that the backend accepts (C-2 for c-2) is judged as a subject never seen: give the route subject.id_pattern",
					"route", ex.RouteName())
			}
		}
	}
	hdr := w.Header()
	for k, val := range v.UpstreamHeaders {
		hdr.Set(k, val)
	}
	if rm := clientOwnHeaders(r.Header, v.UpstreamHeaders); rm != "" {
		hdr.Set(HeaderRemove, rm)
	}
	for k, val := range v.ResponseHeaders {
		hdr.Set(k, val)
	}
	// A policy's headers and response headers are answered like gdprgate's:
	// the proxy copies the ones its configuration names.
	for _, ph := range v.Additions().AppendHeaders {
		hdr.Add(ph.Key, ph.Value)
	}
	for _, ph := range v.Additions().AddResponseHeaders {
		hdr.Add(ph.Key, ph.Value)
	}
	hdr.Set(HeaderStatus, "200")
	hdr.Set(HeaderReason, token(v.Reason))
	w.WriteHeader(http.StatusOK)
}

// HeaderRemove lists, in an allow, the request headers Envoy's HTTP
// ext_authz removes before the request goes upstream.
const HeaderRemove = "X-Envoy-Auth-Headers-To-Remove"

// clientOwnHeaders names the client's x-gdpr-* headers that the answer does
// not set itself (Envoy removes after it sets), comma-separated.
func clientOwnHeaders(h http.Header, set map[string]string) string {
	var names []string
	for k := range h {
		lk := strings.ToLower(k)
		if _, ok := set[lk]; !ok && gate.IsOwnHeader(lk) {
			names = append(names, lk)
		}
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// errNotHere: the request is outside PathPrefix.
var errNotHere = errors.New("not under the path prefix")

// original reconstructs the request the proxy asks about.
func (h *handler) original(r *http.Request) (*gate.Request, convention, error) {
	path := r.URL.EscapedPath()
	rest := path
	if h.prefix != "" {
		var ok bool
		if rest, ok = strings.CutPrefix(path, h.prefix); !ok || rest != "" && rest[0] != '/' {
			return nil, conventionEnvoy, errNotHere
		}
	}
	header := gate.HeaderGetter(r.Header)
	req := &gate.Request{Host: r.Host, Scheme: "http", Header: header, Headers: gate.HeaderMap(r.Header), NoResponse: true}
	if r.TLS != nil {
		req.Scheme = "https"
	}

	// Below the prefix the path is Envoy's: trust it over any header.
	ownPath := h.prefix != "" && rest != "" && rest != "/"
	if !ownPath {
		if uri := r.Header.Get(headerOriginalURI); uri != "" {
			return forwarded(req, r.Header.Get(headerOriginalMethod), uri, r, conventionNginx)
		}
		if uri := r.Header.Get(headerForwardedURI); uri != "" {
			return forwarded(req, r.Header.Get(headerForwardedMethod), uri, r, conventionForwarded)
		}
		if h.prefix != "" && rest == "" {
			return nil, conventionEnvoy, errUnknownOriginal
		}
	}
	if rest == "" {
		rest = "/"
	}
	req.Method = r.Method
	req.Path = rest
	if r.URL.RawQuery != "" {
		req.Path += "?" + r.URL.RawQuery
	}
	return req, conventionEnvoy, nil
}

// forwarded fills req from a proxy's X-Original-* or X-Forwarded-* headers.
func forwarded(req *gate.Request, method, uri string, r *http.Request, conv convention) (*gate.Request, convention, error) {
	if !strings.HasPrefix(uri, "/") {
		return nil, conv, errors.New("the original URI must be a path starting with /")
	}
	if method == "" {
		// nginx subrequests keep the client's method; Caddy and Traefik
		// always send one. Fall back to the check request's own.
		method = r.Method
	}
	req.Method = strings.ToUpper(method)
	req.Path = uri
	if host := r.Header.Get(headerForwardedHost); host != "" {
		req.Host = host
	}
	if proto := r.Header.Get(headerForwardedProto); proto != "" {
		req.Scheme = proto
	}
	return req, conv, nil
}

// readBody reads at most MaxBodyBytes of the forwarded body. A larger body
// is not used at all: a truncated JSON document never names a subject, and
// a route that needs one then fails closed in the gate.
func readBody(r *http.Request, log *slog.Logger) []byte {
	if r.Body == nil || r.ContentLength == 0 {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			log.Warn("http authz: reading the forwarded body failed", "err", err)
		}
		return nil
	}
	if len(b) > MaxBodyBytes {
		log.Warn("http authz: forwarded body larger than the limit; deciding without it", "limit", MaxBodyBytes)
		return nil
	}
	return b
}

// writeDeny answers a denial. nginx's form gets 403 (401 stays 401), the
// only statuses auth_request passes on; X-Gdpr-Status keeps the real one.
func writeDeny(w http.ResponseWriter, conv convention, v gate.Verdict, decisionID string) {
	status := v.Status
	if status == 0 {
		status = http.StatusForbidden
	}
	hdr := w.Header()
	for k, val := range v.ResponseHeaders {
		hdr.Set(k, val)
	}
	for _, ph := range v.Additions().AppendHeaders {
		hdr.Add(ph.Key, ph.Value)
	}
	if decisionID != "" {
		hdr.Set(gate.HeaderDecisionID, decisionID)
	}
	hdr.Set(HeaderStatus, strconv.Itoa(status))
	hdr.Set(HeaderReason, token(v.Reason))
	if !v.PlainBody {
		hdr.Set("Content-Type", "application/json")
	}
	hdr.Set("Cache-Control", "no-store")
	code := status
	if conv == conventionNginx && code != http.StatusUnauthorized {
		code = http.StatusForbidden
	}
	w.WriteHeader(code)
	_, _ = w.Write(v.Body)
}

// token keeps a reason safe to paste into a header and into the JSON body
// nginx.conf builds from it: only [a-z0-9_.-] pass.
func token(s string) string {
	b := []byte(strings.ToLower(s))
	n := 0
	for _, c := range b {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' {
			b[n] = c
			n++
		}
	}
	return string(b[:n])
}
