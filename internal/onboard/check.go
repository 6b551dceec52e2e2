package onboard

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/gdprgate/gdprgate/internal/config"
	"github.com/gdprgate/gdprgate/redact"
)

// Check tells, for a route map and a sample answer of the backend, which
// mapped paths select a value in it (`gdprgate routes check`). It reads the
// paths exactly as gdprgate's rewriter does — gjson syntax, keys unescaped
// and case-insensitive unless the route says exact_case — so a path the
// check reports as selecting nothing redacts nothing in such an answer: a
// typo ("profile.emial"), a renamed field, a list where the route expects a
// record.

// CheckResult is one route against the sample.
type CheckResult struct {
	Route string
	Line  int
	Paths []PathResult
	// Problem is why the sample cannot be this route's answer at all (its
	// top level, a subject named twice); "" when none.
	Problem string
}

// PathResult is one mapped path.
type PathResult struct {
	Path string
	// Subject: the path is where the route reads its subject, not a field.
	Subject bool
	Found   bool
}

// found counts the paths that select a value.
func (r *CheckResult) found() int {
	n := 0
	for _, p := range r.Paths {
		if p.Found {
			n++
		}
	}
	return n
}

// OK reports whether every path selects a value and nothing is wrong.
func (r *CheckResult) OK() bool { return r.Problem == "" && r.found() == len(r.Paths) }

// CheckReport is the outcome of Check.
type CheckReport struct {
	Results []CheckResult
	// Named: one route was asked for; otherwise every route with response
	// paths was tried, and only those the sample partly matches count.
	Named bool
}

// ErrNoRoute is returned by Check for a route name the map does not have.
var ErrNoRoute = errors.New("no such route")

// Check reads sample (one JSON answer) against the routes of cfg that map
// response paths — fields, or a subject read from the answer — or only the
// route named route.
func Check(cfg *config.Config, sample []byte, route string) (*CheckReport, error) {
	if !redact.Valid(sample) {
		return nil, errors.New("the sample is not valid JSON (strict RFC 8259, UTF-8)")
	}
	rep := &CheckReport{Named: route != ""}
	var names []string
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		names = append(names, rc.Name)
		if route != "" && rc.Name != route {
			continue
		}
		res, ok, err := checkRoute(rc, sample)
		if err != nil {
			return nil, fmt.Errorf("route %q (line %d): %w", rc.Name, rc.Line, err)
		}
		if ok || route != "" {
			rep.Results = append(rep.Results, res)
		}
	}
	if route != "" && len(rep.Results) == 0 {
		return nil, fmt.Errorf("%w %q (the route map has: %s)", ErrNoRoute, route, strings.Join(names, ", "))
	}
	return rep, nil
}

// checkRoute checks one route; ok is false for a route with no response
// paths.
func checkRoute(rc *config.Route, sample []byte) (CheckResult, bool, error) {
	res := CheckResult{Route: rc.Name, Line: rc.Line}
	spec := redact.Spec{ExactCase: rc.ExactCase}
	for _, p := range sortedKeys(rc.Fields) {
		spec.Fields = append(spec.Fields, redact.FieldSpec{Path: p})
	}
	var subject string
	if s := rc.Subject; s != nil && (s.From == config.FromItem || s.From == config.FromResponseBody) {
		subject = s.Path
		spec.SubjectPath = s.Path
	} else if s != nil && s.Confirm != "" {
		// Where the answer states whom it is about (subject.confirm).
		subject = s.Confirm
		spec.SubjectPath = s.Confirm
	}
	if len(spec.Fields) == 0 && subject == "" {
		return res, false, nil
	}
	m, err := redact.Compile(spec)
	if err != nil {
		return res, false, err
	}
	obj, arr := m.Root()
	switch root := firstByte(sample); {
	case root == '{' && !obj:
		res.Problem = "the sample is a JSON object; this route's paths start with # or an index (a list)"
	case root == '[' && !arr:
		res.Problem = "the sample is a JSON array; this route's paths start with a key (an object)"
	}
	found, err := m.Select(sample)
	switch {
	case errors.Is(err, redact.ErrDuplicateSubject):
		res.Problem = "the sample names its subject (" + subject + ") more than once"
	case err != nil:
		return res, false, err
	}
	if subject != "" {
		// The subject path, read as a field of its own.
		sm, err := redact.Compile(redact.Spec{ExactCase: rc.ExactCase, Fields: []redact.FieldSpec{{Path: subject}}})
		if err != nil {
			return res, false, err
		}
		sel, _ := sm.Select(sample)
		res.Paths = append(res.Paths, PathResult{Path: subject, Subject: true, Found: len(sel) > 0})
	}
	for _, f := range spec.Fields {
		res.Paths = append(res.Paths, PathResult{Path: f.Path, Found: contains(found, f.Path)})
	}
	return res, true, nil
}

// Failed lists what is wrong: with a named route, any path that selects
// nothing; otherwise the routes the sample partly matches, or, when it
// matches no route at all, that.
func (r *CheckReport) Failed() []string {
	var out []string
	matched := false
	for i := range r.Results {
		res := &r.Results[i]
		n := res.found()
		if n > 0 && res.Problem == "" {
			matched = true
		}
		if r.Named || n > 0 {
			if res.Problem != "" {
				out = append(out, fmt.Sprintf("route %s: %s", res.Route, res.Problem))
			}
			if missing := len(res.Paths) - n; missing > 0 {
				out = append(out, fmt.Sprintf("route %s: %d mapped path(s) select nothing in the sample", res.Route, missing))
			}
		}
	}
	if !r.Named && !matched {
		out = append(out, "no route's paths select anything in the sample: is it an answer of this backend?")
	}
	return out
}

// Write prints the report: per route, each mapped path and whether it
// selects a value in the sample.
func (r *CheckReport) Write(w io.Writer) error {
	var b strings.Builder
	for i := range r.Results {
		res := &r.Results[i]
		n := res.found()
		note := ""
		if !r.Named && n == 0 {
			note = " — not this route's answer"
		}
		fmt.Fprintf(&b, "route %s (line %d): %d of %d paths select a value%s\n", res.Route, res.Line, n, len(res.Paths), note)
		if res.Problem != "" {
			fmt.Fprintf(&b, "  PROBLEM  %s\n", res.Problem)
		}
		if !r.Named && n == 0 && res.Problem == "" {
			continue
		}
		for _, p := range res.Paths {
			mark := "ok     "
			if !p.Found {
				mark = "MISSING"
			}
			what := p.Path
			if p.Subject {
				what = "subject " + p.Path
			}
			fmt.Fprintf(&b, "  %s  %s\n", mark, what)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// firstByte is the first byte of a JSON document after white space.
func firstByte(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c
	}
	return 0
}
