package proxy_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"syscall"
	"testing"

	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/loadgen"
	"github.com/gdprgate/gdprgate/internal/proxy"
)

// staticBackend answers every request with body (as gdprgate-load's
// backend does), without a socket: the benchmark measures the proxy.
type staticBackend []byte

func (b staticBackend) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}, "Content-Length": {strconv.Itoa(len(b))}},
		ContentLength: int64(len(b)), Body: io.NopCloser(bytes.NewReader(b)), Request: r}, nil
}

// BenchmarkProxy is gdprgate proxy's own work per exchange, warm, as the
// README's proxy load runs drive it (an agent; the example's contact route
// with subject.confirm, and its list route with a 1 MB list), with the
// backend and the client in process: cpu-ns/op is the process's CPU time
// per exchange, which stays comparable on a shared machine.
func BenchmarkProxy(b *testing.B) {
	for _, tc := range []struct {
		name, path string
		body       []byte
	}{
		{"contact", "/api/contacts/c-1", loadgen.AppendContact(nil, 1)},
		{"list1MB", "/api/contacts", loadgen.ListBody(1_000_000)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			sc := apptest.New(b, apptest.Options{Logger: apptest.Quiet()})
			cfg := sc.App.Config
			p, err := proxy.New(proxy.Options{Gate: sc.App.Gate, Upstream: "http://backend.invalid", Logger: apptest.Quiet(),
				Transport: staticBackend(tc.body), MaxRequestBytes: cfg.Body.MaxRequestBytes, MaxBodyBytes: cfg.Body.MaxBytes,
				StreamAbove:     cfg.Body.StreamAbove,
				IdentityHeaders: []string{cfg.Identity.RolesHeader, cfg.Identity.CallerHeader, cfg.Identity.ProjectHeader}})
			if err != nil {
				b.Fatal(err)
			}
			req := httptest.NewRequest("GET", tc.path, nil)
			req.RemoteAddr = "127.0.0.1:40000"
			req.Header.Set("x-gdpr-roles", "agent")
			serve := func() *discardWriter {
				w := &discardWriter{h: http.Header{}}
				// The proxy takes the caller's x-gdpr-* headers out.
				req.Header = http.Header{"X-Gdpr-Roles": {"agent"}}
				p.ServeHTTP(w, req)
				return w
			}
			for range 3 { // learn the origins
				if w := serve(); w.status != 200 {
					b.Fatalf("status %d: %s", w.status, w.first)
				}
			}
			b.SetBytes(int64(len(tc.body)))
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				serve()
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// discardWriter is a ResponseWriter that keeps the status only.
type discardWriter struct {
	h      http.Header
	status int
	first  []byte
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = 200
	}
	if len(w.first) < 200 {
		w.first = append(w.first, p[:min(len(p), 200)]...)
	}
	return len(p), nil
}

func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
