package config

import "time"

// Listener names, for ListenersConfig.For.
const (
	ListenerProxy     = "proxy"
	ListenerAdmin     = "admin"
	ListenerHTTPAuthz = "http_authz"
)

// HTTPLimits bound the connections of one HTTP listener, so that a slow or
// idle client cannot hold a connection (and its goroutine) forever.
type HTTPLimits struct {
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds the time from the end of the request headers to
	// the end of the response (for the proxy: the backend's answer too).
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout bounds how long a keep-alive connection waits for its
	// next request.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes bounds a request's header block (431 beyond).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
}

// ListenersConfig sets HTTPLimits for every HTTP listener (the proxy, the
// admin API, the HTTP authz mode), with per-listener overrides: a zero
// value in an override takes the shared one.
type ListenersConfig struct {
	HTTPLimits `yaml:",inline"`
	Proxy      HTTPLimits `yaml:"proxy"`
	Admin      HTTPLimits `yaml:"admin"`
	HTTPAuthz  HTTPLimits `yaml:"http_authz"`
}

// Defaults of the shared limits. Envoy's default bound on request headers
// is 60 KiB; two minutes of writing covers a slow backend and a large
// download through the proxy.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = time.Minute
	DefaultWriteTimeout      = 2 * time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxHeaderBytes    = 64 << 10
)

func (l *ListenersConfig) applyDefaults() {
	d := &l.HTTPLimits
	if d.ReadHeaderTimeout == 0 {
		d.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if d.ReadTimeout == 0 {
		d.ReadTimeout = DefaultReadTimeout
	}
	if d.WriteTimeout == 0 {
		d.WriteTimeout = DefaultWriteTimeout
	}
	if d.IdleTimeout == 0 {
		d.IdleTimeout = DefaultIdleTimeout
	}
	if d.MaxHeaderBytes == 0 {
		d.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
}

// For returns the limits of the named listener (ListenerProxy, …): its own
// values over the shared ones.
func (l ListenersConfig) For(listener string) HTTPLimits {
	out := l.HTTPLimits
	var o HTTPLimits
	switch listener {
	case ListenerProxy:
		o = l.Proxy
	case ListenerAdmin:
		o = l.Admin
	case ListenerHTTPAuthz:
		o = l.HTTPAuthz
	}
	if o.ReadHeaderTimeout != 0 {
		out.ReadHeaderTimeout = o.ReadHeaderTimeout
	}
	if o.ReadTimeout != 0 {
		out.ReadTimeout = o.ReadTimeout
	}
	if o.WriteTimeout != 0 {
		out.WriteTimeout = o.WriteTimeout
	}
	if o.IdleTimeout != 0 {
		out.IdleTimeout = o.IdleTimeout
	}
	if o.MaxHeaderBytes != 0 {
		out.MaxHeaderBytes = o.MaxHeaderBytes
	}
	return out
}

func (l *ListenersConfig) validate(add func(format string, args ...any)) {
	check := func(prefix string, h HTTPLimits) {
		for _, d := range []struct {
			key string
			v   time.Duration
		}{
			{"read_header_timeout", h.ReadHeaderTimeout}, {"read_timeout", h.ReadTimeout},
			{"write_timeout", h.WriteTimeout}, {"idle_timeout", h.IdleTimeout},
		} {
			if d.v < 0 {
				add("%s%s: must be positive (got %s)", prefix, d.key, d.v)
			}
		}
		if h.MaxHeaderBytes < 0 || (h.MaxHeaderBytes > 0 && h.MaxHeaderBytes < 1024) {
			add("%smax_header_bytes: must be at least 1024 (got %d)", prefix, h.MaxHeaderBytes)
		}
	}
	check("listeners.", l.HTTPLimits)
	check("listeners.proxy.", l.Proxy)
	check("listeners.admin.", l.Admin)
	check("listeners.http_authz.", l.HTTPAuthz)
	for _, name := range []string{ListenerProxy, ListenerAdmin, ListenerHTTPAuthz} {
		if h := l.For(name); h.ReadHeaderTimeout > h.ReadTimeout {
			add("listeners: %s: read_header_timeout (%s) longer than read_timeout (%s)", name, h.ReadHeaderTimeout, h.ReadTimeout)
		}
	}
}

// GRPCMaxRecvBytes is the gRPC server's receive limit: a ProcessingRequest
// carries a whole buffered body (up to body.max_bytes) and a CheckRequest
// one request body (up to body.max_request_bytes), each wrapped in the
// protobuf envelope — request headers (Envoy bounds them to 60 KiB by
// default), attributes, metadata_context. 1 MiB of headroom covers those
// many times over; a message beyond the limit fails its stream
// (RESOURCE_EXHAUSTED), which Envoy answers with an error (fail closed).
func (c *Config) GRPCMaxRecvBytes() int {
	return max(c.Body.MaxBytes, c.Body.MaxRequestBytes) + grpcEnvelopeHeadroom
}

const grpcEnvelopeHeadroom = 1 << 20
