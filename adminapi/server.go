// Package adminapi is gdprgate's admin API: JSON over HTTP under /v1/ for the
// GDPR registers, evidence, subjects' computed state, wipes (WipeCtcAll) and
// the audit trail, plus /healthz, /readyz, /metrics, an OpenAPI document
// at /v1/openapi.json and the admin console (package console) under /ui/.
//
// Every /v1/ route needs a bearer token with a scope (see Scope*);
// /healthz, /readyz and /metrics are open so that probes and scrapers need no
// secret (they reveal no personal data). The listener may additionally
// require client certificates (mTLS): that is the integrator's tls.Config on
// the http.Server, not this handler's concern.
//
// Writes are all-or-nothing: a refused request changes nothing and appends no
// audit entry; an accepted one appends exactly one entry atomically with the
// change (the store's contract).
package adminapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gdprgate/gdprgate/adminapi/console"
	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/forget"
)

// Scopes a token may hold. They mirror the manual's permissions.
const (
	ScopeEditItems      = "edit_items"      // registers and config
	ScopeEditEvidence   = "edit_evidence"   // evidence write, import, revoke; subject metadata
	ScopeExportEvidence = "export_evidence" // evidence read, subject state
	ScopeWipe           = "wipe"            // wipe requests, status, cancel
	ScopeAuditRead      = "audit_read"      // audit trail
	ScopeAdmin          = "admin"           // everything, PUT/PATCH /v1/registers, turning gdpr_enforced off
	// ScopeImportHistory lets evidence writes carry their real created_at,
	// created_by and renewed_at (an import of historical records); without
	// it the server sets them. Every such record is audited as history.
	ScopeImportHistory = "import_history"
	// ScopeGdprPermission is the manual's GdprPermission: renew evidence of
	// purposes whose renewal_type is explicit ("Manual (if the agent has
	// rights)").
	ScopeGdprPermission = "gdpr_permission"
)

// scopeAnyToken marks a route that needs a valid token and no particular
// scope.
const scopeAnyToken = "*"

var knownScopes = []string{ScopeEditItems, ScopeEditEvidence, ScopeExportEvidence, ScopeWipe, ScopeAuditRead, ScopeAdmin, ScopeImportHistory, ScopeGdprPermission}

// Token is one admin credential. Only the SHA-256 of the bearer token is
// configured, never the token itself (see HashToken).
type Token struct {
	Name string `json:"name" yaml:"name"`
	// SHA256 is the lowercase hex SHA-256 of the bearer token.
	SHA256 string   `json:"sha256" yaml:"sha256"`
	Scopes []string `json:"scopes" yaml:"scopes"`
}

// HashToken returns the value to configure in Token.SHA256 for a bearer
// token.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Options configure the admin API. Store is required.
type Options struct {
	Store  cache.Store
	Tokens []Token
	// WipePlan says which backend calls wipe an entity; an entity without a
	// plan cannot be wiped (422).
	WipePlan forget.Plan
	// Hasher keys the subject hashes written to the audit trail and logs.
	Hasher audit.Hasher
	Logger *slog.Logger
	// Ready adds the integrator's readiness checks to /readyz (route map,
	// policy); the store, the registers and gdpr_enforced are always
	// checked.
	Ready func(ctx context.Context) []ReadyCheck
	// Gatherer is served on /metrics; nil serves an empty registry (the
	// global default registry is never used implicitly).
	Gatherer prometheus.Gatherer
	// MaxBodyBytes bounds every request body but imports (default 1 MiB).
	MaxBodyBytes int64
	// MaxImportBytes bounds an evidence import body (default 256 MiB).
	MaxImportBytes int64
	// MaxImport bounds the records of one import (default 100000).
	MaxImport int
	// ImportBatch is the number of records stored per PutEvidence call in a
	// non-atomic import (default 10000: on Redis a call is one write and one
	// audit entry per shard tag it touches, so 1000 records per call cost
	// Redis about twice the CPU per record and nine times the audit trail —
	// see BenchmarkImportSingleVsCluster in cache/redisstore).
	ImportBatch int
	// WipesPerMinute is the mass-deletion guard: see handleWipeCreate
	// (default 10). Used to build Forget when it is nil.
	WipesPerMinute int
	// Forget creates, admits and decides deletion work (nil: one is built
	// from Store, WipePlan, Hasher, WipesPerMinute and Clock, deletions
	// held for approval).
	Forget *forget.Executor
	// MaxDeletionsPerChange refuses an unconfirmed register change that
	// would create more deletions (default 100).
	MaxDeletionsPerChange int
	// Clock is "now" for legalisation status and subject state (default
	// time.Now).
	Clock func() time.Time
	// Console serves the admin console (package console) under /ui/; off
	// by default.
	Console bool
}

// Server is the admin API's http.Handler.
type Server struct {
	o      Options
	log    *slog.Logger
	mux    *http.ServeMux
	routes []route
	tokens []tokenEntry
}

type tokenEntry struct {
	name   string
	hash   [sha256.Size]byte
	scopes map[string]bool
}

// route is one entry of the route table: the mux and the OpenAPI document
// are both built from it, so they cannot drift apart.
type route struct {
	method, path string
	scope        string // "" = open
	summary      string
	body         string // OpenAPI schema name of the request body, or ""
	handler      http.HandlerFunc
}

// New checks o and builds the handler. Serve it as the whole handler of the
// admin listener (it owns /healthz, /readyz, /metrics and /v1/), e.g.
//
//	srv, err := adminapi.New(adminapi.Options{Store: st, Tokens: toks, WipePlan: plan, Hasher: h})
//	hs := &http.Server{Addr: "127.0.0.1:9192", Handler: srv, TLSConfig: tlsCfg /* optional mTLS */}
//
// The wipe worker (internal/forget) runs separately: forget.NewWorker(...).Run(ctx).
func New(o Options) (*Server, error) {
	if o.Store == nil {
		return nil, errors.New("adminapi: Options.Store is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.MaxImportBytes <= 0 {
		o.MaxImportBytes = 256 << 20
	}
	if o.MaxImport <= 0 {
		o.MaxImport = 100000
	}
	if o.ImportBatch <= 0 {
		o.ImportBatch = 10000
	}
	if o.WipesPerMinute <= 0 {
		o.WipesPerMinute = 10
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Gatherer == nil {
		o.Gatherer = prometheus.NewRegistry()
	}
	if o.MaxDeletionsPerChange <= 0 {
		o.MaxDeletionsPerChange = 100
	}
	if o.Forget == nil {
		ex, err := forget.NewExecutor(forget.ExecutorOptions{Store: o.Store, Plans: forget.Plans{Wipe: o.WipePlan}, Hasher: o.Hasher,
			Logger: o.Logger, PerMinute: o.WipesPerMinute, Clock: o.Clock})
		if err != nil {
			return nil, fmt.Errorf("adminapi: %w", err)
		}
		o.Forget = ex
	}
	s := &Server{o: o, log: o.Logger.With("component", "adminapi"), mux: http.NewServeMux()}
	for i, t := range o.Tokens {
		if t.Name == "" {
			return nil, fmt.Errorf("adminapi: token %d has no name", i)
		}
		raw, err := hex.DecodeString(strings.ToLower(strings.TrimSpace(t.SHA256)))
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("adminapi: token %q: sha256 must be 64 hex digits (use HashToken)", t.Name)
		}
		e := tokenEntry{name: t.Name, scopes: map[string]bool{}}
		copy(e.hash[:], raw)
		for _, sc := range t.Scopes {
			if !slices.Contains(knownScopes, sc) {
				return nil, fmt.Errorf("adminapi: token %q: unknown scope %q (known: %s)", t.Name, sc, strings.Join(knownScopes, ", "))
			}
			e.scopes[sc] = true
		}
		s.tokens = append(s.tokens, e)
	}
	s.buildRoutes()
	for _, r := range s.routes {
		h := http.Handler(r.handler)
		if r.scope != "" {
			h = s.authorize(r.scope, h)
		}
		s.mux.Handle(r.method+" "+r.path, h)
	}
	if o.Console {
		// The console is static files: it calls /v1/ with the operator's
		// token like any other client and adds no route of its own.
		s.mux.Handle(console.Prefix, console.Handler())
		s.mux.Handle("GET /ui", http.RedirectHandler(console.Prefix, http.StatusMovedPermanently))
	}
	// JSON answers for unmatched /v1/ paths instead of the mux's text.
	s.mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such admin API route: "+r.Method+" "+r.URL.Path)
	})
	return s, nil
}

// ServeHTTP serves the admin API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	// JSON answers are data, never a document: a browser opening one
	// directly runs nothing from it and may not frame it (the console's
	// own answers set their policy).
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	// Store reads for an operator wait out a busy Redis (store.write_timeout)
	// instead of failing on the decisions' store.timeout.
	s.mux.ServeHTTP(w, r.WithContext(cache.ForAdmin(r.Context())))
}

func (s *Server) buildRoutes() {
	add := func(method, path, scope, summary, body string, h http.HandlerFunc) {
		s.routes = append(s.routes, route{method, path, scope, summary, body, h})
	}
	add("GET", "/healthz", "", "Liveness: the process is up", "", s.handleHealth)
	add("GET", "/readyz", "", "Readiness: store reachable, registers loaded, GDPR enforced, route map and policy usable; the body lists every check and why it fails", "", s.handleReady)
	add("GET", "/metrics", "", "Prometheus metrics", "", promhttp.HandlerFor(s.o.Gatherer, promhttp.HandlerOpts{}).ServeHTTP)
	add("GET", "/v1/openapi.json", "", "This OpenAPI document", "", s.handleOpenAPI)
	add("GET", "/v1/whoami", scopeAnyToken, "The calling token's name and scopes (any valid token; the console shows what the token may do)", "", s.handleWhoami)

	s.mountRegisters(add)

	add("GET", "/v1/registers", ScopeEditItems, "The whole register set", "", s.handleRegistersGet)
	add("PUT", "/v1/registers", ScopeAdmin, "Replace the whole register set atomically (every member required; \"confirm\": true to turn gdpr_enforced off)", "Registers", s.handleRegistersPut)
	add("PATCH", "/v1/registers", ScopeAdmin, "Change part of the register set (JSON merge patch, RFC 7396; arrays are replaced whole)", "Registers", s.handleRegistersPatch)
	add("GET", "/v1/config", ScopeEditItems, "The system configuration", "", s.handleConfigGet)
	add("PUT", "/v1/config", ScopeEditItems, "Replace the system configuration (every member required; turning gdpr_enforced off needs the admin scope and \"confirm\": true)", "Config", s.handleConfigPut)
	add("PATCH", "/v1/config", ScopeEditItems, "Change part of the system configuration (JSON merge patch, RFC 7396; same rule for gdpr_enforced)", "Config", s.handleConfigPatch)

	add("POST", "/v1/evidence", ScopeEditEvidence, "Store one evidence record", "EvidenceInput", s.handleEvidenceCreate)
	add("GET", "/v1/evidence", ScopeExportEvidence, "Evidence of one subject (?entity=&id=)", "", s.handleEvidenceList)
	add("DELETE", "/v1/evidence/{entity}/{id}/{evidence_id}", ScopeEditEvidence, "Revoke one evidence record", "", s.handleEvidenceRevoke)
	add("POST", "/v1/evidence/{entity}/{id}/{evidence_id}/renew", ScopeGdprPermission, "Renew one evidence record of an explicit purpose (moves its origin to now)", "", s.handleEvidenceRenew)
	add("POST", "/v1/rules:evaluate", ScopeEditItems, "Dry run: which rules a communication with these attributes hits, its sensitivity and the evidence it would record", "CommunicationAttributes", s.handleRulesEvaluate)
	add("POST", "/v1/evidence:import", ScopeEditEvidence, "Bulk import (NDJSON or JSON array; ?atomic=true)", "EvidenceInput", s.handleImport)
	add("GET", "/v1/evidence:import", ScopeEditEvidence, "The limits of one import request (records, bytes), for clients that send a large file in chunks", "", s.handleImportLimits)

	add("GET", "/v1/subjects/{entity}/{id}", ScopeExportEvidence, "A subject's computed state", "", s.handleSubjectGet)
	add("PUT", "/v1/subjects/{entity}/{id}", ScopeEditEvidence, "Set a subject's origin and parent", "SubjectInput", s.handleSubjectPut)

	add("POST", "/v1/wipes", ScopeWipe, "Request a wipe (WipeCtcAll) of a subject and of the subjects below it (parent links); ?dry_run=true lists the steps", "WipeRequest", s.handleWipeCreate)
	add("GET", "/v1/wipes", ScopeWipe, "Wipes, newest first", "", s.handleWipeList)
	add("GET", "/v1/wipes/{id}", ScopeWipe, "One wipe and its steps", "", s.handleWipeGet)
	add("DELETE", "/v1/wipes/{id}", ScopeWipe, "Cancel a wipe that has not deleted anything yet", "", s.handleWipeCancel)

	add("GET", "/v1/deletions", ScopeWipe, "Deletion work (?state=held|queued|running|done|failed|rejected|not_executable|suspended|cancelled, ?kind=wipe|erasure|purge, ?limit=), held oldest first, others newest first", "", s.handleDeletionList)
	add("GET", "/v1/deletions/{id}", ScopeWipe, "One deletion and its steps", "", s.handleWipeGet)
	add("POST", "/v1/deletions/{id}/approve", ScopeWipe, "Approve a held deletion (and the wipes cascaded with it); passes the mass-deletion guard (\"confirm\": true beyond it)", "DeletionDecision", s.handleDeletionDecideOne(true))
	add("POST", "/v1/deletions/{id}/reject", ScopeWipe, "Reject a held deletion (and the wipes cascaded with it)", "DeletionDecision", s.handleDeletionDecideOne(false))
	add("POST", "/v1/deletions:approve", ScopeWipe, "Approve held deletions in bulk: {\"ids\": […]} or {\"all\": true} (\"kind\" narrows all); all pass the guard together or none is approved", "DeletionBulk", s.handleDeletionDecideBulk(true))
	add("POST", "/v1/deletions:reject", ScopeWipe, "Reject held deletions in bulk: {\"ids\": […]} or {\"all\": true}", "DeletionBulk", s.handleDeletionDecideBulk(false))
	add("GET", "/v1/reports/due", ScopeExportEvidence, "Subjects with a lifecycle transition or evidence purge due within ?within= (e.g. 7d, 36h; default 7d), with bits and instants; ?limit=", "", s.handleDueReport)
	add("GET", "/v1/lifecycle", ScopeEditItems, "The lifecycle executor: deletion mode, subjects indexed and due, held deletions, the re-indexing after the last register change", "", s.handleLifecycle)

	add("GET", "/v1/audit", ScopeAuditRead, "Audit trail, oldest first (?after=&limit=; filters ?actor=&action=&entity=&id= or subject=&since=&until=; NDJSON export with Accept: application/x-ndjson or ?format=ndjson)", "", s.handleAudit)
}

type tokenKey struct{}

// actor is the name of the token that authenticated the request.
func actor(ctx context.Context) string {
	if t, _ := ctx.Value(tokenKey{}).(*tokenEntry); t != nil {
		return t.name
	}
	return ""
}

// hasScope reports whether the request's token holds scope (or admin).
func hasScope(ctx context.Context, scope string) bool {
	t, _ := ctx.Value(tokenKey{}).(*tokenEntry)
	return t != nil && (t.scopes[scope] || t.scopes[ScopeAdmin])
}

// bearerToken reads "Authorization: Bearer <token>". The scheme is
// case-insensitive (RFC 9110, 11.1) and separated by one or more spaces.
func bearerToken(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// authorize checks the bearer token and its scope. Every configured hash is
// compared in constant time, and all of them are compared, so the timing
// tells nothing about which token (if any) matched.
func (s *Server) authorize(scope string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearerToken(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gdprgate-admin"`)
			writeError(w, http.StatusUnauthorized, "unauthenticated", "a bearer token is required (Authorization: Bearer <token>)")
			return
		}
		sum := sha256.Sum256([]byte(tok))
		var found *tokenEntry
		for i := range s.tokens {
			if subtle.ConstantTimeCompare(sum[:], s.tokens[i].hash[:]) == 1 {
				found = &s.tokens[i]
			}
		}
		if found == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gdprgate-admin", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "invalid_token", "the bearer token is not valid")
			return
		}
		if scope != scopeAnyToken && !found.scopes[scope] && !found.scopes[ScopeAdmin] {
			writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("token %q lacks the scope %q needed for %s %s", found.name, scope, r.Method, r.URL.Path))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tokenKey{}, found)))
	})
}

// whoami is the answer of GET /v1/whoami.
type whoami struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
}

// handleWhoami tells a client which token it holds and what it may do; it
// reveals nothing the token's holder does not already have.
func (s *Server) handleWhoami(w http.ResponseWriter, r *http.Request) {
	t, _ := r.Context().Value(tokenKey{}).(*tokenEntry)
	out := whoami{Name: t.name, Scopes: []string{}}
	for _, sc := range knownScopes {
		if t.scopes[sc] {
			out.Scopes = append(out.Scopes, sc)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// ReadyCheck is one condition of /readyz.
type ReadyCheck struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Reason says why the check fails (empty when OK). It names no
	// personal data and no secret.
	Reason string `json:"reason,omitempty"`
}

// readiness runs every check: the store answers, the registers load, GDPR
// is enforced, then the integrator's checks.
func (s *Server) readiness(ctx context.Context) []ReadyCheck {
	checks := []ReadyCheck{{Name: "store", OK: true}}
	if err := s.o.Store.Ping(ctx); err != nil {
		checks[0] = ReadyCheck{Name: "store", Reason: err.Error()}
	}
	ix, err := s.o.Store.Registers(ctx)
	if err != nil {
		checks = append(checks, ReadyCheck{Name: "registers", Reason: err.Error()})
	} else if ix.Version == 0 {
		// A fresh store: nothing is known, every route map check fails.
		checks = append(checks, ReadyCheck{Name: "registers", Reason: "none loaded yet (PUT /v1/registers, gdprgate admin load-registers, or --seed)"})
	} else {
		checks = append(checks, ReadyCheck{Name: "registers", OK: true})
		enf := ReadyCheck{Name: "gdpr_enforced", OK: ix.Registers.Config.GdprEnforced}
		if !enf.OK {
			enf.Reason = "gdpr_enforced is off in the registers' config: archived, expired and obliviated data counts as active for every caller"
		}
		checks = append(checks, enf)
	}
	if s.o.Ready != nil {
		checks = append(checks, s.o.Ready(ctx)...)
	}
	return checks
}

// handleReady answers 200 when every check passes, else 503; the body lists
// the checks and, for a 503, the reasons in one list.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := s.readiness(ctx)
	var reasons []string
	for _, c := range checks {
		if !c.OK {
			reasons = append(reasons, c.Name+": "+c.Reason)
		}
	}
	if len(reasons) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not_ready", "reasons": reasons, "checks": checks})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": checks})
}
