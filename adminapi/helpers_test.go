package adminapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/memstore"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/forget"
	"github.com/gdprgate/gdprgate/policy/model"
)

// Test tokens, one per scope; the token text is its scope.
var testTokens = []string{ScopeEditItems, ScopeEditEvidence, ScopeExportEvidence, ScopeWipe, ScopeAuditRead, ScopeAdmin, ScopeImportHistory, ScopeGdprPermission}

var testPlan = forget.Plan{"contact": {
	{Name: "contact", Method: "DELETE", Path: "/api/contacts/{id}"},
	{Name: "calls", Method: "DELETE", Path: "/api/contacts/{id}/calls"},
	{Name: "issues", Method: "DELETE", Path: "/api/issues?contact_id={id}", Issue: true},
}}

type env struct {
	t     testing.TB
	srv   *Server
	http  *httptest.Server
	store *memstore.Store
	now   time.Time
}

func newEnv(t testing.TB, tweak ...func(*Options)) *env {
	t.Helper()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	data, err := os.ReadFile("testdata/seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	seed, err := model.ParseSeed(data, now)
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
	st := memstore.New(cache.Options{Clock: func() time.Time { return now }})
	if err := st.Seed(context.Background(), seed); err != nil {
		t.Fatal(err)
	}
	var toks []Token
	for _, tk := range testTokens {
		toks = append(toks, Token{Name: "tok-" + tk, SHA256: HashToken(tk), Scopes: []string{tk}})
	}
	o := Options{
		Store: st, Tokens: toks, WipePlan: testPlan, Hasher: audit.NewHasher([]byte("k")),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Clock:  func() time.Time { return now },
	}
	for _, f := range tweak {
		f(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return &env{t: t, srv: s, http: hs, store: st, now: now}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("answer is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// do sends a request; token "" sends none; headers are "Key: value".
func (e *env) do(method, path, token, body string, headers ...string) resp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	res, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, b}
}

// snapshot is what a refused request must leave unchanged.
type snapshot struct {
	version  int64
	regs     string
	evidence int
	audit    int
}

func (e *env) snapshot() snapshot {
	e.t.Helper()
	ctx := context.Background()
	ix, err := e.store.Registers(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := json.Marshal(ix.Registers)
	rec, _ := e.store.Subject(ctx, model.SubjectRef{Entity: "contact", ID: "c-1"})
	entries, _, _ := e.store.Audit(ctx, "", 100000)
	return snapshot{ix.Version, string(b), len(rec.Evidence), len(entries)}
}

func (e *env) lastAudit() audit.Entry {
	e.t.Helper()
	entries, _, _ := e.store.Audit(context.Background(), "", 100000)
	if len(entries) == 0 {
		e.t.Fatal("no audit entries")
	}
	return entries[len(entries)-1]
}

func decodeJSON(res *http.Response, out any) error {
	defer res.Body.Close()
	return json.NewDecoder(res.Body).Decode(out)
}

// auditTail is the last n audit entries, oldest first.
func (e *env) auditTail(n int) []audit.Entry {
	e.t.Helper()
	entries, _, _ := e.store.Audit(context.Background(), "", 100000)
	if len(entries) < n {
		e.t.Fatalf("%d audit entries, want at least %d", len(entries), n)
	}
	return entries[len(entries)-n:]
}
