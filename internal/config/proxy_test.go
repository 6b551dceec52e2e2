package config

import (
	"strings"
	"testing"
)

func TestBackendHTTP2IsOffOrH2COverCleartext(t *testing.T) {
	if got := Default().Proxy.BackendHTTP2; got != BackendHTTP2Off {
		t.Errorf("default proxy.backend_http2 = %q, want off", got)
	}
	if c, err := Parse([]byte("upstream: http://127.0.0.1:8081\nproxy: {backend_http2: h2c}\n")); err != nil || c.Proxy.BackendHTTP2 != BackendHTTP2H2C {
		t.Errorf("h2c to an http upstream: %v", err)
	}
	for yaml, want := range map[string]string{
		"proxy: {backend_http2: yes}\n":                                "proxy.backend_http2: must be off or h2c",
		"upstream: https://crm.example\nproxy: {backend_http2: h2c}\n": "the upstream \"https://crm.example\" is https",
	} {
		if _, err := Parse([]byte(yaml)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error mentioning %q", yaml, err, want)
		}
	}
}
