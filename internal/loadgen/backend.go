package loadgen

import (
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limits of the static backend: bodies it keeps in memory and blocks of a
// streamed list.
const (
	MaxBackendBody   = 64 << 20
	MaxBackendPeriod = 100_000
	MaxBackendBlocks = 1 << 20
)

// Backend is the static backend of proxy runs, a stand-in for the CRM that
// costs as little as possible per answer (bodies are generated once and
// kept):
//
//	GET /api/contacts?bytes=N            a contact list of about N bytes
//	GET /api/contacts?period=P&blocks=K  the periodic list of K blocks of P
//	                                     contacts (WritePeriodic), streamed
//	                                     without a content-length (with one
//	                                     when &length=1)
//	GET /api/contacts/{id}               one contact
//
// Any of them gzip-encoded with &gzip=1 (the list answers only). A list
// request without bytes= answers 10 KB.
type Backend struct {
	mu     sync.Mutex
	lists  map[string][]byte // "<bytes>[.gz]"
	blocks map[int][]byte
}

// NewBackend returns an empty backend.
func NewBackend() *Backend {
	return &Backend{lists: map[string][]byte{}, blocks: map[int][]byte{}}
}

func (b *Backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "only GET", http.StatusMethodNotAllowed)
		return
	}
	if id, ok := strings.CutPrefix(r.URL.Path, "/api/contacts/"); ok && id != "" && !strings.Contains(id, "/") {
		n, _ := strconv.Atoi(strings.TrimPrefix(id, "c-"))
		body := AppendContact(nil, n)
		writeFixed(w, body)
		return
	}
	if r.URL.Path != "/api/contacts" {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	gz := q.Get("gzip") == "1"
	if p := q.Get("period"); p != "" {
		period, err1 := strconv.Atoi(p)
		blocks, err2 := strconv.ParseInt(q.Get("blocks"), 10, 64)
		if err1 != nil || err2 != nil || period < 1 || period > MaxBackendPeriod || blocks < 1 || blocks > MaxBackendBlocks {
			http.Error(w, fmt.Sprintf("period 1..%d and blocks 1..%d", MaxBackendPeriod, MaxBackendBlocks), http.StatusBadRequest)
			return
		}
		if q.Get("length") == "1" {
			// With a content-length, as a backend sends an answer it has
			// whole (small ones only).
			blk := b.block(period)
			if PeriodicSize(len(blk), blocks) > MaxBackendBody || gz {
				http.Error(w, "length=1: an uncompressed answer up to the body limit only", http.StatusBadRequest)
				return
			}
			var sb strings.Builder
			_ = WritePeriodic(&sb, blk, blocks, 64<<10)
			writeFixed(w, []byte(sb.String()))
			return
		}
		b.servePeriodic(w, b.block(period), blocks, gz)
		return
	}
	size := 10_000
	if s := q.Get("bytes"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxBackendBody {
			http.Error(w, fmt.Sprintf("bytes 1..%d", MaxBackendBody), http.StatusBadRequest)
			return
		}
		size = n
	}
	body, err := b.list(size, gz)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if gz {
		w.Header().Set("content-encoding", "gzip")
	}
	writeFixed(w, body)
}

func writeFixed(w http.ResponseWriter, body []byte) {
	w.Header().Set("content-type", "application/json")
	w.Header().Set("content-length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

func (b *Backend) list(size int, gz bool) ([]byte, error) {
	key := strconv.Itoa(size)
	if gz {
		key += ".gz"
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if body, ok := b.lists[key]; ok {
		return body, nil
	}
	if len(b.lists) >= 32 {
		clear(b.lists) // bounded: a run uses a few sizes
	}
	body := ListBody(size)
	if gz {
		var sb strings.Builder
		zw := gzip.NewWriter(&sb)
		if _, err := zw.Write(body); err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		if err := zw.Close(); err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		body = []byte(sb.String())
	}
	b.lists[key] = body
	return body, nil
}

func (b *Backend) block(period int) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	if q, ok := b.blocks[period]; ok {
		return q
	}
	if len(b.blocks) >= 8 {
		clear(b.blocks)
	}
	q := PeriodicBlock(period)
	b.blocks[period] = q
	return q
}

func (b *Backend) servePeriodic(w http.ResponseWriter, q []byte, k int64, gz bool) {
	w.Header().Set("content-type", "application/json")
	var out io.Writer = w
	if gz {
		w.Header().Set("content-encoding", "gzip")
		zw := gzip.NewWriter(w)
		defer zw.Close()
		out = zw
	}
	// No content-length: the answer is chunked, as a backend streaming an
	// export would send it.
	_ = WritePeriodic(out, q, k, 64<<10)
}

// NewPlainProxy is the baseline of proxy runs: httputil.ReverseProxy to
// upstream with the same request rewriting as gdprgate's proxy and nothing
// else. tuned gives its transport as many idle connections per host as
// gdprgate's proxy keeps; otherwise it is Go's default transport.
func NewPlainProxy(upstream string, tuned bool) (http.Handler, error) {
	u, err := url.Parse(upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream must be an http(s) URL (got %q)", upstream)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
			pr.Out.Host = pr.In.Host
		},
	}
	if tuned {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = 0
		t.MaxIdleConnsPerHost = 1024
		t.IdleConnTimeout = 90 * time.Second
		t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		rp.Transport = t
	}
	return rp, nil
}
