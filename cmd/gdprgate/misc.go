package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"

	"github.com/gdprgate/gdprgate/adminapi/cli"
	"github.com/gdprgate/gdprgate/internal/app"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/httpauthz"
	"github.com/gdprgate/gdprgate/internal/version"
)

func runAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return cli.Run(ctx, args, stdout, stderr)
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fmt.Fprintln(stdout, "gdprgate", version.Version)
	return nil
}

func httpAuthz(a *app.App, prefix string) http.Handler {
	return httpauthz.New(a.Gate, httpauthz.Options{PathPrefix: prefix, Logger: a.Log})
}

// adminTLS builds the admin listener's TLS config; with client_ca set,
// clients must present a certificate signed by it (mTLS).
func adminTLS(cfg *config.Config) (*tls.Config, error) {
	if cfg.Admin.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.Admin.TLSCert, cfg.Admin.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("admin tls: %w", err)
	}
	t := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.Admin.ClientCA != "" {
		pem, err := os.ReadFile(cfg.Admin.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("admin client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("admin client_ca %s: no certificate found", cfg.Admin.ClientCA)
		}
		t.ClientCAs = pool
		t.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return t, nil
}

func tlsListener(lis net.Listener, cfg *tls.Config) net.Listener { return tls.NewListener(lis, cfg) }
