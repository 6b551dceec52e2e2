package binpages

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// childEnv makes the test binary run TestReleaseInAChild's child part.
const childEnv = "BINPAGES_TEST_CHILD"

// TestReleaseInAChild is the child of TestReleaseWhereverTheExecutableIs:
// it waits for a line on stdin (the parent changes the executable's file
// meanwhile), releases, checks that code and static data still read as
// before, and prints what Release said.
func TestReleaseInAChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("run by TestReleaseWhereverTheExecutableIs")
	}
	sum := sha256.Sum256(letters())
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Printf("RESULT stdin: %v\n", err)
		return
	}
	n, err := Release(true)
	if got := sha256.Sum256(letters()); got != sum {
		fmt.Println("RESULT static data changed")
		return
	}
	if v, err := strconv.Atoi("12345"); err != nil || v != 12345 {
		fmt.Println("RESULT code changed")
		return
	}
	switch {
	case errors.Is(err, ErrUnsupported):
		fmt.Printf("RESULT unsupported %d\n", n)
	case err != nil:
		fmt.Printf("RESULT error %d %v\n", n, err)
	default:
		fmt.Printf("RESULT ok %d\n", n)
	}
}

// TestReleaseWhereverTheExecutableIs runs Release in copies of the test
// binary that live in memory (tmpfs), under a path with a space, deleted
// or replaced by another file after the start (a package upgrade while
// running), and in two processes of one file at once: none may change
// what the process reads, and none may fail but by a clear error (a
// replaced or deleted file: nothing to release, quietly).
func TestReleaseWhereverTheExecutableIs(t *testing.T) {
	if testing.Short() {
		t.Skip("copies and runs the test binary")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	dirs := map[string]string{"disk": t.TempDir()}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "binpages"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			dirs["tmpfs"] = d
		}
	}
	for where, dir := range dirs {
		for _, tc := range []struct {
			name   string
			file   string
			change func(path string) error
			twice  bool
		}{
			{name: "as is", file: "bin"},
			{name: "path with a space", file: "a bin"},
			{name: "deleted", file: "bin", change: os.Remove},
			{name: "replaced", file: "bin", change: func(p string) error {
				if err := os.WriteFile(p+".new", bytes.Repeat([]byte{0xcc}, len(bin)), 0o755); err != nil {
					return err
				}
				return os.Rename(p+".new", p)
			}},
			{name: "two processes", file: "bin", twice: true},
		} {
			t.Run(where+"/"+tc.name, func(t *testing.T) {
				sub := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
				if err := os.MkdirAll(sub, 0o755); err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(sub, tc.file)
				if err := os.WriteFile(path, bin, 0o755); err != nil {
					t.Fatal(err)
				}
				n := 1
				if tc.twice {
					n = 2
				}
				type child struct {
					cmd *exec.Cmd
					in  io.WriteCloser
					out bytes.Buffer
				}
				var cs []*child
				for range n {
					c := &child{cmd: exec.Command(path, "-test.run=^TestReleaseInAChild$", "-test.v")}
					c.cmd.Env = append(os.Environ(), childEnv+"=1")
					c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
					if c.in, err = c.cmd.StdinPipe(); err != nil {
						t.Fatal(err)
					}
					if err := c.cmd.Start(); err != nil {
						t.Fatal(err)
					}
					cs = append(cs, c)
				}
				// Started (exec done): the file may change now.
				time.Sleep(50 * time.Millisecond)
				if tc.change != nil {
					if err := tc.change(path); err != nil {
						t.Fatal(err)
					}
				}
				for _, c := range cs {
					io.WriteString(c.in, "go\n")
					c.in.Close()
				}
				for _, c := range cs {
					err := c.cmd.Wait()
					out := c.out.String()
					i := strings.Index(out, "RESULT ")
					if err != nil || i < 0 {
						t.Fatalf("child: %v\n%s", err, out)
					}
					res := strings.TrimSpace(strings.SplitN(out[i+len("RESULT "):], "\n", 2)[0])
					t.Logf("%s", res)
					switch {
					case strings.HasPrefix(res, "ok "), strings.HasPrefix(res, "unsupported "):
					case where == "tmpfs" && strings.HasPrefix(res, "error ") && strings.Contains(res, "posix_fadvise"):
					default:
						t.Fatalf("Release in a child: %s", res)
					}
				}
			})
		}
	}
}
