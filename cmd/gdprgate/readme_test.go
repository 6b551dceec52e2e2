package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/internal/testlog"
)

var urlLine = regexp.MustCompile(`(?m)^\s+(gateway|admin API)[^:]*:\s+(http://\S+)`)

// TestREADMEWalkthrough runs the README's curl walk-through against the demo
// and checks every "#=>" expectation, so the README cannot drift from what
// gdprgate does.
func TestREADMEWalkthrough(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed to run the README walk-through")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	block := between(string(readme), "<!-- walkthrough:start -->", "<!-- walkthrough:end -->")
	if block == "" {
		t.Fatal("README has no walk-through block")
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := &testlog.Buffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--listen", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--log-level", "error"}, out, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	var gw, admin string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && (gw == "" || admin == "") {
		for _, m := range urlLine.FindAllStringSubmatch(out.String(), -1) {
			if m[1] == "gateway" {
				gw = m[2]
			} else {
				admin = m[2]
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if gw == "" || admin == "" {
		t.Fatalf("demo did not print its URLs:\n%s", out.String())
	}
	replacer := strings.NewReplacer("http://127.0.0.1:8080", gw, "http://127.0.0.1:9192", admin)

	// The demo prints the held lifecycle wipe of Eve with its own id: a
	// preview (run now: it decides nothing), an approval with "confirm" and
	// the record's state (run after the README approved it).
	var preview, approve, show string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && show == ""; time.Sleep(20 * time.Millisecond) {
		for _, l := range strings.Split(out.String(), "\n") {
			l = strings.TrimSpace(l)
			switch {
			case !strings.HasPrefix(l, "curl ") || !strings.Contains(l, "/v1/deletions/lc-"):
			case strings.Contains(l, "?dry_run=true"):
				preview = l
			case strings.Contains(l, "/approve"):
				approve = l
			default:
				show = l
			}
		}
	}
	if preview == "" || show == "" || !strings.Contains(approve, `"confirm":true`) {
		t.Fatalf("the demo does not print the held wipe's preview, approval (with confirm) and record:\n%s", out.String())
	}
	sh := func(cmd string) string {
		b, err := exec.Command("sh", "-c", cmd).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, b)
		}
		return string(b)
	}
	if got := sh(preview); !strings.Contains(got, `"dry_run": true`) || !strings.Contains(got, `"path": "/api/contacts/c-5"`) || !strings.Contains(got, `"status": "queued"`) {
		t.Fatalf("%s:\n%s", preview, got)
	}

	var cmd, output string
	steps := 0
	sc := bufio.NewScanner(strings.NewReader(block))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "curl "):
			cmd = replacer.Replace(line)
			b, err := exec.Command("sh", "-c", cmd).CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", cmd, err, b)
			}
			output = string(b)
			steps++
		case strings.HasPrefix(line, "#=>"):
			want := strings.TrimSpace(strings.TrimPrefix(line, "#=>"))
			if !strings.Contains(output, want) {
				t.Errorf("%s\n  output does not contain %q:\n%s", cmd, want, output)
			}
		}
	}
	if steps < 8 {
		t.Errorf("walk-through ran only %d curl commands", steps)
	}
	// The README approved every held wipe: the one the demo printed.
	if got := sh(show); !strings.Contains(got, `"decided_by": "demo"`) {
		t.Errorf("%s: the README's approval did not decide the wipe the demo printed:\n%s", show, got)
	}
}

func between(s, start, end string) string {
	i := strings.Index(s, start)
	j := strings.Index(s, end)
	if i < 0 || j < i {
		return ""
	}
	return s[i+len(start) : j]
}
