package app

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gdprgate/gdprgate/internal/config"
)

// Serve runs handler on lis with the listener's limits (timeouts, header
// size) until ctx ends, then shuts it down gracefully. A request answered
// before its body was read closes its connection (see closeUnread).
func Serve(ctx context.Context, lis net.Listener, handler http.Handler, limits config.HTTPLimits) error {
	srv := &http.Server{
		Handler:           closeUnread(handler),
		ReadHeaderTimeout: limits.ReadHeaderTimeout,
		ReadTimeout:       limits.ReadTimeout,
		WriteTimeout:      limits.WriteTimeout,
		IdleTimeout:       limits.IdleTimeout,
		MaxHeaderBytes:    limits.MaxHeaderBytes,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}

// closeUnread closes the connection of a request that was answered before
// its body was read to the end — refused with 401, 403, 413, 400 — instead
// of letting net/http drain the rest to reuse the connection: a client
// sending its body slowly (or never) would otherwise hold the connection and
// its goroutine until the read timeout, for a request already refused.
// The response says "Connection: close"; once the handler returns, the read
// deadline is moved to now, so the server's own drain fails at once.
func closeUnread(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		body := &eofReader{ReadCloser: r.Body}
		r.Body = body
		next.ServeHTTP(&closeWriter{ResponseWriter: w, body: body}, r)
		if !body.eof.Load() {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now())
		}
	})
}

// eofReader records that a body was read to its end.
type eofReader struct {
	io.ReadCloser
	eof atomic.Bool
}

func (b *eofReader) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof.Store(true)
	}
	return n, err
}

// closeWriter adds "Connection: close" to a final response that starts
// while the request body is unread.
type closeWriter struct {
	http.ResponseWriter
	body        *eofReader
	wroteHeader bool
}

func (w *closeWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 {
		w.wroteHeader = true
		if !w.body.eof.Load() {
			w.Header().Set("Connection", "close")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *closeWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// Flush keeps streaming answers (NDJSON exports, proxied responses)
// flushable; ResponseController finds the rest through Unwrap.
func (w *closeWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

func (w *closeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
