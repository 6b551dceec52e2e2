package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/spf13/cobra"

	"github.com/gdprgate/gdprgate/adminapi/cli"
	"github.com/gdprgate/gdprgate/internal/app"
	"github.com/gdprgate/gdprgate/internal/cmdline"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/httpauthz"
	"github.com/gdprgate/gdprgate/internal/version"
)

func init() {
	register("", cli.Command)
	register("", versionCmd)
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version",
		Args:  cmdline.Args(0, 0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "gdprgate", version.Version)
			return nil
		},
	}
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
