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
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"

	defaultpolicy "github.com/gdprgate/gdprgate/rego"
)

// DecisionQuery is gdprgate's GDPR decision. A policy that does not define
// it while its entry point (policy.path) is elsewhere gets the embedded
// default's.
const DecisionQuery = "data.gdprgate.authz.decision"

// DefaultPath is the entry point when policy.path is not set: the GDPR
// decision itself.
const DefaultPath = "gdprgate/authz/decision"

var (
	decisionRef    = ast.MustParseRef(DecisionQuery)
	decisionPkgRef = ast.MustParseRef("data.gdprgate.authz")
)

// PathRef turns a slash-separated decision path ("envoy/authz/allow", as
// opa-envoy-plugin's path setting) into its data reference. Empty segments
// are skipped and integer segments index arrays, as there; "" is
// DefaultPath.
func PathRef(path string) (ast.Ref, error) {
	if path == "" {
		path = DefaultPath
	}
	ref := ast.Ref{ast.DefaultRootDocument}
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "" {
			continue
		}
		if strings.ContainsAny(seg, " \t\n\"") {
			return nil, fmt.Errorf("policy path %q: segment %q has a space or quote", path, seg)
		}
		if n, err := strconv.Atoi(seg); err == nil {
			ref = append(ref, ast.IntNumberTerm(n))
		} else {
			ref = append(ref, ast.StringTerm(seg))
		}
	}
	if len(ref) < 2 {
		return nil, fmt.Errorf("policy path %q names no rule", path)
	}
	return ref, nil
}

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
	// query is the GDPR decision (DecisionQuery).
	query rego.PreparedEvalQuery
	// memoisable: GDPR decisions depend on Facts only (see analyse).
	memoisable bool
	// why is the first reason the GDPR decision is not memoisable.
	why string
	// layered: the entry point (policy.path) is not the GDPR decision; it
	// is evaluated too and the GDPR decision applies on top of it.
	layered bool
	entry   rego.PreparedEvalQuery
	// entryMemoisable, entryWhy: as memoisable and why, for the entry.
	entryMemoisable bool
	entryWhy        string
	// entryMask: the entry may set visible_mask (the string occurs in the
	// rules it depends on); otherwise it is never evaluated for the
	// response plan alone.
	entryMask   bool
	entryPath   string
	fingerprint [32]byte
	// compiler and sources are the serving policy (published to OPA's
	// plugins); nil for bundles, which OPA's store already holds.
	compiler *ast.Compiler
	sources  map[string]string
	// bundles are the active bundles' revisions (decision logs).
	bundles map[string]string
	// unavailable: no policy yet (bundles not activated); every decision
	// fails, closed.
	unavailable bool
}

// compilePolicy parses, compiles and tests files and prepares the decision
// queries. Test files are compiled with the policy to run its tests but are
// not part of the serving policy: a test file cannot change a decision.
// path is the entry point (policy.path, "" for DefaultPath); when it is not
// the GDPR decision and the files do not define one, the embedded default's
// is compiled alongside. Like `gdprgate policy test`, it needs at least one
// passing test unless allowUntested.
func compilePolicy(ctx context.Context, files []sourceFile, path string, allowUntested bool) (*compiled, error) {
	entryRef, err := PathRef(path)
	if err != nil {
		return nil, err
	}
	all, serving, err := parseSources(files)
	if err != nil {
		return nil, err
	}
	if !entryRef.Equal(decisionRef) && !definesDecision(serving) {
		if err := addDefaultDecision(all, serving); err != nil {
			return nil, err
		}
	}
	c := ast.NewCompiler().WithEnablePrintStatements(false)
	if c.Compile(serving); c.Failed() {
		return nil, fmt.Errorf("compile policy: %w", c.Errors)
	}
	if err := checkEntry(c, entryRef, path); err != nil {
		return nil, err
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
	cp, err := prepare(ctx, c, nil, entryRef)
	if err != nil {
		return nil, err
	}
	cp.fingerprint = fingerprint(files)
	cp.compiler = c
	cp.sources = make(map[string]string, len(serving))
	for _, f := range files {
		if !isTestFile(f.name) {
			cp.sources[f.name] = string(f.src)
		}
	}
	return cp, nil
}

// checkEntry refuses a policy without the configured entry point (and,
// always, without the GDPR decision).
func checkEntry(c *ast.Compiler, entryRef ast.Ref, path string) error {
	if len(c.GetRulesExact(decisionRef)) == 0 {
		return fmt.Errorf("compile policy: no rule %s", DecisionQuery)
	}
	if len(c.GetRules(entryRef)) == 0 {
		return fmt.Errorf("compile policy: no rule %s (policy.path %q)", entryRef, cmpOr(path, DefaultPath))
	}
	return nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// definesDecision reports whether modules define gdprgate.authz.decision.
func definesDecision(modules map[string]*ast.Module) bool {
	for _, m := range modules {
		if !m.Package.Path.Equal(decisionPkgRef) {
			continue
		}
		for _, r := range m.Rules {
			if r.Head.Name.Equal(ast.Var("decision")) || r.Head.Ref().Equal(ast.Ref{ast.VarTerm("decision")}) {
				return true
			}
		}
	}
	return false
}

// addDefaultDecision adds the embedded default policy's serving modules,
// which give the GDPR decision under a policy whose entry point is
// elsewhere (an opa-envoy-plugin policy).
func addDefaultDecision(all, serving map[string]*ast.Module) error {
	files, err := readSources("")
	if err != nil {
		return err
	}
	for _, f := range files {
		if isTestFile(f.name) {
			continue
		}
		m, err := ast.ParseModuleWithOpts(f.name, string(f.src), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return fmt.Errorf("parse default policy: %w", err)
		}
		all[f.name], serving[f.name] = m, m
	}
	return nil
}

// prepare prepares the GDPR decision and the entry point on a compiled
// policy and analyses which of them can be memoised. store holds the data
// documents (bundles); nil is an empty store.
func prepare(ctx context.Context, c *ast.Compiler, store storage.Store, entryRef ast.Ref, txn ...storage.Transaction) (*compiled, error) {
	cp := &compiled{layered: !entryRef.Equal(decisionRef), entryPath: entryRef.String()}
	query := func(ref ast.Ref) (rego.PreparedEvalQuery, error) {
		opts := []func(*rego.Rego){rego.ParsedQuery(ast.NewBody(ast.NewExpr(ast.NewTerm(ref)))), rego.Compiler(c)}
		if store == nil {
			store = inmem.New()
		}
		opts = append(opts, rego.Store(store))
		if len(txn) > 0 {
			// Inside the activation's write transaction: preparing must
			// not open another.
			opts = append(opts, rego.Transaction(txn[0]))
		}
		pq, err := rego.New(opts...).PrepareForEval(ctx)
		if err != nil {
			return pq, fmt.Errorf("prepare policy query %s: %w", ref, err)
		}
		return pq, nil
	}
	var err error
	if cp.query, err = query(decisionRef); err != nil {
		return nil, err
	}
	cp.memoisable, cp.why = analyse(c, decisionRef)
	if cp.layered {
		if cp.entry, err = query(entryRef); err != nil {
			return nil, err
		}
		cp.entryMemoisable, cp.entryWhy = analyse(c, entryRef)
		cp.entryMask = mentions(c, entryRef, "visible_mask")
	}
	return cp, nil
}

// requestInputs are the parts of the input that are not derived from Facts.
// A policy reading any of them cannot be memoised per Facts.
var requestInputs = map[string]bool{
	"attributes":       true,
	"parsed_path":      true,
	"parsed_query":     true,
	"parsed_body":      true,
	"truncated_body":   true,
	"version":          true,
	"source_principal": true,
	"now":              true,
}

// timeDependent builtins are deterministic for OPA (same value within one
// query) but differ between requests, so they defeat memoisation too.
var timeDependent = map[string]bool{
	"time.now_ns": true,
}

// dependencies are the rules the document at ref depends on, transitively,
// in a stable order. all is true when a reference into data cannot be
// followed statically (data[x]): then every module may matter.
func dependencies(c *ast.Compiler, ref ast.Ref) (rules []*ast.Rule, all bool) {
	seen := map[*ast.Rule]bool{}
	queue := c.GetRules(ref)
	for len(queue) > 0 {
		r := queue[0]
		queue = queue[1:]
		if seen[r] {
			continue
		}
		seen[r] = true
		rules = append(rules, r)
		ast.WalkRefs(r, func(x ast.Ref) bool {
			if !x.HasPrefix(ast.DefaultRootRef) {
				return false
			}
			if len(x) < 2 || !x[1].IsGround() {
				all = true
				return false
			}
			queue = append(queue, c.GetRules(x)...)
			return false
		})
	}
	sort.SliceStable(rules, func(i, j int) bool {
		a, b := rules[i].Location, rules[j].Location
		if a == nil || b == nil {
			return a != nil
		}
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Row < b.Row
	})
	return rules, all
}

// mentions reports whether the rules behind ref contain the string s.
func mentions(c *ast.Compiler, ref ast.Ref, s string) bool {
	rules, all := dependencies(c, ref)
	if all {
		return true
	}
	found := false
	for _, r := range rules {
		ast.WalkTerms(r, func(t *ast.Term) bool {
			if str, ok := t.Value.(ast.String); ok && string(str) == s {
				found = true
			}
			return found
		})
	}
	return found
}

// analyse reports whether the document at ref is a function of Facts
// alone: it walks the rules it depends on in the compiled
// (import-resolved) modules for refs into request-specific input,
// whole-input reads and builtins whose result changes between calls.
func analyse(c *ast.Compiler, ref ast.Ref) (memoisable bool, why string) {
	rules, all := dependencies(c, ref)
	var nodes []any
	if all {
		names := make([]string, 0, len(c.Modules))
		for name := range c.Modules {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			nodes = append(nodes, c.Modules[name])
		}
	} else {
		for _, r := range rules {
			nodes = append(nodes, r)
		}
	}
	for _, node := range nodes {
		ast.WalkTerms(node, func(t *ast.Term) bool {
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
		ast.WalkExprs(node, func(e *ast.Expr) bool {
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
	return runTestsIn(ctx, modules, nil, nil, w, verbose)
}

// runTestsIn runs the tests against the data of store as txn sees it (a
// bundle's data during its activation); nil store is no data.
func runTestsIn(ctx context.Context, modules map[string]*ast.Module, store storage.Store, txn storage.Transaction, w io.Writer, verbose bool) (passed int, failed []string, err error) {
	r := tester.NewRunner().
		SetDefaultRegoVersion(ast.RegoV1).
		SetModules(modules).
		CapturePrintOutput(true).
		EnableTracing(verbose)
	if store != nil {
		r = r.SetStore(store)
	}
	ch, err := r.RunTests(ctx, txn)
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
// policy cannot be read or compiled, or has no rule at its entry point path
// (policy.path, "" = DefaultPath), which would refuse it at start; failing
// tests only count in failed.
func RunTests(ctx context.Context, dir, path string, w io.Writer, verbose bool) (passed, failed int, err error) {
	entryRef, err := PathRef(path)
	if err != nil {
		return 0, 0, err
	}
	files, err := readSources(dir)
	if err != nil {
		return 0, 0, err
	}
	all, serving, err := parseSources(files)
	if err != nil {
		return 0, 0, err
	}
	if !entryRef.Equal(decisionRef) && !definesDecision(serving) {
		if err := addDefaultDecision(all, serving); err != nil {
			return 0, 0, err
		}
	}
	c := ast.NewCompiler().WithEnablePrintStatements(false)
	if c.Compile(serving); c.Failed() {
		return 0, 0, fmt.Errorf("compile policy: %w", c.Errors)
	}
	if err := checkEntry(c, entryRef, path); err != nil {
		return 0, 0, err
	}
	if w == nil {
		w = io.Discard
	}
	p, f, err := runTests(ctx, all, w, verbose)
	return p, len(f), err
}
