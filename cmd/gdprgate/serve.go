package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/gdprgate/gdprgate/internal/app"
	"github.com/gdprgate/gdprgate/internal/binpages"
	"github.com/gdprgate/gdprgate/internal/cmdline"
	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/internal/proxy"
	"github.com/gdprgate/gdprgate/policy"
)

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl}))
}

// adminHandler serves the admin API, with the HTTP authz mode under /authz/
// unless it has its own listener.
func adminHandler(a *app.App) http.Handler {
	if a.Config.HTTPAuthzAddr != "" {
		return a.Admin
	}
	mux := http.NewServeMux()
	mux.Handle("/", a.Admin)
	h := httpAuthz(a, "/authz")
	mux.Handle("/authz", h)  // nginx auth_request, Caddy, Traefik
	mux.Handle("/authz/", h) // Envoy HTTP ext_authz appends the original path
	return mux
}

func listen(addr, what string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", what, err)
	}
	return lis, nil
}

func init() {
	register("", serveCmd)
	register("", proxyCmd)
	register("policy", policyTestCmd)
}

func serveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "serve Envoy ext_authz + ext_proc over gRPC and the admin API",
		Long: `serve answers Envoy's ext_authz (Check) and ext_proc (Process) gRPC services and
gRPC health on --grpc-addr, and the admin API, /healthz, /readyz and /metrics
on --admin-addr.`,
		Example: "  gdprgate serve --config gdprgate.yaml --redis-url redis://127.0.0.1:6379",
		Args:    cmdline.Args(0, 0, ""),
	}
	sf := newServerFlags(cmd, "config", "grpc-addr", "admin-addr", "http-authz-addr", "redis-url", "policy", "policy-allow-untested", "seed", "log-level")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := sf.load()
		if err != nil {
			return err
		}
		return runServe(cmd.Context(), cfg, cmd.ErrOrStderr())
	}
	return cmd
}

func runServe(ctx context.Context, cfg *config.Config, stderr io.Writer) error {
	log := newLogger(cfg, stderr)
	a, err := app.New(ctx, cfg, app.Options{Logger: log})
	if err != nil {
		return err
	}
	defer a.Close()
	glis, err := listen(cfg.GRPCAddr, "grpc")
	if err != nil {
		return err
	}
	alis, err := listen(cfg.AdminAddr, "admin")
	if err != nil {
		return err
	}
	gs := a.GRPCServer()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return gs.Serve(glis) })
	g.Go(func() error {
		<-gctx.Done()
		a.Authz.SetServing(false)
		gs.GracefulStop()
		return nil
	})
	g.Go(func() error { return serveAdmin(gctx, a, alis) })
	if cfg.HTTPAuthzAddr != "" {
		hlis, err := listen(cfg.HTTPAuthzAddr, "http authz")
		if err != nil {
			return err
		}
		g.Go(func() error {
			return app.Serve(gctx, hlis, httpAuthz(a, ""), cfg.Listeners.For(config.ListenerHTTPAuthz))
		})
	}
	log.Info("gdprgate serving", "grpc", glis.Addr().String(), "admin", alis.Addr().String(), "http_authz", cfg.HTTPAuthzAddr)
	releaseStartup(log, cfg.Limits.ReleaseBinaryPages)
	return ignoreClosed(g.Wait())
}

// releaseStartup gives back what start-up alone needed: the garbage of
// loading the policy, config and seeds (returned to the system at once
// instead of over minutes), then the pages of the binary it read (see
// binpages: idle RSS 14-18 MiB instead of 56-58). The pages an exchange
// uses come back on its first run, read from the file one by one (see
// binpages.Release for why not as the page cache held them), as
// limits.release_binary_pages says.
// In that order: the collection reads type data of the binary.
func releaseStartup(log *slog.Logger, mode string) {
	debug.FreeOSMemory()
	if mode == config.ReleaseOff {
		return
	}
	n, err := binpages.Release(mode == config.ReleaseEvict)
	if err != nil && !errors.Is(err, binpages.ErrUnsupported) {
		log.Warn("could not release the binary's start-up pages", "error", err)
		return
	}
	log.Debug("released the binary's start-up pages", "bytes", n)
}

func serveAdmin(ctx context.Context, a *app.App, lis net.Listener) error {
	tlsCfg, err := adminTLS(a.Config)
	if err != nil {
		return err
	}
	if tlsCfg != nil {
		lis = tlsListener(lis, tlsCfg)
	}
	return app.Serve(ctx, lis, adminHandler(a), a.Config.Listeners.For(config.ListenerAdmin))
}

func proxyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "run as a reverse proxy in front of --upstream, with the admin API",
		Long: `proxy puts gdprgate's request decision and response redaction around a
reverse proxy to --upstream, for backends without Envoy, and serves the admin
API on --admin-addr.`,
		Example: "  gdprgate proxy --upstream http://127.0.0.1:8081 --config gdprgate.yaml",
		Args:    cmdline.Args(0, 0, ""),
	}
	sf := newServerFlags(cmd, "config", "listen", "upstream", "admin-addr", "redis-url", "policy", "policy-allow-untested", "seed", "log-level")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := sf.load()
		if err != nil {
			return err
		}
		if err := require(cfg.Upstream, "upstream", "upstream"); err != nil {
			return err
		}
		log := newLogger(cfg, cmd.ErrOrStderr())
		a, err := app.New(cmd.Context(), cfg, app.Options{Logger: log})
		if err != nil {
			return err
		}
		defer a.Close()
		releaseStartup(log, cfg.Limits.ReleaseBinaryPages)
		return runProxyListeners(cmd.Context(), a, cfg, nil, nil)
	}
	return cmd
}

// runProxyListeners serves the proxy and the admin API; listeners may be
// given (demo) or are opened from the config.
func runProxyListeners(ctx context.Context, a *app.App, cfg *config.Config, plis, alis net.Listener) error {
	var err error
	if plis == nil {
		if plis, err = listen(cfg.Listen, "proxy"); err != nil {
			return err
		}
	}
	if alis == nil {
		if alis, err = listen(cfg.AdminAddr, "admin"); err != nil {
			return err
		}
	}
	p, err := proxy.New(proxy.Options{Gate: a.Gate, Upstream: cfg.Upstream, Logger: a.Log,
		MaxRequestBytes: cfg.Body.MaxRequestBytes, MaxBodyBytes: cfg.Body.MaxBytes,
		StreamAbove:     max(cfg.Body.StreamAbove, 0),
		TrustedSources:  cfg.Identity.TrustedPrefixes(),
		BackendH2C:      cfg.Proxy.BackendHTTP2 == config.BackendHTTP2H2C,
		IdentityHeaders: []string{cfg.Identity.RolesHeader, cfg.Identity.CallerHeader, cfg.Identity.ProjectHeader}})
	if err != nil {
		return err
	}
	warnTrust(a.Log, cfg)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return app.Serve(gctx, plis, p, cfg.Listeners.For(config.ListenerProxy)) })
	g.Go(func() error { return serveAdmin(gctx, a, alis) })
	a.Log.Info("gdprgate proxy serving", "listen", plis.Addr().String(), "upstream", cfg.Upstream, "admin", alis.Addr().String())
	return ignoreClosed(g.Wait())
}

// warnTrust says at start whom the proxy believes identity headers from:
// the default (loopback) may be too little behind a load balancer, and a
// catch-all prefix lets any client claim any role.
func warnTrust(log *slog.Logger, cfg *config.Config) {
	hdrs := strings.Join([]string{cfg.Identity.RolesHeader, cfg.Identity.CallerHeader, cfg.Identity.ProjectHeader}, ", ")
	if len(cfg.Identity.TrustedSources) == 0 {
		log.Warn("proxy: identity headers ("+hdrs+") are believed from loopback peers only; set identity.trusted_sources for the proxies in front, or identity.jwt",
			"trusted_sources", "127.0.0.0/8, ::1/128")
		return
	}
	for _, p := range cfg.Identity.TrustedPrefixes() {
		if p.Bits() == 0 {
			log.Warn("proxy: identity.trusted_sources contains " + p.String() + ": every client may claim any role through " + hdrs)
		}
	}
}

func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, context.Canceled) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func policyTestCmd() *cobra.Command {
	var verbose bool
	var configFile, path string
	cmd := &cobra.Command{
		Use:   "test [DIR]",
		Short: "run the Rego tests (test_ rules) of DIR, or of the built-in default policy",
		Example: `  gdprgate policy test              # the default policy's tests
  gdprgate policy test ./my-policy  # yours
  gdprgate policy test --config gdprgate.yaml            # the configured policy_dir and policy.path
  gdprgate policy test --path envoy/authz/allow ./opa    # an opa-envoy-plugin policy`,
		Args: cmdline.Args(0, 1, "[DIR]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, entry := "", path
			if configFile != "" {
				cfg, err := config.Load(configFile)
				if err != nil {
					return err
				}
				dir = cfg.PolicyDir
				if entry == "" {
					entry = cfg.Policy.Path
				}
			}
			if len(args) > 0 {
				dir = args[0]
			}
			if dir != "" {
				if st, err := os.Stat(dir); err != nil || !st.IsDir() {
					return cmdline.Usagef("%s: not a directory", dir)
				}
			}
			stdout := cmd.OutOrStdout()
			passed, failed, err := policy.RunTests(cmd.Context(), dir, entry, stdout, verbose)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
			if failed > 0 {
				return fmt.Errorf("%d policy test(s) failed", failed)
			}
			if passed == 0 {
				return fmt.Errorf("no test_ rules found in %s", strings.TrimSpace(dir+" (default policy)"))
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print every test's result")
	cmd.Flags().StringVar(&configFile, "config", os.Getenv("GDPRGATE_CONFIG"), "configuration file whose policy_dir and policy.path are tested")
	cmd.Flags().StringVar(&path, "path", "", "decision entry point, overriding policy.path (e.g. envoy/authz/allow); the test fails when it has no rule")
	return cmd
}
