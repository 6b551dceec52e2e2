// Package proxy is gdprgate without Envoy: a reverse proxy that makes the
// same request decision as ext_authz and redacts mapped responses with the
// same rewriter as ext_proc. Unmapped routes stream through untouched.
//
// Clients reach the proxy directly, so identity headers (roles, caller,
// project) are believed only from trusted peers (identity.trusted_sources,
// loopback by default), and no x-gdpr-* header a client sent ever reaches
// the backend.
package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/gdprgate/gdprgate/internal/bufpool"
	"github.com/gdprgate/gdprgate/internal/gate"
	"github.com/gdprgate/gdprgate/internal/observe"
)

type ctxKey struct{}

// exchange is what the request's context carries to ReverseProxy's hooks:
// the decision, and for a mapped answer the writer that sends a whole
// rewrite in one piece.
type exchange struct {
	ex    *gate.Exchange
	whole *wholeWriter // nil: the answer's body is not rewritten
}

// Proxy is an http.Handler.
type Proxy struct {
	gate            *gate.Gate
	rp              *httputil.ReverseProxy
	log             *slog.Logger
	maxRequestBytes int
	maxBodyBytes    int
	streamAbove     int
	trusted         []netip.Prefix
	identity        map[string]bool // lower-case identity header names
}

// Options configure a Proxy.
type Options struct {
	Gate     *gate.Gate
	Upstream string
	Logger   *slog.Logger
	// MaxRequestBytes bounds request bodies buffered to find a subject.
	MaxRequestBytes int
	// MaxBodyBytes bounds response bodies of mapped routes rewritten whole
	// (larger: 502).
	MaxBodyBytes int
	// StreamAbove: a mapped answer longer than this is rewritten while it
	// streams (gate.RewriteStream, bounded memory, no MaxBodyBytes) when
	// its route allows; shorter ones are rewritten whole. 0: never.
	StreamAbove int
	// Transport reaches the backend (nil: Transport(MaxIdleConnsPerHost)).
	Transport http.RoundTripper
	// MaxIdleConnsPerHost is how many idle connections to the backend
	// the default transport keeps (0: DefaultMaxIdleConnsPerHost).
	MaxIdleConnsPerHost int
	// BackendH2C makes the default transport speak HTTP/2 without TLS
	// (prior knowledge) to an http:// upstream (config proxy.backend_http2).
	BackendH2C bool
	// TrustedSources are the peers whose IdentityHeaders are believed
	// (nil: loopback only). From any other peer those headers are hidden
	// from the decision, which then needs a verified JWT.
	TrustedSources []netip.Prefix
	// IdentityHeaders are the identity header names (roles, caller,
	// project).
	IdentityHeaders []string
}

// DefaultMaxIdleConnsPerHost sizes the backend connection pool for the
// concurrency a sidecar sees. Go's default of 2 makes every request past
// the second concurrent one open and close its own connection (a
// handshake each, and TIME_WAIT sockets piling up on the backend).
const DefaultMaxIdleConnsPerHost = 1024

// Transport is the proxy's default transport to the backend: Go's default
// transport (proxy from the environment, HTTP/2 over TLS when the backend
// offers it) with maxIdlePerHost idle connections kept per backend.
func Transport(maxIdlePerHost int) *http.Transport {
	if maxIdlePerHost <= 0 {
		maxIdlePerHost = DefaultMaxIdleConnsPerHost
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 0 // no global cap: the per-host one bounds it
	t.MaxIdleConnsPerHost = maxIdlePerHost
	t.IdleConnTimeout = 90 * time.Second
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return t
}

// copyBuffers are the buffers ReverseProxy streams unmapped answers with
// (it would allocate 32 KiB per request otherwise).
type copyBuffers struct{ p sync.Pool }

func (c *copyBuffers) Get() []byte {
	if b, ok := c.p.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 32<<10)
}

func (c *copyBuffers) Put(b []byte) { c.p.Put(&b) }

// bodyPool holds the buffers mapped answers are read and rewritten into.
var bodyPool = bufpool.Pool

// New returns a proxy to opts.Upstream.
func New(opts Options) (*Proxy, error) {
	u, err := url.Parse(opts.Upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("proxy: upstream must be an http(s) URL (got %q)", opts.Upstream)
	}
	p := &Proxy{gate: opts.Gate, log: opts.Logger, maxRequestBytes: opts.MaxRequestBytes, maxBodyBytes: opts.MaxBodyBytes,
		streamAbove: min(opts.StreamAbove, opts.MaxBodyBytes),
		trusted:     opts.TrustedSources, identity: map[string]bool{}}
	if p.trusted == nil {
		p.trusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	for _, h := range opts.IdentityHeaders {
		if h != "" {
			p.identity[strings.ToLower(h)] = true
		}
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
			pr.Out.Host = pr.In.Host
			// The backend's spans join the request's trace.
			observe.Inject(pr.Out.Context(), propagation.HeaderCarrier(pr.Out.Header))
		},
		ModifyResponse: p.modifyResponse,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.log.Warn("proxy: upstream error", "err", err)
			if x, _ := r.Context().Value(ctxKey{}).(*exchange); x != nil {
				// The write may have reached the backend before it failed.
				p.gate.Responded(r.Context(), x.ex, 0)
			}
			writeJSON(w, http.StatusBadGateway, []byte(`{"error":"upstream_unavailable","message":"the backend did not answer"}`), nil)
		},
		Transport:  opts.Transport,
		BufferPool: &copyBuffers{},
		// ReverseProxy's own messages (a streamed answer cut short) go to
		// the proxy's log, not the standard logger.
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
	if opts.BackendH2C && u.Scheme != "http" {
		return nil, fmt.Errorf("proxy: h2c is HTTP/2 without TLS; the upstream %q is not http://", opts.Upstream)
	}
	if opts.Transport == nil {
		t := Transport(opts.MaxIdleConnsPerHost)
		if opts.BackendH2C {
			// Only HTTP/2 without TLS: every request goes over a few
			// multiplexed connections, none falls back to HTTP/1.1.
			var protos http.Protocols
			protos.SetUnencryptedHTTP2(true)
			t.Protocols = &protos
		}
		p.rp.Transport = t
	}
	return p, nil
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if observe.Enabled() {
		ctx, span := observe.StartServerHTTP(r.Context(), "proxy", propagation.HeaderCarrier(r.Header))
		defer span.End()
		r = r.WithContext(ctx)
	}
	var body []byte
	partial := false
	// A route's body is read (bounded) only when its decision may depend
	// on it; any other body streams to the backend unread.
	if r.Body != nil && r.ContentLength != 0 && (r.Method == "POST" || r.Method == "PUT" || r.Method == "PATCH") &&
		p.gate.RequestBodyMatters(r.Context(), r.Method, r.URL.RequestURI()) {
		b, err := io.ReadAll(io.LimitReader(r.Body, int64(p.maxRequestBytes)+1))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, []byte(`{"error":"request_body_unreadable","message":"the request body could not be read"}`), nil)
			return
		}
		if len(b) <= p.maxRequestBytes {
			body = b
			r.Body = io.NopCloser(bytes.NewReader(b))
		} else {
			// Too large to inspect: routes that must read it refuse it;
			// others get it whole, undecided by its body.
			partial = true
			r.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(b), r.Body), r.Body}
		}
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	header, headers := gate.HeaderGetter(r.Header), gate.HeaderMap(r.Header)
	if !p.trustedPeer(r.RemoteAddr) {
		header, headers = p.hideIdentity(header, headers)
	}
	greq := &gate.Request{
		Method:      r.Method,
		Path:        r.URL.RequestURI(),
		Host:        r.Host,
		Scheme:      scheme,
		Header:      header,
		Headers:     headers,
		Body:        body,
		BodyPartial: partial,
		Protocol:    r.Proto,
		RemoteAddr:  r.RemoteAddr,
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		greq.LocalAddr = la.String()
	}
	ex := p.gate.Check(r.Context(), greq)
	v := &ex.Verdict
	if !v.Allow {
		for _, ph := range v.Additions().AppendHeaders {
			hadd(w.Header(), ph.Key, ph.Value)
		}
		h := map[string]string{gate.HeaderDecisionID: ex.DecisionID}
		for k, val := range v.ResponseHeaders {
			h[k] = val
		}
		if v.PlainBody {
			writeBody(w, v.Status, v.Body, h)
		} else {
			writeJSON(w, v.Status, v.Body, h)
		}
		return
	}
	// Whatever x-gdpr-* the client sent (trusted or not) has been read;
	// the backend gets gdprgate's own headers only.
	for k := range r.Header {
		if gate.IsOwnHeader(k) {
			delete(r.Header, k)
		}
	}
	for k, val := range v.UpstreamHeaders {
		hset(r.Header, k, val)
	}
	for _, ph := range v.Additions().AppendHeaders {
		hadd(r.Header, ph.Key, ph.Value)
	}
	for _, h := range v.Additions().RemoveHeaders {
		hdel(r.Header, h)
	}
	x := &exchange{ex: ex}
	if ex.NeedsBody() {
		x.whole = &wholeWriter{ResponseWriter: w}
		w = x.whole
		defer x.whole.done()
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, x)))
}

// wholeMin is the rewritten answer from which wholeWriter sends it: a
// shorter one is one read and one write through ReverseProxy's buffer
// anyway.
const wholeMin = 32 << 10

// wholeWriter sends a mapped answer rewritten whole in one Write, right
// after its status line, instead of ReverseProxy copying it through its 32
// KiB buffer (a copy of the body and one write each). modifyResponse gives
// it the body and leaves ReverseProxy an empty one under the same
// content-length.
type wholeWriter struct {
	http.ResponseWriter
	status  int
	body    []byte
	release func()
}

func (w *wholeWriter) WriteHeader(code int) {
	w.ResponseWriter.WriteHeader(code)
	// Only with the final status it was prepared for: not with a 1xx
	// ReverseProxy relays first.
	if w.body != nil && code == w.status {
		body := w.body
		w.body = nil
		_, _ = w.ResponseWriter.Write(body)
		w.done()
	}
}

// done gives the buffers back (once written, or when the answer never
// was).
func (w *wholeWriter) done() {
	w.body = nil
	if w.release != nil {
		w.release()
		w.release = nil
	}
}

// Unwrap lets http.ResponseController (ReverseProxy's flushes and
// upgrades) reach the connection's writer.
func (w *wholeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// trustedPeer reports whether the TCP peer is a trusted source of identity
// headers. Only the peer counts: X-Forwarded-For is the client's to write.
func (p *Proxy) trustedPeer(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, pf := range p.trusted {
		if pf.Contains(a) {
			return true
		}
	}
	return false
}

// hideIdentity hides the identity headers of an untrusted peer from the
// decision (the policy's header map included).
func (p *Proxy) hideIdentity(header func(string) string, headers func() map[string]string) (func(string) string, func() map[string]string) {
	hide := func(name string) string {
		if p.identity[name] {
			return ""
		}
		return header(name)
	}
	hideAll := func() map[string]string {
		m := headers()
		for k := range m {
			if p.identity[k] {
				delete(m, k)
			}
		}
		return m
	}
	return hide, hideAll
}

func (p *Proxy) modifyResponse(resp *http.Response) error {
	x, _ := resp.Request.Context().Value(ctxKey{}).(*exchange)
	if x == nil {
		return nil
	}
	ex := x.ex
	// A write the backend took is audited now (see gate.Responded).
	p.gate.Responded(resp.Request.Context(), ex, resp.StatusCode)
	for k, v := range ex.Verdict.ResponseHeaders {
		hset(resp.Header, k, v)
	}
	for _, ph := range ex.Verdict.Additions().AddResponseHeaders {
		hadd(resp.Header, ph.Key, ph.Value)
	}
	if !ex.NeedsBody() {
		p.gate.Observe(ex, resp.StatusCode)
		return nil
	}
	if p.streamAbove > 0 && resp.Body != nil && resp.Request.Method != http.MethodHead && resp.ContentLength != 0 &&
		(resp.ContentLength < 0 || resp.ContentLength > int64(p.streamAbove)) {
		// Buffered up to the threshold: an answer that ends within it is
		// rewritten whole as always (exact status and headers); a longer
		// one streams from the bytes read so far.
		prefix, over, err := readUpTo(resp.Body, resp.ContentLength, p.streamAbove)
		if err != nil {
			resp.Body.Close()
			return fmt.Errorf("read upstream body: %w", err)
		}
		if over {
			if p.stream(resp, ex, prefix) {
				return nil
			}
			// The route needs the whole answer: buffered as always.
			resp.Body = &prefixed{Reader: io.MultiReader(bytes.NewReader(*prefix), resp.Body), body: resp.Body, prefix: prefix}
		} else {
			resp.Body.Close()
			resp.Body = &prefixed{Reader: bytes.NewReader(*prefix), body: http.NoBody, prefix: prefix}
		}
	}
	in, over, err := readBody(resp, p.maxBodyBytes)
	if err != nil {
		return fmt.Errorf("read upstream body: %w", err)
	}
	if over {
		setBody(resp, http.StatusBadGateway, []byte(`{"error":"body_too_large","message":"the backend's answer is larger than gdprgate may check"}`))
		hset(resp.Header, "content-type", "application/json")
		hdel(resp.Header, "content-encoding")
		return nil
	}
	var body []byte
	if in != nil {
		body = *in
	}
	// The rewrite goes into a pooled buffer too; both go back to the pool
	// when ReverseProxy closes the body it has written out.
	out := bodyPool.Get(len(body) + len(body)/16 + 512)
	release := func() {
		bodyPool.Put(out)
		if in != nil {
			bodyPool.Put(in)
		}
	}
	rw := p.gate.Rewrite(resp.Request.Context(), ex, &gate.Response{
		Status: resp.StatusCode,
		Header: gate.HeaderGetter(resp.Header), // a repeated header as one list, as Envoy gives it
		Body:   body,
		Head:   resp.Request.Method == http.MethodHead,
		Dst:    (*out)[:0],
	})
	for _, h := range rw.RemoveHeaders {
		hdel(resp.Header, h)
	}
	for k, v := range rw.SetHeaders {
		hset(resp.Header, k, v)
	}
	if rw.Replace {
		release()
		setBody(resp, rw.Status, rw.Body)
		return nil
	}
	if rw.Modified {
		body = rw.Body
	}
	setLength(resp, resp.StatusCode, len(body))
	if x.whole != nil && len(body) >= wholeMin {
		x.whole.status, x.whole.body, x.whole.release = resp.StatusCode, body, release
		resp.Body = http.NoBody
		return nil
	}
	resp.Body = &pooledBody{Reader: bytes.NewReader(body), release: release}
	return nil
}

// readBody reads a mapped answer whole into a pooled buffer (nil: no
// body); over reports one longer than limit.
func readBody(resp *http.Response, limit int) (buf *[]byte, over bool, err error) {
	if resp.Body == nil {
		return nil, false, nil
	}
	defer resp.Body.Close()
	buf, over, err = readUpTo(resp.Body, resp.ContentLength, limit)
	if over {
		bodyPool.Put(buf)
		buf = nil
	}
	return buf, over, err
}

// readUpTo reads body into a pooled buffer up to limit+1 bytes (over: it
// has more than limit; the buffer then holds what was read). length is the
// announced length (-1: unknown).
func readUpTo(body io.Reader, length int64, limit int) (buf *[]byte, over bool, err error) {
	size := 64 << 10
	if length >= 0 {
		size = int(min(length, int64(limit))) + 1
	}
	buf = bodyPool.Get(size)
	b := (*buf)[:0]
	for {
		if len(b) == cap(b) {
			if len(b) > limit {
				break
			}
			// Grown outside the pool; the pooled one goes back.
			nb := make([]byte, len(b), min(2*cap(b), limit+1))
			copy(nb, b)
			bodyPool.Put(buf)
			buf, b = &nb, nb
		}
		n, rerr := body.Read(b[len(b):min(cap(b), limit+1)])
		b = b[:len(b)+n]
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			bodyPool.Put(buf)
			return nil, false, rerr
		}
		if len(b) > limit {
			break
		}
	}
	*buf = b
	return buf, len(b) > limit, nil
}

// prefixed is an upstream body whose first bytes were read already.
type prefixed struct {
	io.Reader
	body   io.ReadCloser
	prefix *[]byte
	once   sync.Once
}

func (b *prefixed) Close() error {
	b.once.Do(func() { bodyPool.Put(b.prefix) })
	return b.body.Close()
}

// pooledBody is a rewritten answer whose buffers go back to the pool once
// ReverseProxy has written it and closes it.
type pooledBody struct {
	*bytes.Reader
	once    sync.Once
	release func()
}

func (b *pooledBody) Close() error {
	b.once.Do(b.release)
	return nil
}

// hset, hadd, hdel and hget are http.Header's Set, Add, Del and Get
// without a new canonical key string per call (gate.CanonicalHeader).
func hset(h http.Header, k, v string) { h[gate.CanonicalHeader(k)] = []string{v} }

func hadd(h http.Header, k, v string) {
	ck := gate.CanonicalHeader(k)
	h[ck] = append(h[ck], v)
}

func hdel(h http.Header, k string) { delete(h, gate.CanonicalHeader(k)) }

func setBody(resp *http.Response, status int, body []byte) {
	setLength(resp, status, len(body))
	resp.Body = io.NopCloser(bytes.NewReader(body))
}

// setLength gives resp the status and the length of the body it is
// about to get.
func setLength(resp *http.Response, status, n int) {
	resp.StatusCode = status
	resp.Status = strconv.Itoa(status) + " " + http.StatusText(status)
	resp.ContentLength = int64(n)
	hset(resp.Header, "content-length", strconv.Itoa(n))
	resp.TransferEncoding = nil
}

func writeJSON(w http.ResponseWriter, status int, body []byte, headers map[string]string) {
	writeAnswer(w, status, body, headers, "application/json")
}

// writeBody answers with body as it is (a policy's own denial body).
func writeBody(w http.ResponseWriter, status int, body []byte, headers map[string]string) {
	writeAnswer(w, status, body, headers, "")
}

func writeAnswer(w http.ResponseWriter, status int, body []byte, headers map[string]string, contentType string) {
	for k, v := range headers {
		hset(w.Header(), k, v)
	}
	if contentType != "" {
		hset(w.Header(), "content-type", contentType)
	}
	hset(w.Header(), "content-length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// stream makes resp's body the streamed rewrite of prefix and the rest of
// the upstream body, when the route allows (false: it needs the whole
// answer, nothing was changed).
func (p *Proxy) stream(resp *http.Response, ex *gate.Exchange, prefix *[]byte) bool {
	s, head, ok := p.gate.RewriteStream(resp.Request.Context(), ex, &gate.Response{
		Status: resp.StatusCode,
		Header: gate.HeaderGetter(resp.Header), // a repeated header as one list, as Envoy gives it
	})
	if !ok {
		return false
	}
	for _, h := range head.RemoveHeaders {
		hdel(resp.Header, h)
	}
	for k, v := range head.SetHeaders {
		hset(resp.Header, k, v)
	}
	if head.Replace {
		resp.Body.Close()
		bodyPool.Put(prefix)
		setBody(resp, head.Status, head.Body)
		return true
	}
	resp.ContentLength = -1 // ReverseProxy then flushes every write
	hdel(resp.Header, "content-length")
	// The backend's trailers are dropped, as from an answer rewritten whole:
	// a digest of the original body among them would let a client confirm
	// guesses of redacted values. Again at the end of the body, where the
	// transport fills them in.
	resp.Trailer = nil
	resp.Body = &streamBody{s: s, up: resp.Body, prefix: prefix, rest: *prefix, buf: bodyPool.Get(32 << 10), p: p, ex: ex, resp: resp}
	return true
}

// streamBody is a mapped answer rewritten as it is read. An error (a body
// that turns invalid, an item over the bound, the backend failing
// mid-way) makes ReverseProxy abort the response (http.ErrAbortHandler):
// the client sees it cut, after only rewritten items.
type streamBody struct {
	s      *gate.BodyStream
	up     io.ReadCloser
	prefix *[]byte
	rest   []byte // of prefix, not yet rewritten
	buf    *[]byte
	out    []byte // rewritten, not yet read
	obuf   []byte // out's memory
	eof    bool
	err    error
	p      *Proxy
	ex     *gate.Exchange
	resp   *http.Response
	once   sync.Once
}

func (b *streamBody) Read(dst []byte) (int, error) {
	for len(b.out) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		if b.eof {
			return 0, io.EOF
		}
		b.fill()
	}
	n := copy(dst, b.out)
	b.out = b.out[n:]
	return n, nil
}

// fill rewrites the next chunk (or the end of the body) into out.
func (b *streamBody) fill() {
	out := b.obuf[:0]
	var err error
	switch {
	case len(b.rest) > 0:
		n := min(len(b.rest), 32<<10)
		out, err = b.s.Write(out, b.rest[:n])
		if b.rest = b.rest[n:]; len(b.rest) == 0 {
			bodyPool.Put(b.prefix)
			b.prefix = nil
		}
	default:
		in := *b.buf
		n, rerr := b.up.Read(in[:cap(in)])
		if n > 0 {
			out, err = b.s.Write(out, in[:n])
		}
		switch {
		case err != nil:
		case rerr == io.EOF:
			b.resp.Trailer = nil
			out, err = b.s.Close(out)
			b.eof = err == nil
		case rerr != nil:
			// The backend failed mid-way: the answer can't be finished.
			b.p.log.Warn("proxy: upstream failed while streaming a mapped answer", "decision_id", b.ex.DecisionID, "route", b.ex.RouteName(), "err", rerr)
			err = fmt.Errorf("read upstream body: %w", rerr)
		}
	}
	b.out, b.obuf = out, out
	if err != nil {
		b.err = err
	}
}

func (b *streamBody) Close() error {
	b.once.Do(func() {
		if b.prefix != nil {
			bodyPool.Put(b.prefix)
		}
		bodyPool.Put(b.buf)
	})
	return b.up.Close()
}
