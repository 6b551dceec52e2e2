// Package console is gdprgate's admin console: a web page served by the admin
// listener under /ui/, written as plain HTML, CSS and JavaScript modules
// embedded in the binary (no Node toolchain, no CDN, no request to any other
// origin).
//
// The console is a client of the admin API and nothing more: the operator
// signs in with an admin token, kept in the tab's sessionStorage and sent as
// a bearer token; every page is a view of /v1/ answers and every action is a
// /v1/ call with that token's scopes. Serving it adds no privileged endpoint.
//
// The pages render data as text only (textContent, never markup): subject ids,
// register names and audit details are strings an attacker may have chosen.
// The Content-Security-Policy backs that up in the browser: scripts and
// styles only from this origin, no inline script, Trusted Types required for
// every HTML sink (so an innerHTML assignment throws), no framing.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Prefix is where the admin listener serves the console.
const Prefix = "/ui/"

// CSP is the Content-Security-Policy of every console answer. connect-src
// 'self' keeps the token on the admin listener; require-trusted-types-for
// makes the browser refuse string assignments to HTML sinks (innerHTML,
// outerHTML, insertAdjacentHTML, document.write), and no policy is allowed
// to create trusted values.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"manifest-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'; " +
	"require-trusted-types-for 'script'; trusted-types 'none'"

// Files are the console's embedded files (rooted at the static directory).
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic("console: embedded files: " + err.Error()) // the directory is compiled in
	}
	return sub
}

// Handler serves the console under Prefix: GET and HEAD of its files, the
// page itself for Prefix, 404 for anything else (no directory listing).
func Handler() http.Handler {
	files := Files()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setHeaders(w.Header())
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name, ok := strings.CutPrefix(r.URL.Path, Prefix)
		if !ok {
			http.NotFound(w, r)
			return
		}
		if name == "" {
			name = "index.html"
		}
		// Files only, under their one clean name: no directory listing, no
		// second spelling of a path.
		clean := path.Clean(name)
		if clean != name || strings.HasPrefix(clean, ".") {
			http.NotFound(w, r)
			return
		}
		st, err := fs.Stat(files, clean)
		if err != nil || st.IsDir() {
			http.NotFound(w, r)
			return
		}
		data, err := fs.ReadFile(files, clean)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		// The embedded files have no modification time: the ETag (their
		// hash) lets a browser revalidate instead of downloading again.
		sum := sha256.Sum256(data)
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:12])+`"`)
		http.ServeContent(w, r, clean, time.Time{}, bytes.NewReader(data))
	})
}

func setHeaders(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
	h.Set("Cache-Control", "no-cache")
}
