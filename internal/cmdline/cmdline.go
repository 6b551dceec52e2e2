// Package cmdline is what every gdprgate command line shares, so that all
// subcommands behave alike: each command has its own flags (`serve -h` lists
// serve's), every flag can also be set as GDPRGATE_<FLAG>, `-h` exits 0, a
// usage error exits 2 and names the flag or argument at fault (with the name
// that was probably meant), and any other error exits 1.
//
// Commands are github.com/spf13/cobra commands. A command that only groups
// others is made with Group; positional arguments are checked with Args.
// Execute runs a command tree and maps errors to exit codes.
package cmdline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gdprgate/gdprgate/internal/suggest"
)

// ErrUsage is wrapped by every usage error (bad flag, bad argument, unknown
// command): the process exits with status 2.
var ErrUsage = errors.New("usage")

// UsageError is a mistake in the command line.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Unwrap makes errors.Is(err, ErrUsage) true.
func (e *UsageError) Unwrap() error { return ErrUsage }

// Usagef makes a usage error.
func Usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// EnvPrefix starts every flag's environment variable.
const EnvPrefix = "GDPRGATE_"

// annotation keys on flags.
const (
	annEnv   = "gdprgate_env"   // the variable's name, when not derived from the flag's
	annNoEnv = "gdprgate_noenv" // the flag has no variable
)

// EnvName is the environment variable of a flag: GDPRGATE_ and the flag's
// name upper-cased with '-' as '_' (--grpc-addr: GDPRGATE_GRPC_ADDR).
func EnvName(f *pflag.Flag) string {
	if v := f.Annotations[annEnv]; len(v) == 1 {
		return v[0]
	}
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
}

// SetEnvName gives a flag an environment variable whose name is not derived
// from the flag's (kept for names published before the rule).
func SetEnvName(fs *pflag.FlagSet, flag, env string) {
	_ = fs.SetAnnotation(flag, annEnv, []string{env})
}

// NoEnv says a flag has no environment variable (-h, --version).
func NoEnv(fs *pflag.FlagSet, flag string) {
	_ = fs.SetAnnotation(flag, annNoEnv, []string{"true"})
}

// Group makes a command that only holds subcommands: run without one, or
// with one that does not exist, it is a usage error naming the subcommands.
func Group(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return Usagef("unknown command %q for %q%s", args[0], cmd.CommandPath(),
					suggest.DidYouMean(args[0], commandNames(cmd), nil))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return Usagef("a command is required: %s", strings.Join(commandNames(cmd), ", "))
		},
	}
}

func commandNames(cmd *cobra.Command) []string {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	return names
}

// Args checks the number of positional arguments: between min and max
// (max < 0: any number), described by synopsis ("ENTITY ID") in the error.
func Args(min, max int, synopsis string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || (max >= 0 && len(args) > max) {
			if synopsis == "" {
				return Usagef("%s takes no arguments (got %q)", cmd.CommandPath(), strings.Join(args, " "))
			}
			return Usagef("usage: %s %s (got %d argument(s))", cmd.CommandPath(), synopsis, len(args))
		}
		return nil
	}
}

// Prepare makes root and its subcommands behave as the package says. Run
// and Execute call it; it is idempotent.
func Prepare(root *cobra.Command) {
	if root.Annotations["gdprgate_prepared"] != "" {
		return
	}
	if root.Annotations == nil {
		root.Annotations = map[string]string{}
	}
	root.Annotations["gdprgate_prepared"] = "yes"
	root.SilenceErrors = true
	root.SilenceUsage = true
	root.SetFlagErrorFunc(flagError)
	root.SetUsageTemplate(usageTemplate)
	if root.Version != "" {
		root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	}
	prev := root.PersistentPreRunE
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if err := applyEnv(cmd); err != nil {
			return err
		}
		if prev != nil {
			return prev(cmd, args)
		}
		return nil
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.InitDefaultHelpFlag()
		NoEnv(c.Flags(), "help")
		describeEnv(c.LocalFlags())
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// usageTemplate shows a group's commands and a command's own flags apart
// from the flags it shares with its parents.
const usageTemplate = `Usage:{{if .HasAvailableSubCommands}}
  {{.CommandPath}} <command> [flags]{{else}}
  {{.UseLine}}{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}

Commands:{{range .Commands}}{{if .IsAvailableCommand}}
  {{rpad .Name .NamePadding}} {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

Flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableInheritedFlags}}

Flags of {{.Parent.CommandPath}}:
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableSubCommands}}

Run '{{.CommandPath}} <command> -h' for a command's flags.{{end}}
`

// describeEnv adds each flag's variable to its help line, once.
func describeEnv(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Annotations[annNoEnv] != nil || f.Name == "version" || f.Annotations["gdprgate_described"] != nil {
			return
		}
		if f.Annotations == nil {
			f.Annotations = map[string][]string{}
		}
		f.Annotations["gdprgate_described"] = []string{"yes"}
		f.Usage += " [$" + EnvName(f) + "]"
	})
}

// applyEnv sets every flag not given on the command line from its
// environment variable. A bad value names both the variable and the flag.
func applyEnv(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Annotations[annNoEnv] != nil || f.Name == "help" || f.Name == "version" {
			return
		}
		v, ok := os.LookupEnv(EnvName(f))
		if !ok {
			return
		}
		if serr := cmd.Flags().Set(f.Name, v); serr != nil {
			err = Usagef("%s=%q (for --%s): %v", EnvName(f), v, f.Name, serr)
		}
	})
	return err
}

var unknownFlag = regexp.MustCompile(`^unknown (?:shorthand )?flag: (?:'.' in (-\S+)|(--\S+))`)

// flagError turns pflag's parse errors into usage errors that suggest the
// flag that was probably meant.
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	m := unknownFlag.FindStringSubmatch(msg)
	if m == nil {
		return &UsageError{Msg: msg}
	}
	var names []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if !f.Hidden {
			names = append(names, f.Name)
		}
	})
	typed := m[2]
	if m[1] != "" { // -grpc-addr: a long flag with one dash
		typed = m[1]
	}
	typed, _, _ = strings.Cut(strings.TrimLeft(typed, "-"), "=")
	if m[1] != "" && len(typed) > 1 {
		if cmd.Flags().Lookup(typed) != nil {
			return &UsageError{Msg: fmt.Sprintf("%s (long flags take two dashes: --%s)", msg, typed)}
		}
		msg += " (long flags take two dashes)"
	}
	msg += suggest.DidYouMean(typed, names, func(s string) string { return "--" + s })
	return &UsageError{Msg: msg}
}

// Run executes root with args and returns what the command returned; a
// request for help or the version is not an error.
func Run(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) error {
	_, err := run(ctx, root, args, stdout, stderr)
	return err
}

func run(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) (*cobra.Command, error) {
	Prepare(root)
	if args == nil {
		args = []string{} // cobra would read os.Args
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil && !errors.Is(err, ErrUsage) && isCobraUsage(err) {
		err = &UsageError{Msg: err.Error()}
	}
	return cmd, err
}

// isCobraUsage recognises the few usage errors cobra makes itself (required
// flags, exclusive flag groups).
func isCobraUsage(err error) bool {
	m := err.Error()
	return strings.HasPrefix(m, "required flag") || strings.HasPrefix(m, "if any flags in the group") ||
		strings.HasPrefix(m, "at least one of the flags") || strings.HasPrefix(m, "unknown command")
}

// Execute runs root with args, prints an error as "<command path>: error",
// and returns the exit status: 0 success (and -h), 1 failure, 2 usage error.
func Execute(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	cmd, err := run(ctx, root, args, stdout, stderr)
	if err == nil {
		return 0
	}
	path := root.Name()
	if cmd != nil {
		path = cmd.CommandPath()
	}
	fmt.Fprintf(stderr, "%s: %v\n", path, err)
	if errors.Is(err, ErrUsage) {
		fmt.Fprintf(stderr, "Run '%s -h' for usage.\n", path)
		return 2
	}
	return 1
}
