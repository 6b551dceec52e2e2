package main

import (
	"github.com/spf13/cobra"

	"github.com/gdprgate/gdprgate/internal/cmdline"
	"github.com/gdprgate/gdprgate/internal/config"
)

// serverFlag is one flag of the server commands (serve, proxy, demo) that
// overrides a key of the configuration file. To add one: append it to
// serverFlagDefs and name it in the commands that take it (serverFlags).
type serverFlag struct {
	name  string
	usage string
	// define registers the flag with its checked type (cmdline.AddrVar, …).
	define func(fs *cobra.Command, p *string, name, usage string)
	// target is the configuration key the flag overrides.
	target func(*config.Config) *string
}

// serverBoolFlags are the boolean server flags, by name: their usage and
// the configuration key they override.
var serverBoolFlags = map[string]struct {
	usage  string
	target func(*config.Config) *bool
}{
	"policy-allow-untested": {"load a --policy directory that has no passing test_ rule (refused by default)",
		func(c *config.Config) *bool { return &c.PolicyAllowUntested }},
}

func str(c *cobra.Command, p *string, name, usage string) { c.Flags().StringVar(p, name, "", usage) }
func addr(c *cobra.Command, p *string, name, usage string) {
	cmdline.AddrVar(c.Flags(), p, name, usage)
}
func file(c *cobra.Command, p *string, name, usage string) {
	cmdline.FileVar(c.Flags(), p, name, usage)
}
func dir(c *cobra.Command, p *string, name, usage string) { cmdline.DirVar(c.Flags(), p, name, usage) }

var serverFlagDefs = []serverFlag{
	{"config", "configuration file (YAML): route map, identity, redaction, wipes, admin tokens", file, nil},
	{"grpc-addr", "Envoy ext_authz + ext_proc gRPC address (default 127.0.0.1:9191)", addr,
		func(c *config.Config) *string { return &c.GRPCAddr }},
	{"admin-addr", "admin API address (default 127.0.0.1:9192)", addr,
		func(c *config.Config) *string { return &c.AdminAddr }},
	{"http-authz-addr", "HTTP authz mode (nginx auth_request, Caddy forward_auth, Traefik forwardAuth, Envoy HTTP ext_authz) on its own address; empty: under /authz on the admin listener", addr,
		func(c *config.Config) *string { return &c.HTTPAuthzAddr }},
	{"listen", "proxy listen address (default 127.0.0.1:8080)", addr,
		func(c *config.Config) *string { return &c.Listen }},
	{"upstream", "the backend's base URL (http:// or https://)",
		func(c *cobra.Command, p *string, name, usage string) {
			cmdline.URLVar(c.Flags(), p, name, []string{"http", "https"}, usage)
		},
		func(c *config.Config) *string { return &c.Upstream }},
	{"redis-url", "Redis URL (redis://, rediss://, unix://, redis-sentinel://, redis-cluster://); empty: embedded in-memory store",
		func(c *cobra.Command, p *string, name, usage string) {
			cmdline.URLVar(c.Flags(), p, name, []string{"redis", "rediss", "unix", "redis-sentinel", "redis-cluster"}, usage)
		},
		func(c *config.Config) *string { return &c.RedisURL }},
	{"policy", "directory of Rego policies replacing the default (hot-reloaded)", dir,
		func(c *config.Config) *string { return &c.PolicyDir }},
	{"seed", "registers + evidence file loaded into an empty store at start", file,
		func(c *config.Config) *string { return &c.Seed }},
	{"log-level", "how much to log (default info)",
		func(c *cobra.Command, p *string, name, usage string) {
			cmdline.EnumVar(c.Flags(), p, name, []string{"debug", "info", "warn", "error"}, usage)
		},
		func(c *config.Config) *string { return &c.LogLevel }},
}

// serverFlags holds the values of the server flags one command takes.
// Precedence: flag, then GDPRGATE_<FLAG>, then the config file, then the
// built-in default.
type serverFlags struct {
	cmd    *cobra.Command
	values map[string]*string
	bools  map[string]*bool
}

// newServerFlags defines the named flags (from serverFlagDefs) on cmd.
func newServerFlags(cmd *cobra.Command, names ...string) *serverFlags {
	sf := &serverFlags{cmd: cmd, values: map[string]*string{}, bools: map[string]*bool{}}
	for _, n := range names {
		if bf, ok := serverBoolFlags[n]; ok {
			b := new(bool)
			cmd.Flags().BoolVar(b, n, false, bf.usage)
			sf.bools[n] = b
			continue
		}
		def := flagDef(n)
		v := new(string)
		def.define(cmd, v, def.name, def.usage)
		sf.values[n] = v
	}
	return sf
}

func flagDef(name string) serverFlag {
	for _, d := range serverFlagDefs {
		if d.name == name {
			return d
		}
	}
	panic("gdprgate: no server flag " + name)
}

// get returns a flag's value ("" when the command does not take it).
func (sf *serverFlags) get(name string) string {
	if v, ok := sf.values[name]; ok {
		return *v
	}
	return ""
}

// set reports whether the flag was given (or came from its variable).
func (sf *serverFlags) set(name string) bool {
	f := sf.cmd.Flags().Lookup(name)
	return f != nil && f.Changed
}

// load reads --config and puts the flags given on top, then validates.
func (sf *serverFlags) load() (*config.Config, error) {
	cfg, err := config.Load(sf.get("config"))
	if err != nil {
		return nil, err
	}
	sf.apply(cfg)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// apply overrides cfg with the flags that were given.
func (sf *serverFlags) apply(cfg *config.Config) {
	for name, v := range sf.values {
		def := flagDef(name)
		if def.target != nil && sf.set(name) {
			*def.target(cfg) = *v
		}
	}
	for name, b := range sf.bools {
		if sf.set(name) {
			*serverBoolFlags[name].target(cfg) = *b
		}
	}
}

// require is a usage error naming the flag, its variable and its config key
// when a needed value is missing.
func require(value, flag, key string) error {
	if value != "" {
		return nil
	}
	return cmdline.Usagef("--%s is required (or %s%s, or %s: in --config)", flag, cmdline.EnvPrefix, envSuffix(flag), key)
}

func envSuffix(flag string) string {
	b := []byte(flag)
	for i, c := range b {
		switch {
		case c == '-':
			b[i] = '_'
		case c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
