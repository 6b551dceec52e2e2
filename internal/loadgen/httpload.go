package loadgen

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// HTTPConfig describes a run of HTTP GETs against a proxy on loopback:
// gdprgate's proxy mode, or the plain reverse proxy it is compared with.
type HTTPConfig struct {
	// Target is the proxy's base URL (http://host:port); loopback only.
	Target string
	// Path is the request target, with its query (default a 10 KB list).
	Path string
	// Header is sent with every request (the caller's roles).
	Header http.Header
	// Concurrency, Requests, Duration, Warmup, Timeout and ServerPID are as
	// in Config.
	Concurrency, Requests int
	Duration, Timeout     time.Duration
	Warmup                int
	ServerPID             int
	// Sink, when set, gets each 2xx answer's body (a Verifier); it is
	// called from the worker goroutines.
	Sink func() io.Writer
	// Client is the HTTP client (default: keep-alive connections, one per
	// worker, no compression).
	Client *http.Client
}

// NewHTTPClient is a client for loopback load: one idle connection per
// worker kept, no transparent decompression (the answer's bytes are what is
// measured).
func NewHTTPClient(concurrency int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: max(concurrency, 2),
		DisableCompression:  true,
		IdleConnTimeout:     90 * time.Second,
	}}
}

// RunHTTP executes one bounded run. An answer other than 2xx counts as a
// denial; a failed request or body as an error.
func RunHTTP(ctx context.Context, cfg HTTPConfig) (*Report, error) {
	u, err := url.Parse(cfg.Target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("loadgen: target must be http://host:port (got %q)", cfg.Target)
	}
	if err := CheckLoopback(ctx, u.Host); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	if cfg.Path == "" {
		cfg.Path = "/api/contacts?bytes=10000"
	}
	client := cfg.Client
	if client == nil {
		client = NewHTTPClient(cfg.Concurrency)
		defer client.CloseIdleConnections()
	}
	target := u.Scheme + "://" + u.Host + cfg.Path
	bufs := make([][]byte, max(cfg.Concurrency, 32))
	return workload{
		Concurrency: cfg.Concurrency, Requests: cfg.Requests, Duration: cfg.Duration,
		Warmup: cfg.Warmup, Timeout: cfg.Timeout, ServerPID: cfg.ServerPID,
	}.run(ctx, func(ctx context.Context, w int, _ int64) (bool, int64, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			return false, 0, err
		}
		for k, v := range cfg.Header {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, 0, err
		}
		defer resp.Body.Close()
		ok := resp.StatusCode >= 200 && resp.StatusCode < 300
		var sink io.Writer = io.Discard
		if ok && cfg.Sink != nil {
			sink = cfg.Sink()
		}
		if bufs[w] == nil {
			bufs[w] = make([]byte, 64<<10)
		}
		n, err := io.CopyBuffer(onlyWriter{sink}, resp.Body, bufs[w])
		if err != nil {
			return false, n, fmt.Errorf("read answer (status %d): %w", resp.StatusCode, err)
		}
		if cl := resp.Header.Get("content-length"); cl != "" && cl != strconv.FormatInt(n, 10) {
			return false, n, fmt.Errorf("answer of %d bytes under content-length %s", n, cl)
		}
		if v, isV := sink.(*Verifier); isV {
			if err := v.Done(); err != nil {
				return false, n, err
			}
		}
		return ok, n, nil
	})
}

// onlyWriter hides a writer's ReadFrom so that io.CopyBuffer uses the
// worker's buffer.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }
