package console

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// The console's files are read as they are embedded: no request to another
// origin can be written into them, no inline script or style (the CSP
// forbids both, and a page that needed them would silently break), and no
// JavaScript that turns a string into markup or code.
func TestEmbeddedFilesStayOnThisOriginAndNeverParseStringsAsMarkup(t *testing.T) {
	files := Files()
	forbiddenJS := regexp.MustCompile(`\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setTimeout\(\s*['"]|setInterval\(\s*['"]|\.createContextualFragment|DOMParser`)
	externalURL := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	inlineHTML := regexp.MustCompile(`(?is)<script(?:(?:[^>]*[^>]*)?)>\s*[^<\s]|<style|\sstyle=|\son[a-z]+=|javascript:`)
	n := 0
	err := fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, err := fs.ReadFile(files, path)
		if err != nil {
			return err
		}
		src := string(b)
		// The SVG namespace is a name, not a request.
		src = strings.ReplaceAll(src, "http://www.w3.org/2000/svg", "")
		if m := externalURL.FindString(src); m != "" {
			t.Errorf("%s names another origin: %q", path, m)
		}
		switch {
		case strings.HasSuffix(path, ".js"):
			if m := forbiddenJS.FindString(src); m != "" {
				t.Errorf("%s uses %q: build nodes and set textContent instead", path, m)
			}
		case strings.HasSuffix(path, ".html"):
			if m := inlineHTML.FindString(src); m != "" {
				t.Errorf("%s has inline script or style: %q", path, m)
			}
			for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(src, -1) {
				if !strings.Contains(tag, ` src="`) || !strings.Contains(tag, `type="module"`) {
					t.Errorf("%s: script tag %q must be a module from this origin", path, tag)
				}
			}
		case strings.HasSuffix(path, ".css"):
			if strings.Contains(src, "@import") || strings.Contains(src, "url(") {
				t.Errorf("%s loads something (@import or url())", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("only %d embedded files", n)
	}
}

// Every file the page names is embedded, and served with a type the
// browser's strict checks accept (module scripts need a JavaScript type).
func TestServedFilesHaveTheirTypes(t *testing.T) {
	h := Handler()
	for path, want := range map[string]string{
		"/ui/":             "text/html",
		"/ui/console.css":  "text/css",
		"/ui/js/app.js":    "text/javascript",
		"/ui/js/dom.js":    "text/javascript",
		"/ui/index.html":   "text/html",
		"/ui/js/../app.js": "",
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if want == "" {
			if rec.Code != http.StatusNotFound {
				t.Errorf("%s: %d, want 404 (one spelling per file)", path, rec.Code)
			}
			continue
		}
		if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), want) {
			t.Errorf("%s: %d %q, want %s", path, rec.Code, rec.Header().Get("Content-Type"), want)
		}
		if rec.Header().Get("ETag") == "" || rec.Header().Get("Content-Security-Policy") != CSP {
			t.Errorf("%s: headers %v", path, rec.Header())
		}
		// Revalidation answers 304 without the bytes.
		again := httptest.NewRecorder()
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("If-None-Match", rec.Header().Get("ETag"))
		h.ServeHTTP(again, req)
		if again.Code != http.StatusNotModified {
			t.Errorf("%s revalidated: %d", path, again.Code)
		}
	}
	idx, _ := fs.ReadFile(Files(), "index.html")
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"#:]+)"`).FindAllStringSubmatch(string(idx), -1) {
		if _, err := fs.Stat(Files(), m[1]); err != nil {
			t.Errorf("index.html names %s, which is not embedded", m[1])
		}
	}
}
