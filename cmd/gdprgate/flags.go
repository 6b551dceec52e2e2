package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/gdprgate/gdprgate/internal/config"
)

// common holds the flags every server command shares. Precedence: flag,
// then GDPRGATE_<FLAG> environment variable, then the config file, then the
// built-in default.
type common struct {
	fs            *flag.FlagSet
	configFile    string
	grpcAddr      string
	adminAddr     string
	httpAuthzAddr string
	listen        string
	upstream      string
	redisURL      string
	policyDir     string
	seed          string
	logLevel      string
}

func newFlags(name string, stderr io.Writer) *common {
	c := &common{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	c.fs.SetOutput(stderr)
	c.fs.StringVar(&c.configFile, "config", "", "configuration file (YAML): route map, identity, redaction, wipes, admin tokens")
	c.fs.StringVar(&c.grpcAddr, "grpc-addr", "", "Envoy ext_authz + ext_proc gRPC address (default 127.0.0.1:9191)")
	c.fs.StringVar(&c.adminAddr, "admin-addr", "", "admin API address (default 127.0.0.1:9192)")
	c.fs.StringVar(&c.httpAuthzAddr, "http-authz-addr", "", "HTTP authz mode (nginx auth_request, Caddy forward_auth, Traefik forwardAuth, Envoy HTTP ext_authz) on its own address; empty: served under /authz on the admin listener")
	c.fs.StringVar(&c.listen, "listen", "", "proxy listen address (default 127.0.0.1:8080)")
	c.fs.StringVar(&c.upstream, "upstream", "", "proxy: the backend's base URL")
	c.fs.StringVar(&c.redisURL, "redis-url", "", "Redis URL (redis://, rediss://, redis-sentinel://, redis-cluster://); empty: embedded in-memory store")
	c.fs.StringVar(&c.policyDir, "policy", "", "directory of Rego policies replacing the default (hot-reloaded)")
	c.fs.StringVar(&c.seed, "seed", "", "registers + evidence file loaded into an empty store at start")
	c.fs.StringVar(&c.logLevel, "log-level", "", "debug, info, warn or error (default info)")
	return c
}

// parse parses args, applies GDPRGATE_* variables to flags not given, and
// loads the configuration with the flags on top.
func (c *common) parse(args []string) (*config.Config, error) {
	if err := c.fs.Parse(args); err != nil {
		return nil, errUsage
	}
	if c.fs.NArg() > 0 {
		fmt.Fprintf(c.fs.Output(), "unexpected arguments: %s\n", strings.Join(c.fs.Args(), " "))
		return nil, errUsage
	}
	set := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	c.fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := "GDPRGATE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			_ = f.Value.Set(v)
			set[f.Name] = true
		}
	})
	cfg, err := config.Load(c.configFile)
	if err != nil {
		return nil, err
	}
	c.apply(cfg, set)
	return cfg, cfg.Validate()
}

func (c *common) apply(cfg *config.Config, set map[string]bool) {
	over := func(name string, dst *string, v string) {
		if set[name] {
			*dst = v
		}
	}
	over("grpc-addr", &cfg.GRPCAddr, c.grpcAddr)
	over("admin-addr", &cfg.AdminAddr, c.adminAddr)
	over("http-authz-addr", &cfg.HTTPAuthzAddr, c.httpAuthzAddr)
	over("listen", &cfg.Listen, c.listen)
	over("upstream", &cfg.Upstream, c.upstream)
	over("redis-url", &cfg.RedisURL, c.redisURL)
	over("policy", &cfg.PolicyDir, c.policyDir)
	over("seed", &cfg.Seed, c.seed)
	over("log-level", &cfg.LogLevel, c.logLevel)
}
