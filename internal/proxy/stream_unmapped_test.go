package proxy_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/internal/apptest"
	"github.com/gdprgate/gdprgate/internal/proxy"
)

// TestUnmappedBodiesStreamThroughUnread: a POST to a route the map does
// not know is passed to the backend as it arrives — the backend sees its
// first bytes while the client is still sending, and a body far larger
// than what gdprgate would ever buffer goes through with bounded memory.
func TestUnmappedBodiesStreamThroughUnread(t *testing.T) {
	sc := apptest.New(t, apptest.Options{})
	firstSeen := make(chan struct{})
	got := make(chan int64, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 4)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			t.Errorf("backend: first bytes: %v", err)
			return
		}
		close(firstSeen)
		n, _ := io.Copy(io.Discard, r.Body)
		got <- n + 4
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(backend.Close)
	cfg := sc.App.Config
	p, err := proxy.New(proxy.Options{Gate: sc.App.Gate, Upstream: backend.URL, Logger: apptest.Quiet(),
		MaxRequestBytes: cfg.Body.MaxRequestBytes, MaxBodyBytes: cfg.Body.MaxBytes})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)

	// The client sends a first chunk and waits for the backend to have it
	// before sending the rest: a proxy that reads the body first never
	// forwards it, and the test times out.
	const total = 256 << 20 // 256 MiB, generated
	pr, pw := io.Pipe()
	go func() {
		if _, err := pw.Write([]byte("head")); err != nil {
			return
		}
		select {
		case <-firstSeen:
		case <-time.After(60 * time.Second):
			pw.CloseWithError(io.ErrUnexpectedEOF)
			return
		}
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for sent := int64(4); sent < total; sent += int64(len(chunk)) {
			if _, err := pw.Write(chunk[:min(int64(len(chunk)), total-sent)]); err != nil {
				return
			}
		}
		pw.Close()
	}()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", front.URL+"/upload/blob", pr)
	req.Header.Set("content-type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("the body was not streamed through: %v", err)
	}
	resp.Body.Close()
	runtime.ReadMemStats(&after)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if n := <-got; n != total {
		t.Fatalf("backend got %d bytes, want %d", n, total)
	}
	// Client, proxy and backend share this process: all of them together
	// allocate a small fraction of the body.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > total/8 {
		t.Fatalf("%d MiB allocated passing a %d MiB body", alloc>>20, total>>20)
	}
}
