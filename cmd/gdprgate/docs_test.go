package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoPath matches a path into this repository written in documentation:
// it starts with one of the repository's top-level directories.
var repoPath = regexp.MustCompile("(?:^|[\\s`(\"'])((?:examples|rego|internal|cmd|policy|cache|adminapi|authz|redact|e2e|deploy)/[A-Za-z0-9_./-]*)")

// TestDocumentationPointsOnlyAtFilesInTheRepository keeps the project
// standing alone: the README, the example and deployment files and the Go
// comments name only files that exist here, and nothing outside it.
func TestDocumentationPointsOnlyAtFilesInTheRepository(t *testing.T) {
	root := "../.."
	var docs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" || d.Name() == "bin" || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(p) {
		case ".md", ".yaml", ".yml", ".go", ".rego", ".txt", ".tpl":
			docs = append(docs, p)
		}
		if d.Name() == "Makefile" || d.Name() == "Dockerfile" {
			docs = append(docs, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range docs {
		if strings.HasSuffix(p, "docs_test.go") {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		rel, _ := filepath.Rel(root, p)
		for i, line := range strings.Split(text, "\n") {
			if strings.Contains(line, "shared/") || strings.Contains(line, "SCENARIO.md") {
				t.Errorf("%s:%d points outside the repository: %s", rel, i+1, strings.TrimSpace(line))
			}
			if filepath.Ext(p) == ".go" && !strings.Contains(line, "//") {
				continue // only comments of Go files are documentation
			}
			if strings.Contains(line, "apiVersion:") {
				continue // a Kubernetes API group ("policy/v1"), not a path
			}
			for _, m := range repoPath.FindAllStringSubmatch(line, -1) {
				ref := strings.TrimRight(m[1], ".,:;/")
				if strings.ContainsAny(ref, "<>*{}") || strings.Contains(ref, "...") {
					continue
				}
				_, err := os.Stat(filepath.Join(root, ref))
				if err != nil { // or relative to the file ("cmd/crm" in examples/crm)
					_, err = os.Stat(filepath.Join(filepath.Dir(p), ref))
				}
				if err != nil {
					t.Errorf("%s:%d names %s, which does not exist", rel, i+1, ref)
				}
			}
		}
	}
}
