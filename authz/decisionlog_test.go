package authz_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gdprgate/gdprgate/authz/envoytest"
	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/observe"
	"github.com/gdprgate/gdprgate/internal/testid"
	defaultpolicy "github.com/gdprgate/gdprgate/rego"
)

// logSink is an HTTP decision-log service: OPA's plugin POSTs gzipped
// JSON arrays of events.
type logSink struct {
	mu     sync.Mutex
	events []map[string]any
}

func (s *logSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var rd io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		rd = zr
	}
	var batch []map[string]any
	if err := json.NewDecoder(rd).Decode(&batch); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	s.mu.Lock()
	s.events = append(s.events, batch...)
	s.mu.Unlock()
}

func (s *logSink) find(id string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		if e["decision_id"] == id {
			return e
		}
	}
	return nil
}

// policyWithMask is the default policy plus an OPA mask rule of the
// security team's own.
func policyWithMask(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	err := fs.WalkDir(defaultpolicy.Default, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(defaultpolicy.Default, p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, p), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	mask := "package system.log\n\nmask contains \"/input/attributes/request/http/method\"\n"
	if err := os.WriteFile(filepath.Join(dir, "mask.rego"), []byte(mask), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDecisionLogsInOPAShapeWithGDPRPrivacy: decisions reach an HTTP
// decision-log service through OPA's plugin in OPA's event shape, with the
// trace id, the subject hashed, header values and bodies masked, and the
// policy's own mask rules applied on top.
func TestDecisionLogsInOPAShapeWithGDPRPrivacy(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tr := observe.NewTracing(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)))
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })

	sink := &logSink{}
	sinkSrv := httptest.NewServer(sink)
	t.Cleanup(sinkSrv.Close)
	now := time.Now().UTC().Truncate(time.Second)
	backend := httptest.NewServer(crm.New(now))
	t.Cleanup(backend.Close)
	sc := apptest.New(t, apptest.Options{Now: now, Configure: func(c *config.Config) {
		c.PolicyDir = policyWithMask(t)
		c.Decisions.ClearHeaders = []string{"x-request-id"}
		c.OPA = map[string]any{
			"labels":   map[string]any{"app": "crm"},
			"services": map[string]any{"logsink": map[string]any{"url": sinkSrv.URL}},
			"decision_logs": map[string]any{"service": "logsink",
				"reporting": map[string]any{"min_delay_seconds": 1, "max_delay_seconds": 1}},
		}
	}})
	conn := sc.GRPC(t)
	env := envoytest.New(envoytest.Options{Authz: conn, Proc: conn, UpstreamURL: backend.URL, ForwardAuthzMetadata: true,
		AuthzTimeout: 10 * time.Second, MessageTimeout: 10 * time.Second})
	t.Cleanup(env.Close)

	const traceID = "5bf92f3577b34da6a3ce929d0e0e4736"
	resp := do(t, env, "GET", "/api/contacts/c-1?view=c-1", map[string]string{"x-gdpr-roles": "agent", "x-request-id": "req-77",
		"authorization": "Bearer secret-token", "traceparent": "00-" + traceID + "-00f067aa0ba902b7-01"}, "")
	if resp.Status != 200 {
		t.Fatalf("status %d", resp.Status)
	}
	id := resp.AuthzMetadata.GetFields()["decision_id"].GetStringValue()
	var ev map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for ev = sink.find(id); ev == nil; ev = sink.find(id) {
		if time.Now().After(deadline) {
			t.Fatalf("decision %s never reached the sink", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
	raw, _ := json.Marshal(ev)
	for _, key := range []string{"decision_id", "path", "input", "result", "timestamp", "metrics", "labels", "trace_id", "span_id"} {
		if _, ok := ev[key]; !ok {
			t.Errorf("event lacks %q: %s", key, raw)
		}
	}
	if ev["path"] != "gdprgate/authz/decision" || ev["trace_id"] != traceID {
		t.Errorf("path %v, trace_id %v", ev["path"], ev["trace_id"])
	}
	if labels, _ := ev["labels"].(map[string]any); labels["app"] != "crm" {
		t.Errorf("labels %v", ev["labels"])
	}
	if res, _ := ev["result"].(map[string]any); res["allow"] != true {
		t.Errorf("result %v, want the policy's decision object", ev["result"])
	}
	// The id as a value or in a path or query; decision ids are random hex
	// and may contain "c-1" ("…56c-1").
	if strings.Contains(string(raw), `"c-1"`) || strings.Contains(string(raw), "/c-1") || strings.Contains(string(raw), "=c-1") || strings.Contains(string(raw), "secret-token") {
		t.Errorf("the subject id or a credential is in clear: %s", raw)
	}
	custom, _ := ev["custom"].(map[string]any)
	hash, _ := custom["subject"].(string)
	if hash == "" || !strings.Contains(string(raw), `"parsed_path":["api","contacts","`+hash+`"]`) {
		t.Errorf("subject hash %q not in place of the id: %s", hash, raw)
	}
	if !strings.Contains(string(raw), `"x-request-id":"req-77"`) || !strings.Contains(string(raw), `"x-gdpr-roles":"**REDACTED**"`) {
		t.Errorf("headers not masked as configured: %s", raw)
	}
	if erased, _ := ev["erased"].([]any); len(erased) != 1 || erased[0] != "/input/attributes/request/http/method" {
		t.Errorf("the policy's mask rule was not applied: erased %v", ev["erased"])
	}
	if metrics, _ := ev["metrics"].(map[string]any); metrics["timer_server_handler_ns"] == nil {
		t.Errorf("metrics %v", ev["metrics"])
	}
}

// TestConsoleDecisionLogs: decision_logs.console prints OPA's console
// events (what `opa run` prints), one JSON object per line.
func TestConsoleDecisionLogs(t *testing.T) {
	var mu sync.Mutex
	var out bytes.Buffer
	sc := apptest.New(t, apptest.Options{DecisionLogOutput: lockedWriter{&mu, &out}, Configure: func(c *config.Config) {
		c.OPA = map[string]any{"decision_logs": map[string]any{"console": true}}
	}})
	conn := sc.GRPC(t)
	env := envoytest.New(envoytest.Options{Authz: conn, UpstreamURL: "http://127.0.0.1:1", AuthzTimeout: 10 * time.Second})
	t.Cleanup(env.Close)
	resp := do(t, env, "GET", "/api/contacts/c-5", map[string]string{"x-gdpr-roles": "agent"}, "")
	if resp.Status != 404 {
		t.Fatalf("status %d", resp.Status)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		s := out.String()
		mu.Unlock()
		if strings.Contains(s, `"msg":"Decision Log"`) {
			var line map[string]any
			if err := json.Unmarshal([]byte(strings.SplitN(s, "\n", 2)[0]), &line); err != nil {
				t.Fatalf("console line is not JSON: %v\n%s", err, s)
			}
			if line["decision_id"] == nil || testid.MentionsID(s, "c-5") {
				t.Fatalf("console event: %s", s)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no console decision log: %q", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
