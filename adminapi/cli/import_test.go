package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/adminapi"
	"github.com/gdprgate/gdprgate/cache/memstore"
	"github.com/gdprgate/gdprgate/policy/model"
)

func rec(i int) string {
	return fmt.Sprintf(`{"subject":{"entity":"contact","id":"imp-%d"},"legal_key":"CC","origin":"2026-01-01T00:00:00Z"}`, i)
}

// importServer is an admin API loaded with the test registers whose import
// requests are recorded (first line of each body) and can be made to fail.
type importServer struct {
	url   string
	store *memstore.Store
	mu    sync.Mutex
	posts []string // first line of each import body
	fail  func(n int) bool
}

func newImportServer(t *testing.T, tweak func(*adminapi.Options)) *importServer {
	t.Helper()
	is := &importServer{}
	is.url, is.store = newServerWith(t, tweak, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == "POST" && r.URL.Path == "/v1/evidence:import" {
				b, _ := io.ReadAll(r.Body)
				first, _, _ := strings.Cut(string(b), "\n")
				is.mu.Lock()
				is.posts = append(is.posts, first)
				n, fail := len(is.posts), is.fail
				is.mu.Unlock()
				if fail != nil && fail(n) {
					http.Error(w, `{"error":"store_unavailable"}`, http.StatusServiceUnavailable)
					return
				}
				r.Body = io.NopCloser(bytes.NewReader(b))
			}
			next.ServeHTTP(w, r)
		})
	})
	seed, err := model.LoadSeedFile("../testdata/seed.yaml", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := is.store.Seed(context.Background(), seed); err != nil {
		t.Fatal(err)
	}
	return is
}

func (is *importServer) evidence(t *testing.T, n int) (total int) {
	t.Helper()
	for i := 0; i < n; i++ {
		r, err := is.store.Subject(context.Background(), model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("imp-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Evidence) > 1 {
			t.Errorf("imp-%d has %d evidence records: duplicated", i, len(r.Evidence))
		}
		total += len(r.Evidence)
	}
	return total
}

func writeFile(t *testing.T, name string, lines []string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestImportReportsBadLinesByNumberGoesOnAndNeverDuplicates(t *testing.T) {
	is := newImportServer(t, func(o *adminapi.Options) { o.MaxImport = 4 })
	var lines []string
	for i := 0; i < 30; i++ {
		lines = append(lines, rec(i))
	}
	lines[4] = ""          // line 5: blank, skipped
	lines[6] = `{not json` // line 7, column 2
	lines[11] = `{"subject":{"entity":"contact","id":"imp-11"},"legal_key":"MK","origin":"2026-01-01T00:00:00Z"}`
	lines[19] = `42` // line 20
	path := writeFile(t, "ev.ndjson", lines)
	for round := 1; round <= 2; round++ {
		out, err := runCLI(t, is.url, "import-evidence", "--progress", "off", path)
		if err == nil || !strings.Contains(err.Error(), "3 record(s) refused") {
			t.Fatalf("round %d: %v\n%s", round, err, out)
		}
		for _, want := range []string{"line 7: not JSON: invalid character 'n' looking for beginning of object key string (column 2)", "line 12: evidence_key: is obligatory", "line 20: a record must be a JSON object",
			"import: 29 records, 26 stored, 3 refused"} {
			if !strings.Contains(out, want) {
				t.Errorf("round %d: output lacks %q:\n%s", round, want, out)
			}
		}
		if got := is.evidence(t, 30); got != 26 {
			t.Fatalf("round %d: %d records stored, want 26", round, got)
		}
	}
	if len(is.posts) < 2*7 {
		t.Errorf("%d import requests for 2×26 records at 4 a request", len(is.posts))
	}
	if _, err := os.Stat(path + ".import-state"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a finished import leaves its state file: %v", err)
	}
}

func TestImportShowsTheFirstErrorsAndCountsThemAll(t *testing.T) {
	is := newImportServer(t, nil)
	var lines []string
	for i := 0; i < 30; i++ {
		lines = append(lines, `{not json`)
	}
	path := writeFile(t, "bad.ndjson", lines)
	out, err := runCLI(t, is.url, "import-evidence", "--progress", "off", "--show-errors", "5", path)
	if err == nil || strings.Count(out, "not JSON") != 5 || !strings.Contains(out, "25 more record errors not shown") ||
		!strings.Contains(out, "import: 30 records, 0 stored, 30 refused") {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestImportSplitsByTheServersByteLimit(t *testing.T) {
	is := newImportServer(t, func(o *adminapi.Options) { o.MaxImportBytes = 700 })
	var lines []string
	for i := 0; i < 20; i++ {
		lines = append(lines, rec(i))
	}
	lines[9] = `{"subject":{"entity":"contact","id":"imp-9"},"legal_key":"CC","reference":"` + strings.Repeat("x", 800) + `","origin":"2026-01-01T00:00:00Z"}`
	path := writeFile(t, "ev.ndjson", lines)
	out, err := runCLI(t, is.url, "import-evidence", "--progress", "off", path)
	if err == nil || !strings.Contains(out, "line 10: the record is") || !strings.Contains(out, "19 stored") {
		t.Fatalf("%v\n%s", err, out)
	}
	if got := is.evidence(t, 20); got != 19 {
		t.Fatalf("%d stored, want 19", got)
	}
	if len(is.posts) < 3 {
		t.Fatalf("19 records of ~100 bytes under a 700-byte limit went in %d requests", len(is.posts))
	}
}

func TestResumeContinuesAfterTheLastAcknowledgedChunk(t *testing.T) {
	for _, format := range []string{"ndjson", "array"} {
		t.Run(format, func(t *testing.T) {
			is := newImportServer(t, nil)
			var lines []string
			for i := 0; i < 23; i++ {
				lines = append(lines, rec(i))
			}
			if format == "array" {
				// Pretty-printed, so that lines and records do not coincide.
				var b strings.Builder
				b.WriteString("[\n")
				for i, l := range lines {
					b.WriteString("  " + strings.Replace(l, `,"legal_key"`, ",\n    \"legal_key\"", 1))
					if i < len(lines)-1 {
						b.WriteString(",")
					}
					b.WriteString("\n")
				}
				b.WriteString("]")
				lines = []string{b.String()}
			}
			path := writeFile(t, "ev."+format, lines)
			is.fail = func(n int) bool { return n == 3 }
			out, err := runCLI(t, is.url, "import-evidence", "--chunk", "5", "--progress", "off", path)
			if err == nil || !strings.Contains(err.Error(), "--resume") {
				t.Fatalf("interrupted import: %v\n%s", err, out)
			}
			if got := is.evidence(t, 23); got != 10 {
				t.Fatalf("%d stored before the failure, want 10", got)
			}
			if _, err := os.Stat(path + ".import-state"); err != nil {
				t.Fatalf("no state recorded: %v", err)
			}
			is.fail = nil
			before := len(is.posts)
			out, err = runCLI(t, is.url, "import-evidence", "--chunk", "5", "--progress", "off", "--resume", path)
			if err != nil || !strings.Contains(out, "import: 23 records, 23 stored, 0 refused") {
				t.Fatalf("resume: %v\n%s", err, out)
			}
			resumed := is.posts[before:]
			if len(resumed) != 3 || !strings.Contains(resumed[0], `"imp-10"`) {
				t.Fatalf("resume sent %d chunks starting with %s; want 3 starting at imp-10", len(resumed), resumed[0])
			}
			if got := is.evidence(t, 23); got != 23 {
				t.Fatalf("%d stored after resume, want 23", got)
			}
			if _, err := runCLI(t, is.url, "import-evidence", "--resume", path); !errors.Is(err, ErrUsage) {
				t.Fatalf("resume with nothing to resume: %v", err)
			}
		})
	}
}

func TestResumeRefusesAFileThatChanged(t *testing.T) {
	is := newImportServer(t, nil)
	var lines []string
	for i := 0; i < 10; i++ {
		lines = append(lines, rec(i))
	}
	path := writeFile(t, "ev.ndjson", lines)
	is.fail = func(n int) bool { return n == 2 }
	if _, err := runCLI(t, is.url, "import-evidence", "--chunk", "3", "--progress", "off", path); err == nil {
		t.Fatal("no interruption")
	}
	lines[0] = rec(99)
	writeFileAt(t, path, lines)
	is.fail = nil
	out, err := runCLI(t, is.url, "import-evidence", "--chunk", "3", "--progress", "off", "--resume", path)
	if err == nil || !strings.Contains(err.Error(), "has changed") {
		t.Fatalf("%v\n%s", err, out)
	}
}

func writeFileAt(t *testing.T, path string, lines []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestArrayRecordsAreReportedByTheirLine(t *testing.T) {
	is := newImportServer(t, nil)
	body := "[\n" + rec(0) + ",\n" +
		"{\n  \"subject\": {\"entity\": \"contact\", \"id\": \"imp-1\"},\n  \"legal_key\": \"MK\",\n  \"origin\": \"2026-01-01T00:00:00Z\"\n},\n" +
		rec(2) + "\n]\n"
	path := writeFile(t, "ev.json", []string{body})
	out, err := runCLI(t, is.url, "import-evidence", "--progress", "off", path)
	if err == nil || !strings.Contains(out, "line 3: evidence_key") || !strings.Contains(out, "2 stored, 1 refused") {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestProgressIsABarOnATerminalAndLinesOtherwise(t *testing.T) {
	is := newImportServer(t, nil)
	var lines []string
	for i := 0; i < 12; i++ {
		lines = append(lines, rec(i))
	}
	path := writeFile(t, "ev.ndjson", lines)
	for _, c := range []struct {
		mode string
		want []string
	}{
		{"lines", []string{"import: 4 records", "records/s", "0 errors so far"}},
		{"bar", []string{"\r[", "100%", "12 records", "/s 0 errors"}},
		{"auto", []string{"records/s"}}, // a buffer is not a terminal
	} {
		var out, errb bytes.Buffer
		err := Run(context.Background(), []string{"--admin-url", is.url, "--token", "secret", "import-evidence",
			"--chunk", "4", "--progress", c.mode, "--progress-interval", "0s", path}, &out, &errb)
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.mode, err, errb.String())
		}
		for _, w := range c.want {
			if !strings.Contains(errb.String(), w) {
				t.Errorf("%s: progress lacks %q:\n%q", c.mode, w, errb.String())
			}
		}
	}
}
