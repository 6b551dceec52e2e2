// Command gdprgate makes an existing HTTP/JSON API obey GDPR visibility rules:
// it answers Envoy's ext_authz and ext_proc protocols (serve), or stands in
// front of the API as a reverse proxy (proxy), and serves an admin API for
// the registers, evidence and wipes.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// errUsage marks a usage error: exit code 2.
var errUsage = errors.New("usage")

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands []command

func init() {
	commands = []command{
		{"serve", "serve Envoy ext_authz + ext_proc over gRPC and the admin API", runServe},
		{"proxy", "run as a reverse proxy in front of --upstream, with the admin API", runProxy},
		{"demo", "run the example CRM behind the proxy with an in-memory store", runDemo},
		{"policy", "policy test DIR: run the Rego tests (test_ rules) in DIR", runPolicy},
		{"admin", "admin client: load registers, import evidence, request and inspect wipes", runAdmin},
		{"version", "print the version", runVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: gdprgate <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Every flag can also be set as GDPRGATE_<FLAG> (e.g. GDPRGATE_REDIS_URL).")
	fmt.Fprintln(w, "Run 'gdprgate <command> -h' for a command's flags.")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, errUsage):
			return 2
		default:
			fmt.Fprintf(stderr, "gdprgate %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "gdprgate: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}
