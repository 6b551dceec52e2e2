package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer collects the demo's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

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
	out := &syncBuffer{}
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
}

func between(s, start, end string) string {
	i := strings.Index(s, start)
	j := strings.Index(s, end)
	if i < 0 || j < i {
		return ""
	}
	return s[i+len(start) : j]
}
