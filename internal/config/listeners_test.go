package config

import (
	"strings"
	"testing"
	"time"
)

func TestListenerLimitsHaveDefaultsAndPerListenerOverrides(t *testing.T) {
	c, err := Parse([]byte(`
listeners:
  read_timeout: 30s
  max_header_bytes: 32768
  proxy: {write_timeout: 10m}
  admin: {read_timeout: 5m, idle_timeout: 10s}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]HTTPLimits{
		ListenerProxy:     {DefaultReadHeaderTimeout, 30 * time.Second, 10 * time.Minute, DefaultIdleTimeout, 32768},
		ListenerAdmin:     {DefaultReadHeaderTimeout, 5 * time.Minute, DefaultWriteTimeout, 10 * time.Second, 32768},
		ListenerHTTPAuthz: {DefaultReadHeaderTimeout, 30 * time.Second, DefaultWriteTimeout, DefaultIdleTimeout, 32768},
	}
	for name, w := range want {
		if got := c.Listeners.For(name); got != w {
			t.Errorf("%s: %+v, want %+v", name, got, w)
		}
	}
	d := Default().Listeners.For(ListenerAdmin)
	if d.ReadHeaderTimeout == 0 || d.ReadTimeout == 0 || d.WriteTimeout == 0 || d.IdleTimeout == 0 || d.MaxHeaderBytes == 0 {
		t.Errorf("a default listener has an unbounded limit: %+v", d)
	}
}

func TestInvalidListenerLimitsAreRefused(t *testing.T) {
	for yaml, want := range map[string]string{
		"listeners: {read_timeout: -1s}\n":                     "listeners.read_timeout: must be positive",
		"listeners: {proxy: {idle_timeout: -5s}}\n":            "listeners.proxy.idle_timeout",
		"listeners: {max_header_bytes: 100}\n":                 "listeners.max_header_bytes: must be at least 1024",
		"listeners: {http_authz: {read_header_timeout: 5m}}\n": "http_authz: read_header_timeout (5m0s) longer than read_timeout",
		"listeners: {admin: {write_timout: 5m}}\n":             "write_timout",
	} {
		if _, err := Parse([]byte(yaml)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error mentioning %q", yaml, err, want)
		}
	}
}

func TestGRPCReceiveLimitFollowsTheBodyLimit(t *testing.T) {
	c, err := Parse([]byte("body: {max_bytes: 20971520}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.GRPCMaxRecvBytes(); got <= 20<<20 {
		t.Errorf("GRPCMaxRecvBytes = %d, want more than body.max_bytes (envelope headroom)", got)
	}
	if got := Default().GRPCMaxRecvBytes(); got <= 8<<20 {
		t.Errorf("default GRPCMaxRecvBytes = %d, want more than 8 MiB", got)
	}
}
