package httpauthz

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// The real-proxy tests run Debian's nginx and Caddy on loopback in front of
// the example CRM, with the auth request going to the handler.

const (
	nginxBin = "/usr/sbin/nginx"
	caddyBin = "/usr/bin/caddy"
)

// recorder is the backend: the example CRM plus an unmapped GET /version,
// remembering the headers of the requests it got by their test case.
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	seen map[string]http.Header // X-Test-Case → the request's headers
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	rc.seen[r.Header.Get("X-Test-Case")] = r.Header.Clone()
	rc.mu.Unlock()
	if r.Method == http.MethodGet && r.URL.Path == "/version" {
		_, _ = io.WriteString(w, "crm 1.0\n")
		return
	}
	rc.next.ServeHTTP(w, r)
}

func (rc *recorder) got(testCase string) (http.Header, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	h, ok := rc.seen[testCase]
	return h, ok
}

// proxyEnv is what a proxy's config template is filled with.
type proxyEnv struct {
	Dir, Listen, Gate, Backend, User string
	recorder                         *recorder
	gateSrv                          *httptest.Server
}

// newProxyEnv starts the handler and the backend on loopback and picks a
// free loopback port for the proxy.
func newProxyEnv(t *testing.T) *proxyEnv {
	t.Helper()
	sc := newScenario(t)
	gateSrv := httptest.NewServer(New(sc.gate, Options{PathPrefix: "/authz", Logger: quietLogger()}))
	t.Cleanup(gateSrv.Close)
	rec := &recorder{next: sc.crm, seen: map[string]http.Header{}}
	backend := httptest.NewServer(rec)
	t.Cleanup(backend.Close)
	env := &proxyEnv{
		Dir: t.TempDir(), Listen: freeLoopbackAddr(t),
		Gate: strings.TrimPrefix(gateSrv.URL, "http://"), Backend: strings.TrimPrefix(backend.URL, "http://"),
		recorder: rec, gateSrv: gateSrv,
	}
	if os.Geteuid() == 0 {
		// Workers would otherwise run as nobody and could not use the
		// root-owned temp directory.
		env.User = "root"
	}
	return env
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// render fills testdata/name into dir.
func (env *proxyEnv) render(t *testing.T, name string) string {
	t.Helper()
	tpl, err := template.ParseFiles(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	var b bytes.Buffer
	if err := tpl.Execute(&b, env); err != nil {
		t.Fatalf("render %s: %v", name, err)
	}
	out := filepath.Join(env.Dir, name)
	if err := os.WriteFile(out, b.Bytes(), 0o600); err != nil {
		t.Fatalf("write %s: %v", out, err)
	}
	return out
}

// startProxy runs bin in its own process group until the test ends and
// waits for env.Listen to accept connections.
func startProxy(t *testing.T, env *proxyEnv, bin string, args []string, extraEnv []string, logFile string) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Dir = env.Dir
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	logs := func() string {
		b, _ := os.ReadFile(logFile)
		return out.String() + string(b)
	}
	t.Cleanup(func() {
		// A graceful stop lets the master take its workers down; the
		// group kill is for a master that does not stop in time.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), logs())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", env.Listen, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("%s exited before listening (%v):\n%s", bin, err, logs())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not listen on %s after 10s:\n%s", bin, env.Listen, logs())
		}
	}
}

func requireBinary(t *testing.T, bin, pkg string) {
	t.Helper()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is not installed (%v): `make test-deps` installs it (apt-get install -y %s)", bin, err, pkg)
	}
}

// throughProxy is one request sent to the proxy and what the client must get.
type throughProxy struct {
	name           string
	method, target string
	header         map[string]string
	body           string
	want           int
	wantBody       string // a substring of the body
	wantHeader     map[string]string
	// reachesBackend: the backend must (true) or must not (false) see it.
	reachesBackend bool
	backendHeader  map[string]string // gdprgate headers the backend must see ("" = absent)
}

// scenarioThroughProxy is what every proxy must do with the example CRM.
func scenarioThroughProxy() []throughProxy {
	agent := map[string]string{"X-Gdpr-Roles": "agent"}
	return []throughProxy{
		{name: "agent reads a contact", method: "GET", target: "/api/contacts/c-1", header: agent,
			want: 200, wantBody: `"id":"c-1"`, reachesBackend: true, backendHeader: map[string]string{"X-Gdpr-Coverage": "blue"}},
		{name: "client cannot forge gdprgate headers", method: "GET", target: "/api/contacts/c-2",
			header: map[string]string{"X-Gdpr-Roles": "agent", "X-Gdpr-Coverage": "green", "X-Gdpr-Redacted": "none", "X-Gdpr-Decision-Id": "forged",
				"X-Gdpr-Mode": "archive", "X-Gdpr-Project": "p-1", "X-Gdpr-Caller": "mallory"},
			want: 200, reachesBackend: true,
			backendHeader: map[string]string{"X-Gdpr-Coverage": "blue", "X-Gdpr-Redacted": "",
				"X-Gdpr-Roles": "", "X-Gdpr-Mode": "", "X-Gdpr-Project": "", "X-Gdpr-Caller": ""}},
		{name: "obliviated subject is 404", method: "GET", target: "/api/contacts/c-5", header: agent,
			want: 404, wantBody: "subject_not_found", wantHeader: map[string]string{"Content-Type": "application/json"}},
		{name: "no roles header is 401", method: "GET", target: "/api/contacts/c-1",
			want: 401, wantBody: "unauthenticated", wantHeader: map[string]string{"Www-Authenticate": `Bearer realm="gdprgate"`}},
		{name: "export by agent is 403", method: "GET", target: "/api/contacts/c-1/export", header: agent,
			want: 403, wantBody: "export_not_permitted"},
		{name: "unmapped route passes", method: "GET", target: "/version",
			want: 200, wantBody: "crm 1.0", reachesBackend: true},
		{name: "subject in the request body fails closed", method: "POST", target: "/api/outbound/calls", header: agent,
			body: `{"contact_id":"c-1","type":"adhoc"}`, want: 400, wantBody: "subject_missing"},
	}
}

func runThroughProxy(t *testing.T, env *proxyEnv, cases []throughProxy) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, err := http.NewRequestWithContext(ctx, tc.method, "http://"+env.Listen+tc.target, body)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			req.Header.Set("X-Test-Case", t.Name())
			res, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tc.method, tc.target, err)
			}
			got, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
			_ = res.Body.Close()
			if res.StatusCode != tc.want {
				t.Fatalf("%s %s = %d, want %d; body %s", tc.method, tc.target, res.StatusCode, tc.want, got)
			}
			if !strings.Contains(string(got), tc.wantBody) {
				t.Errorf("body %s does not contain %q", got, tc.wantBody)
			}
			for k, v := range tc.wantHeader {
				if g := res.Header.Get(k); !strings.HasPrefix(g, v) {
					t.Errorf("response header %s = %q, want %q", k, g, v)
				}
			}
			seen, reached := env.recorder.got(t.Name())
			if reached != tc.reachesBackend {
				t.Fatalf("backend saw the request: %v, want %v", reached, tc.reachesBackend)
			}
			for k, v := range tc.backendHeader {
				if g := seen.Get(k); g != v {
					t.Errorf("backend request header %s = %q, want %q", k, g, v)
				}
			}
			if reached {
				if id := seen.Get("X-Gdpr-Decision-Id"); id == "" || id == "forged" {
					t.Errorf("backend request header x-gdpr-decision-id = %q, want gdprgate's", id)
				}
			}
		})
	}
}

func TestNginxAuthRequestEnforcesTheScenario(t *testing.T) {
	requireBinary(t, nginxBin, "nginx")
	env := newProxyEnv(t)
	conf := env.render(t, "nginx.conf")
	errLog := filepath.Join(env.Dir, "error.log")
	startProxy(t, env, nginxBin, []string{"-p", env.Dir, "-e", errLog, "-c", conf,
		"-g", fmt.Sprintf("daemon off; pid %s; error_log %s;", filepath.Join(env.Dir, "nginx.pid"), errLog)}, nil, errLog)

	cases := scenarioThroughProxy()
	// nginx also shows the coverage to the client (add_header).
	cases[0].wantHeader = map[string]string{"X-Gdpr-Coverage": "blue"}
	runThroughProxy(t, env, cases)

	// Without an answer from gdprgate nginx has no X-Gdpr-Status to map
	// and auth_request's own 500 stands: closed, not open.
	env.gateSrv.Close()
	runThroughProxy(t, env, []throughProxy{{name: "gdprgate down fails closed", method: "GET", target: "/version", want: 500}})
}

func TestCaddyForwardAuthEnforcesTheScenario(t *testing.T) {
	requireBinary(t, caddyBin, "caddy")
	env := newProxyEnv(t)
	conf := env.render(t, "Caddyfile")
	startProxy(t, env, caddyBin, []string{"run", "--adapter", "caddyfile", "--config", conf},
		[]string{"HOME=" + env.Dir, "XDG_DATA_HOME=" + env.Dir, "XDG_CONFIG_HOME=" + env.Dir}, filepath.Join(env.Dir, "none"))
	runThroughProxy(t, env, scenarioThroughProxy())
}
