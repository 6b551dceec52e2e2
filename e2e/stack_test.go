package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/gdprgate/gdprgate/authz/envoytest"
	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/app"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/proxy"
	"github.com/gdprgate/gdprgate/internal/testredis"
)

// stack is gdprgate in front of the example CRM, reachable two ways.
type stack struct {
	now     time.Time
	crm     *crm.Server
	crmURL  string
	app     *app.App
	envoy   *envoytest.Envoy
	proxy   string // base URL of gdprgate proxy
	adminTS *httptest.Server
	// grpc reaches gdprgate's ext_authz and ext_proc, upstream the backend:
	// for tests that set up an Envoy of their own.
	grpc     *grpc.ClientConn
	upstream string
}

const adminToken = "e2e-admin-token"

func newStack(t *testing.T, redisURL string) *stack {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	backend := crm.New(now)
	crmSrv := httptest.NewServer(backend)
	t.Cleanup(crmSrv.Close)
	sc := apptest.New(t, apptest.Options{Now: now, WipeWorker: true, Configure: func(cfg *config.Config) {
		cfg.Upstream = crmSrv.URL
		cfg.RedisURL = redisURL
		cfg.Admin.Tokens = []config.AdminToken{{Name: "e2e", SHA256: sha(adminToken), Scopes: []string{"admin"}}}
	}})
	s := front(t, sc, crmSrv.URL, crmBodies)
	s.crm, s.crmURL = backend, crmSrv.URL
	s.adminTS = httptest.NewServer(sc.App.Admin)
	t.Cleanup(s.adminTS.Close)
	return s
}

// front puts both ways in front of a built gdprgate: the Envoy emulator over
// real gRPC, and the proxy over real HTTP.
func front(t *testing.T, sc *apptest.Scenario, upstream string, withBody func(method, path string) bool) *stack {
	t.Helper()
	env := envoytest.New(envoytest.Options{
		Authz:                sc.GRPC(t),
		Proc:                 sc.GRPC(t),
		UpstreamURL:          upstream,
		WithRequestBody:      withBody,
		ForwardAuthzMetadata: true,
		SpuriousIsError:      true,
		MessageTimeout:       5 * time.Second,
		AuthzTimeout:         5 * time.Second,
	})
	t.Cleanup(env.Close)
	cfg := sc.App.Config
	p, err := proxy.New(proxy.Options{Gate: sc.App.Gate, Upstream: upstream, MaxRequestBytes: cfg.Body.MaxRequestBytes, MaxBodyBytes: cfg.Body.MaxBytes})
	if err != nil {
		t.Fatal(err)
	}
	ps := httptest.NewServer(p)
	t.Cleanup(ps.Close)
	return &stack{now: sc.Now, app: sc.App, envoy: env, proxy: ps.URL, grpc: sc.GRPC(t), upstream: upstream}
}

// crmBodies are the requests whose body ext_authz must see, as
// examples/envoy/envoy.yaml configures it (by method): outbound
// communications and communications (the subject is in the body) and
// writes (the fields they change).
func crmBodies(method, path string) bool {
	return method == "POST" || method == "PUT" || method == "PATCH"
}

func newRedisStack(t *testing.T) *stack {
	return newStack(t, testredis.Start(t).URL())
}

// result is what a client got, whichever path it took.
type result struct {
	status int
	header http.Header
	body   []byte
}

type call struct {
	method, path, roles, mode, body string
}

func (c call) request(t *testing.T, base string) *http.Request {
	var rd io.Reader
	if c.body != "" {
		rd = strings.NewReader(c.body)
	}
	method := c.method
	if method == "" {
		method = "GET"
	}
	req, err := http.NewRequest(method, base+c.path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if c.roles != "" {
		req.Header.Set("x-gdpr-roles", c.roles)
	}
	if c.mode != "" {
		req.Header.Set("x-gdpr-mode", c.mode)
	}
	if c.body != "" {
		req.Header.Set("content-type", "application/json")
	}
	return req
}

func (s *stack) viaEnvoy(t *testing.T, c call) result {
	t.Helper()
	resp, err := s.envoy.Do(context.Background(), c.request(t, "http://gateway.local"))
	if err != nil {
		t.Fatalf("envoy emulator: %v", err)
	}
	return result{resp.Status, resp.Header, resp.Body}
}

func (s *stack) viaProxy(t *testing.T, c call) result {
	t.Helper()
	resp, err := http.DefaultClient.Do(c.request(t, s.proxy))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return result{resp.StatusCode, resp.Header, b}
}

func (s *stack) raw(t *testing.T, path string) []byte {
	t.Helper()
	resp, err := http.Get(s.crmURL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}
