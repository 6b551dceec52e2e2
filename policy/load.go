package policy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/tester"

	defaultpolicy "github.com/gdprgate/gdprgate/rego"
)

// DecisionQuery is the rule every policy must define.
const DecisionQuery = "data.gdprgate.authz.decision"

var decisionRef = ast.MustParseRef(DecisionQuery)

// sourceFile is one .rego file of a policy directory.
type sourceFile struct {
	name string // shown in errors: the file's path, or "default/<file>" when embedded
	src  []byte
}

func isTestFile(name string) bool { return strings.HasSuffix(name, "_test.rego") }

// policyFS is where the policy comes from: dir, or the embedded default when
// dir is "". prefix names the files in error messages.
func policyFS(dir string) (fsys fs.FS, prefix string) {
	if dir == "" {
		return defaultpolicy.Default, "default"
	}
	return os.DirFS(dir), dir
}

// readSources reads every .rego file under dir (recursively, like opa),
// sorted by name so that the fingerprint is stable.
func readSources(dir string) ([]sourceFile, error) {
	fsys, prefix := policyFS(dir)
	var files []sourceFile
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".rego") {
			return nil
		}
		src, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		files = append(files, sourceFile{name: path.Join(prefix, p), src: src})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read policy %s: %w", prefix, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("read policy %s: no .rego files", prefix)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	return files, nil
}

func fingerprint(files []sourceFile) [32]byte {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%d\x00", f.name, len(f.src))
		h.Write(f.src)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// parseSources parses every file in Rego v1 syntax. Parse errors carry
// file:line.
func parseSources(files []sourceFile) (all, serving map[string]*ast.Module, err error) {
	all = make(map[string]*ast.Module, len(files))
	serving = make(map[string]*ast.Module, len(files))
	var errs []error
	for _, f := range files {
		m, err := ast.ParseModuleWithOpts(f.name, string(f.src), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		all[f.name] = m
		if !isTestFile(f.name) {
			serving[f.name] = m
		}
	}
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("parse policy: %w", errors.Join(errs...))
	}
	if len(serving) == 0 {
		return nil, nil, errors.New("parse policy: only _test.rego files")
	}
	return all, serving, nil
}

// compiled is one loaded, tested and prepared policy.
type compiled struct {
	query rego.PreparedEvalQuery
	// memoisable: decisions depend on Facts only (see analyse).
	memoisable bool
	// why is the first reason the policy is not memoisable.
	why         string
	fingerprint [32]byte
}

// compilePolicy parses, compiles and tests files and prepares the decision
// query. Test files are compiled with the policy to run its tests but are
// not part of the serving policy: a test file cannot change a decision.
// Like `gdprgate policy test`, it needs at least one passing test unless
// allowUntested.
func compilePolicy(ctx context.Context, files []sourceFile, allowUntested bool) (*compiled, error) {
	all, serving, err := parseSources(files)
	if err != nil {
		return nil, err
	}
	c := ast.NewCompiler().WithEnablePrintStatements(false)
	if c.Compile(serving); c.Failed() {
		return nil, fmt.Errorf("compile policy: %w", c.Errors)
	}
	if len(c.GetRulesExact(decisionRef)) == 0 {
		return nil, fmt.Errorf("compile policy: no rule %s", DecisionQuery)
	}
	passed, failed, err := runTests(ctx, all, io.Discard, false)
	if err != nil {
		return nil, err
	}
	if len(failed) > 0 {
		return nil, fmt.Errorf("policy tests failed:\n%s", strings.Join(failed, "\n"))
	}
	if passed == 0 && !allowUntested {
		return nil, errors.New("policy has no test_ rule that passes (a *_test.rego file); refused unless --policy-allow-untested")
	}
	memo, why := analyse(c)
	pq, err := rego.New(
		rego.ParsedQuery(ast.NewBody(ast.NewExpr(ast.NewTerm(decisionRef)))),
		rego.Compiler(c),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("prepare policy query: %w", err)
	}
	return &compiled{query: pq, memoisable: memo, why: why, fingerprint: fingerprint(files)}, nil
}

// requestInputs are the parts of the input that are not derived from Facts.
// A policy reading any of them cannot be memoised per Facts.
var requestInputs = map[string]bool{
	"attributes":   true,
	"parsed_path":  true,
	"parsed_query": true,
	"parsed_body":  true,
	"now":          true,
}

// timeDependent builtins are deterministic for OPA (same value within one
// query) but differ between requests, so they defeat memoisation too.
var timeDependent = map[string]bool{
	"time.now_ns": true,
}

// analyse reports whether every decision of the compiled policy is a
// function of Facts alone: it walks the compiled (import-resolved) modules
// for refs into request-specific input, whole-input reads and builtins whose
// result changes between calls.
func analyse(c *ast.Compiler) (memoisable bool, why string) {
	names := make([]string, 0, len(c.Modules))
	for name := range c.Modules {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ast.WalkTerms(c.Modules[name], func(t *ast.Term) bool {
			if why != "" {
				return true
			}
			switch v := t.Value.(type) {
			case ast.Ref:
				if !v.HasPrefix(ast.InputRootRef) {
					return false
				}
				if len(v) < 2 {
					why = locate(t, "reads the whole input")
					return true
				}
				key, ok := v[1].Value.(ast.String)
				if !ok {
					why = locate(t, "reads input with a variable key")
					return true
				}
				if requestInputs[string(key)] {
					why = locate(t, "reads input."+string(key))
				}
				return true // the rest of the ref is not a read of input
			case ast.Var:
				if v.Equal(ast.InputRootDocument.Value) {
					why = locate(t, "reads the whole input")
				}
			case ast.Call:
				why = callReason(t.Location, v[0].String())
			}
			return false
		})
		ast.WalkExprs(c.Modules[name], func(e *ast.Expr) bool {
			if why == "" && e.IsCall() {
				why = callReason(e.Location, e.Operator().String())
			}
			return why != ""
		})
		if why != "" {
			return false, why
		}
	}
	return true, ""
}

func callReason(loc *ast.Location, name string) string {
	if timeDependent[name] {
		return at(loc, "calls "+name)
	}
	if b, ok := ast.BuiltinMap[name]; ok && b.Nondeterministic {
		return at(loc, "calls non-deterministic "+name)
	}
	return ""
}

func locate(t *ast.Term, what string) string { return at(t.Location, what) }

func at(loc *ast.Location, what string) string {
	if loc != nil {
		return fmt.Sprintf("%s:%d: %s", loc.File, loc.Row, what)
	}
	return what
}

// runTests runs every test_ rule of modules, reporting like `opa test`.
// failed lists "file:line: package.rule: FAIL|ERROR" for each failing test.
func runTests(ctx context.Context, modules map[string]*ast.Module, w io.Writer, verbose bool) (passed int, failed []string, err error) {
	ch, err := tester.NewRunner().
		SetDefaultRegoVersion(ast.RegoV1).
		SetModules(modules).
		CapturePrintOutput(true).
		EnableTracing(verbose).
		RunTests(ctx, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("compile policy tests: %w", err)
	}
	// The reporter consumes its own channel; count on the way through.
	fwd := make(chan *tester.Result)
	done := make(chan error, 1)
	go func() {
		done <- tester.PrettyReporter{Output: w, Verbose: verbose, FailureLine: true}.Report(fwd)
	}()
	for r := range ch {
		switch {
		case r.Skip:
		case r.Pass():
			passed++
		default:
			outcome := "FAIL"
			if r.Error != nil {
				outcome = "ERROR: " + r.Error.Error()
			}
			loc := "?"
			if r.Location != nil {
				loc = fmt.Sprintf("%s:%d", r.Location.File, r.Location.Row)
			}
			failed = append(failed, fmt.Sprintf("%s: %s.%s: %s", loc, r.Package, r.Name, outcome))
		}
		fwd <- r
	}
	close(fwd)
	if err := <-done; err != nil {
		return passed, failed, fmt.Errorf("report policy tests: %w", err)
	}
	return passed, failed, nil
}

// RunTests runs the test_ rules of the policy in dir ("" = the embedded
// default) like `opa test`, writing the report to w. err is set when the
// policy cannot be read or compiled; failing tests only count in failed.
func RunTests(ctx context.Context, dir string, w io.Writer, verbose bool) (passed, failed int, err error) {
	files, err := readSources(dir)
	if err != nil {
		return 0, 0, err
	}
	all, _, err := parseSources(files)
	if err != nil {
		return 0, 0, err
	}
	if w == nil {
		w = io.Discard
	}
	p, f, err := runTests(ctx, all, w, verbose)
	return p, len(f), err
}
