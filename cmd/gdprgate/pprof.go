//go:build pprof

package main

import (
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // profiling handlers on http.DefaultServeMux
	"os"
)

// A build with -tags pprof serves net/http/pprof on GDPRGATE_PPROF_ADDR
// (loopback only), for profiling a server under cmd/gdprgate-load. Release
// builds have no such listener: profiles reveal request data.
func init() {
	addr := os.Getenv("GDPRGATE_PPROF_ADDR")
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		slog.Error("GDPRGATE_PPROF_ADDR must be a loopback host:port", "addr", addr)
		return
	}
	go func() {
		if err := http.ListenAndServe(addr, nil); err != nil {
			slog.Error("pprof listener", "err", err)
		}
	}()
}
