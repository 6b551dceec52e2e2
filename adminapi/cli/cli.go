// Package cli is `gdprgate admin`: a small client of the admin API for the
// chores an operator scripts — loading a registers file, importing
// evidence, requesting and following wipes, looking at a subject.
package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gdprgate/gdprgate/policy/model"
)

// ErrUsage marks a usage error (the caller exits with status 2).
var ErrUsage = errors.New("usage")

const usageText = `usage: gdprgate admin [--admin-url URL] [--token TOKEN] <command> [args]

commands:
  load-registers FILE     replace the whole register set with FILE's (YAML or JSON
                          registers file; times may be relative, "now-100d"); the
                          file's subjects and evidence are loaded too
  import-evidence FILE    import evidence records (NDJSON, or a JSON array);
                          --atomic stores all or nothing
  wipe ENTITY ID          request a wipe (WipeCtcAll); --dry-run lists the steps,
                          --confirm passes the mass-deletion guard
  wipe-status ID          show a wipe and its steps
  subject ENTITY ID       show a subject's computed state

flags (also as environment variables):
  --admin-url   GDPRGATE_ADMIN_URL    default http://127.0.0.1:9192
  --token       GDPRGATE_ADMIN_TOKEN  bearer token
`

// Run executes `gdprgate admin args...`, printing answers to stdout.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("admin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usageText) }
	adminURL := fs.String("admin-url", envOr("GDPRGATE_ADMIN_URL", "http://127.0.0.1:9192"), "admin API base URL")
	token := fs.String("token", os.Getenv("GDPRGATE_ADMIN_TOKEN"), "bearer token")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return fmt.Errorf("%w: a command is required", ErrUsage)
	}
	c := &client{base: strings.TrimRight(*adminURL, "/"), token: *token, http: &http.Client{Timeout: 10 * time.Minute}, out: stdout}
	cmd, cargs := rest[0], rest[1:]
	switch cmd {
	case "load-registers":
		if len(cargs) != 1 {
			return fmt.Errorf("%w: load-registers FILE", ErrUsage)
		}
		return c.loadRegisters(ctx, cargs[0])
	case "import-evidence":
		sub := flag.NewFlagSet("import-evidence", flag.ContinueOnError)
		sub.SetOutput(stderr)
		atomic := sub.Bool("atomic", false, "store all records or none")
		files, err := parseInterleaved(sub, cargs)
		if err != nil || len(files) != 1 {
			return fmt.Errorf("%w: import-evidence [--atomic] FILE", ErrUsage)
		}
		return c.importEvidence(ctx, files[0], *atomic)
	case "wipe":
		sub := flag.NewFlagSet("wipe", flag.ContinueOnError)
		sub.SetOutput(stderr)
		dry := sub.Bool("dry-run", false, "list the steps without doing them")
		confirm := sub.Bool("confirm", false, "pass the mass-deletion guard")
		pos, err := parseInterleaved(sub, cargs)
		if err != nil || len(pos) != 2 {
			return fmt.Errorf("%w: wipe ENTITY ID [--dry-run] [--confirm]", ErrUsage)
		}
		body, _ := json.Marshal(map[string]any{"entity": pos[0], "id": pos[1], "confirm": *confirm})
		path := "/v1/wipes"
		if *dry {
			path += "?dry_run=true"
		}
		return c.call(ctx, "POST", path, "application/json", bytes.NewReader(body))
	case "wipe-status":
		if len(cargs) != 1 {
			return fmt.Errorf("%w: wipe-status ID", ErrUsage)
		}
		return c.call(ctx, "GET", "/v1/wipes/"+url.PathEscape(cargs[0]), "", nil)
	case "subject":
		if len(cargs) != 2 {
			return fmt.Errorf("%w: subject ENTITY ID", ErrUsage)
		}
		return c.call(ctx, "GET", "/v1/subjects/"+url.PathEscape(cargs[0])+"/"+url.PathEscape(cargs[1]), "", nil)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usageText)
		return nil
	default:
		fs.Usage()
		return fmt.Errorf("%w: unknown command %q", ErrUsage, cmd)
	}
}

// parseInterleaved parses flags that may come before or after the
// positional arguments ("wipe contact c-7 --dry-run").
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
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
func (c *client) loadRegisters(ctx context.Context, path string) error {
	seed, err := model.LoadSeedFile(path, time.Now())
	if err != nil {
		return err
	}
	body, err := json.Marshal(seed.Registers)
	if err != nil {
		return fmt.Errorf("encode registers: %w", err)
	}
	if _, err := c.do(ctx, "PUT", "/v1/registers", "application/json", bytes.NewReader(body)); err != nil {
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

// importEvidence streams the file as it is; a file whose first non-blank
// byte is '[' is a JSON array, anything else NDJSON.
func (c *client) importEvidence(ctx context.Context, path string, atomic bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	ctype := "application/x-ndjson"
	for {
		b, err := br.Peek(1)
		if err != nil {
			break
		}
		if b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t' {
			_, _ = br.ReadByte()
			continue
		}
		if b[0] == '[' {
			ctype = "application/json"
		}
		break
	}
	return c.postImport(ctx, br, ctype, atomic)
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
