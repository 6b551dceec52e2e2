package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeAndProxyRefuseToStartWithoutRouteMap: started with no --config
// (or a config without routes) gdprgate used to say ready and allow
// everything. It must refuse to start and say why.
func TestServeAndProxyRefuseToStartWithoutRouteMap(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(empty, []byte("unmapped: allow\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Free ports, so that a regression that starts serving fails the test
	// instead of colliding with anything.
	serve := []string{"serve", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}
	proxy := []string{"proxy", "--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}
	for _, args := range [][]string{
		serve,
		append(serve, "--config", empty),
		proxy,
		append(proxy, "--config", empty),
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // a server that starts anyway stops at once
			var out, errb bytes.Buffer
			code := run(ctx, args, &out, &errb)
			if code != 1 || !strings.Contains(errb.String(), "no route map") || !strings.Contains(errb.String(), "--config") {
				t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
			}
		})
	}
}
