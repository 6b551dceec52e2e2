package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/proxy"
)

// A mapped answer's trailers are dropped whether it is rewritten whole or
// streamed: a backend's digest of the unredacted body (declared or not)
// would let a client confirm guesses of redacted values.
func TestStreamedAnswerDropsTheBackendsTrailers(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "application/json")
		w.Header().Set("Trailer", "Digest")
		var size int
		fmt.Sscan(r.URL.Query().Get("size"), &size)
		genList(w, size, listTail)
		w.Header().Set("Digest", "sha-256=ORIGINAL")
		w.Header().Set(http.TrailerPrefix+"Content-Digest", "sha-256=:ORIGINAL:")
	}))
	defer backend.Close()
	cfg := sc.App.Config
	p, err := proxy.New(proxy.Options{Gate: sc.App.Gate, Upstream: backend.URL, Logger: apptest.Quiet(),
		MaxRequestBytes: cfg.Body.MaxRequestBytes, MaxBodyBytes: 1 << 20, StreamAbove: 256 << 10,
		IdentityHeaders: []string{cfg.Identity.RolesHeader}})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(p)
	defer front.Close()
	for _, size := range []int{1000, 600 << 10} { // rewritten whole, streamed
		req, _ := http.NewRequest("GET", front.URL+fmt.Sprintf("/api/contacts?size=%d", size), nil)
		req.Header.Set("x-gdpr-roles", "agent")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || len(resp.Trailer) != 0 {
			t.Fatalf("size %d: status %d, trailers %v, %v", size, resp.StatusCode, resp.Trailer, err)
		}
	}
}
