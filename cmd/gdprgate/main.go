// Command gdprgate makes an existing HTTP/JSON API obey GDPR visibility rules:
// it answers Envoy's ext_authz and ext_proc protocols (serve), or stands in
// front of the API as a reverse proxy (proxy), and serves an admin API for
// the registers, evidence and wipes.
//
// Each subcommand lives in its own file and registers itself with register
// from an init function; internal/cmdline gives them their common behaviour
// (flags also as GDPRGATE_<FLAG>, exit codes, errors that name the flag).
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/gdprgate/gdprgate/internal/cmdline"
	"github.com/gdprgate/gdprgate/internal/version"
)

// builder makes a fresh command (each run gets its own tree, so tests can
// run commands concurrently and flags start from their defaults).
type builder struct {
	parent string // "" for top level, else the parent command's name ("routes")
	build  func() *cobra.Command
}

var builders []builder

// register adds a command under parent ("" top level, or the name of a
// group such as "policy", "routes" or "admin").
func register(parent string, build func() *cobra.Command) {
	builders = append(builders, builder{parent, build})
}

// groups are the commands that only hold others.
var groups = []struct{ name, short string }{
	{"policy", "Rego policy tools (policy test)"},
	{"routes", "route map tools: check a route map, suggest one from an OpenAPI document"},
	{"store", "store tools: migrate a Redis store into the sharded key layout"},
}

func newRoot() *cobra.Command {
	root := cmdline.Group("gdprgate", "make an HTTP/JSON API obey GDPR visibility rules")
	root.Long = `gdprgate makes an existing HTTP/JSON API obey GDPR visibility rules without
changing it: it answers Envoy's ext_authz and ext_proc protocols (serve), or
stands in front of the API as a reverse proxy (proxy), with an admin API for
the registers, evidence, wipes and audit trail.

Every flag can also be set as GDPRGATE_<FLAG> (--redis-url: GDPRGATE_REDIS_URL);
a flag on the command line wins over the variable, which wins over --config.`
	root.Version = version.Version
	root.CompletionOptions.HiddenDefaultCmd = true
	byName := map[string]*cobra.Command{}
	for _, g := range groups {
		c := cmdline.Group(g.name, g.short)
		byName[g.name] = c
		root.AddCommand(c)
	}
	var later []builder
	for _, b := range builders {
		if b.parent != "" {
			later = append(later, b)
			continue
		}
		c := b.build()
		byName[c.Name()] = c
		root.AddCommand(c)
	}
	for _, b := range later {
		p, ok := byName[b.parent]
		if !ok {
			panic("gdprgate: no command " + b.parent + " to register under")
		}
		p.AddCommand(b.build())
	}
	// A group left empty (its subcommands not built yet) is not shown.
	for _, g := range groups {
		if c := byName[g.name]; !c.HasSubCommands() {
			root.RemoveCommand(c)
		}
	}
	return root
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit status: 0 success
// (and -h, --version), 1 failure, 2 usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cmdline.Execute(ctx, newRoot(), slices.Clone(args), stdout, stderr)
}
