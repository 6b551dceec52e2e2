package proxy_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gdprgate/gdprgate/examples/crm"
	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/proxy"
)

// served is a proxy in front of the example CRM, over real sockets, with
// the backend's new connections counted.
type served struct {
	url      string
	backends atomic.Int64
	client   *http.Client
}

func serve(t *testing.T) *served {
	t.Helper()
	sc := apptest.New(t, apptest.Options{})
	s := &served{}
	backend := httptest.NewUnstartedServer(crm.New(sc.Now))
	backend.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.backends.Add(1)
		}
	}
	backend.Start()
	t.Cleanup(backend.Close)
	cfg := sc.App.Config
	p, err := proxy.New(proxy.Options{Gate: sc.App.Gate, Upstream: backend.URL, Logger: apptest.Quiet(),
		MaxRequestBytes: cfg.Body.MaxRequestBytes, MaxBodyBytes: cfg.Body.MaxBytes,
		IdentityHeaders: []string{cfg.Identity.RolesHeader, cfg.Identity.CallerHeader, cfg.Identity.ProjectHeader}})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	s.url = front.URL
	s.client = &http.Client{Transport: proxy.Transport(64)}
	t.Cleanup(s.client.CloseIdleConnections)
	return s
}

func (s *served) get(path, roles string) (int, []byte, error) {
	req, _ := http.NewRequest("GET", s.url+path, nil)
	req.Header.Set("x-gdpr-roles", roles)
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// With Go's default transport (2 idle connections per host) every request
// past the second concurrent one would open, then close, its own backend
// connection; the proxy's transport keeps them for the next requests.
func TestBackendConnectionsAreReusedUnderConcurrency(t *testing.T) {
	s := serve(t)
	const conc, rounds = 16, 5
	for range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, conc)
		for i := range conc {
			wg.Go(func() {
				path := "/api/contacts/c-1"
				if i%2 == 1 {
					path = "/healthz-unmapped"
				}
				if _, _, err := s.get(path, "agent"); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	if n := s.backends.Load(); n > 2*conc {
		t.Fatalf("%d backend connections for %d rounds of %d concurrent requests, want at most %d", n, rounds, conc, 2*conc)
	}
}

// Answers are read and rewritten into pooled buffers: many concurrent
// answers for different callers and subjects are each exactly the answer
// the same request gets alone.
func TestConcurrentAnswersNeverShareBuffers(t *testing.T) {
	s := serve(t)
	type req struct{ path, roles string }
	var reqs []req
	for _, path := range []string{"/api/contacts/c-1", "/api/contacts/c-2", "/api/contacts/c-3", "/api/contacts", "/api/contacts/c-1/calls"} {
		for _, roles := range []string{"agent", "supervisor"} {
			reqs = append(reqs, req{path, roles})
		}
	}
	want := make([][]byte, len(reqs))
	for i, r := range reqs {
		code, b, err := s.get(r.path, r.roles)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = []byte(fmt.Sprintf("%d %s", code, b))
	}
	if bytes.Equal(want[0], want[1]) {
		t.Fatalf("premise: agent and supervisor see c-1 alike: %s", want[0])
	}
	var wg sync.WaitGroup
	errs := make(chan string, 16*len(reqs))
	for w := range 16 {
		wg.Go(func() {
			for k := range 3 * len(reqs) {
				i := (w + k) % len(reqs)
				code, b, err := s.get(reqs[i].path, reqs[i].roles)
				if err != nil {
					errs <- err.Error()
					return
				}
				if got := []byte(fmt.Sprintf("%d %s", code, b)); !bytes.Equal(got, want[i]) {
					errs <- fmt.Sprintf("%s as %s:\n got %s\nwant %s", reqs[i].path, reqs[i].roles, got, want[i])
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
