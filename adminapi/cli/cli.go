// Package cli is `gdprgate admin`: a small client of the admin API for the
// chores an operator scripts — loading a registers file, importing
// evidence, requesting and following wipes, looking at a subject.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gdprgate/gdprgate/internal/cmdline"
	"github.com/gdprgate/gdprgate/policy/model"
)

// ErrUsage marks a usage error (the caller exits with status 2).
var ErrUsage = cmdline.ErrUsage

// Command is `gdprgate admin` and its subcommands.
func Command() *cobra.Command {
	c := &client{http: &http.Client{Timeout: 10 * time.Minute}}
	var adminURL string
	cmd := cmdline.Group("admin", "admin API client: load registers, import evidence, request and inspect wipes, approve deletions, the due report")
	cmd.Long = `gdprgate admin is a client of the admin API for the chores an operator
scripts: loading a registers file, importing evidence, requesting and following
wipes, looking at a subject. It talks to --admin-url with the bearer token
--admin-token.`
	pf := cmd.PersistentFlags()
	pf.StringVar(&adminURL, "admin-url", "http://127.0.0.1:9192", "admin API base URL")
	pf.StringVar(&c.token, "admin-token", "", "bearer token of the admin API")
	// --token was the flag's first name; it stays as an alias.
	cmd.SetGlobalNormalizationFunc(func(f *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "token" {
			name = "admin-token"
		}
		return pflag.NormalizedName(name)
	})
	cmd.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		c.base = strings.TrimRight(adminURL, "/")
		c.out = cmd.OutOrStdout()
		return nil
	}

	var confirmOff bool
	load := &cobra.Command{
		Use:   "load-registers FILE",
		Short: "replace the whole register set with FILE's, then load its subjects and evidence",
		Long: `load-registers replaces the whole register set with FILE's (a YAML or JSON
registers file; times may be relative to now, "now-100d"); the file's subjects
and evidence are loaded too (all or nothing). A file that turns
config.gdpr_enforced off is refused unless --confirm (and an admin token).`,
		Args: cmdline.Args(1, 1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.loadRegisters(cmd.Context(), args[0], confirmOff)
		},
	}
	load.Flags().BoolVar(&confirmOff, "confirm", false, "allow the file to turn config.gdpr_enforced off")
	// Like a wipe's, this switch is decided per invocation.
	cmdline.NoEnv(load.Flags(), "confirm")
	cmd.AddCommand(load)

	var iopt importOptions
	imp := &cobra.Command{
		Use:   "import-evidence FILE",
		Short: "import evidence records (NDJSON, or a JSON array), in chunks, with progress",
		Long: `import-evidence sends FILE's evidence records (one JSON object per line, or a
JSON array) to the admin API in chunks below the server's per-request limits.
A line that is not JSON, or a record the server refuses, is reported with its
line number (from 1) and the rest goes on. Importing the same file twice stores
nothing twice: records are keyed by evidence_key, or by their content without
one. Progress is recorded in FILE.import-state after every chunk; after an
interruption --resume continues where the server's last answer left off.`,
		Example: `  gdprgate admin import-evidence evidence.ndjson
  gdprgate admin import-evidence --resume evidence.ndjson`,
		Args: cmdline.Args(1, 1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.importEvidence(cmd.Context(), args[0], iopt, cmd.ErrOrStderr())
		},
	}
	f := imp.Flags()
	f.BoolVar(&iopt.atomic, "atomic", false, "store all records or none (the file must fit in one request)")
	f.BoolVar(&iopt.resume, "resume", false, "continue an interrupted import of FILE after its last acknowledged chunk")
	f.StringVar(&iopt.state, "state", "", "where progress is recorded (default FILE.import-state)")
	cmdline.EnumVar(f, &iopt.progress, "progress", []string{"auto", "bar", "lines", "off"}, "progress display: a bar on a terminal, plain lines otherwise (auto)")
	f.DurationVar(&iopt.interval, "progress-interval", 5*time.Second, "time between plain progress lines")
	f.IntVar(&iopt.chunk, "chunk", 0, "records per request (default: the server's limit, at most 5000)")
	f.IntVar(&iopt.show, "show-errors", 100, "print at most this many record errors (0: all); the summary counts them all")
	cmdline.NoEnv(f, "resume")
	cmd.AddCommand(imp)

	var dry, confirm bool
	wipe := &cobra.Command{
		Use:   "wipe ENTITY ID",
		Short: "request a wipe of a subject and everything related (WipeCtcAll)",
		Args:  cmdline.Args(2, 2, "ENTITY ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, _ := json.Marshal(map[string]any{"entity": args[0], "id": args[1], "confirm": confirm})
			path := "/v1/wipes"
			if dry {
				path += "?dry_run=true"
			}
			return c.call(cmd.Context(), "POST", path, "application/json", bytes.NewReader(body))
		},
	}
	wipe.Flags().BoolVar(&dry, "dry-run", false, "list the steps without doing them")
	wipe.Flags().BoolVar(&confirm, "confirm", false, "pass the mass-deletion guard")
	// A deletion is decided per invocation: no variable left in a shell
	// may confirm (or not dry-run) a wipe.
	cmdline.NoEnv(wipe.Flags(), "confirm")
	cmdline.NoEnv(wipe.Flags(), "dry-run")
	cmd.AddCommand(wipe)

	cmd.AddCommand(&cobra.Command{
		Use:   "wipe-status ID",
		Short: "show a wipe and its steps",
		Args:  cmdline.Args(1, 1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), "GET", "/v1/wipes/"+url.PathEscape(args[0]), "", nil)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "subject ENTITY ID",
		Short: "show a subject's computed state",
		Args:  cmdline.Args(2, 2, "ENTITY ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.call(cmd.Context(), "GET", "/v1/subjects/"+url.PathEscape(args[0])+"/"+url.PathEscape(args[1]), "", nil)
		},
	})
	cmd.AddCommand(forgetCommands(c)...)
	return cmd
}

// Run executes `gdprgate admin args...` on its own (tests, embedding),
// printing answers to stdout.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return cmdline.Run(ctx, Command(), args, stdout, stderr)
}

type client struct {
	base, token string
	http        *http.Client
	out         io.Writer
}

// APIError is a non-2xx answer of the admin API.
type APIError struct {
	Status int
	Code   string
	Body   string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("admin API answered %d %s: %s", e.Status, e.Code, strings.TrimSpace(e.Body))
}

// call makes one request and copies a successful answer to out.
func (c *client) call(ctx context.Context, method, path, ctype string, body io.Reader) error {
	b, err := c.do(ctx, method, path, ctype, body)
	if err != nil {
		return err
	}
	_, err = c.out.Write(b)
	return err
}

func (c *client) do(ctx context.Context, method, path, ctype string, body io.Reader) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if res.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		return b, &APIError{Status: res.StatusCode, Code: e.Error, Body: string(b)}
	}
	return b, nil
}

// loadRegisters parses the file locally (so that relative times resolve
// against this machine's now and errors are reported before anything is
// sent), replaces the registers, then loads the file's subjects and
// evidence (atomic import).
func (c *client) loadRegisters(ctx context.Context, path string, confirm bool) error {
	seed, err := model.LoadSeedFile(path, time.Now())
	if err != nil {
		return err
	}
	// The whole document, every member written: a PUT replaces it all.
	body, err := json.Marshal(struct {
		model.Registers
		Confirm bool `json:"confirm,omitempty"`
	}{seed.Registers, confirm})
	if err != nil {
		return fmt.Errorf("encode registers: %w", err)
	}
	if _, err := c.do(ctx, "PUT", "/v1/registers", "application/json", bytes.NewReader(body)); err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Status == http.StatusUnprocessableEntity && strings.Contains(ae.Body, `"confirm"`) {
			return fmt.Errorf("%s turns config.gdpr_enforced off; run again with --confirm if that is meant: %w", path, err)
		}
		return err
	}
	fmt.Fprintf(c.out, "registers replaced: %d sensitivities, %d categories, %d purposes, %d legalisations, %d rules, %d roles\n",
		len(seed.Sensitivities), len(seed.Categories), len(seed.Purposes), len(seed.Legalisations), len(seed.Rules), len(seed.Roles))
	for _, sub := range seed.Subjects {
		b, _ := json.Marshal(map[string]any{"origin": sub.Origin, "parent": sub.Parent})
		if _, err := c.do(ctx, "PUT", "/v1/subjects/"+url.PathEscape(sub.Ref.Entity)+"/"+url.PathEscape(sub.Ref.ID), "application/json", bytes.NewReader(b)); err != nil {
			return err
		}
	}
	if len(seed.Subjects) > 0 {
		fmt.Fprintf(c.out, "subjects stored: %d\n", len(seed.Subjects))
	}
	if len(seed.Evidence) == 0 {
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, ev := range seed.Evidence {
		_ = enc.Encode(ev)
	}
	return c.postImport(ctx, &buf, "application/x-ndjson", true)
}

func (c *client) postImport(ctx context.Context, body io.Reader, ctype string, atomic bool) error {
	path := "/v1/evidence:import"
	if atomic {
		path += "?atomic=true"
	}
	b, err := c.do(ctx, "POST", path, ctype, body)
	var out struct {
		Summary json.RawMessage `json:"summary"`
		Results []struct {
			Index  int    `json:"index"`
			Status string `json:"status"`
			Errors []struct {
				Field  string `json:"field"`
				Reason string `json:"reason"`
			} `json:"errors"`
		} `json:"results"`
	}
	if jerr := json.Unmarshal(b, &out); jerr != nil || out.Summary == nil {
		return err // not an import answer: the plain error says it all
	}
	for _, r := range out.Results {
		for _, fe := range r.Errors {
			fmt.Fprintf(c.out, "record %d: %s: %s\n", r.Index, fe.Field, fe.Reason)
		}
	}
	var compact bytes.Buffer
	_ = json.Compact(&compact, out.Summary)
	fmt.Fprintf(c.out, "import: %s\n", compact.String())
	if err == nil {
		var s struct{ Failed int }
		_ = json.Unmarshal(out.Summary, &s)
		if s.Failed > 0 {
			return fmt.Errorf("import: %d records refused", s.Failed)
		}
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return fmt.Errorf("import refused (%d %s)", ae.Status, ae.Code)
	}
	return err
}
