// Package testredis starts a real redis-server for tests: a private
// instance on a free loopback port with its data in a temporary directory,
// stopped when the test ends. Kill and Restart (same port, same directory,
// append-only file kept) let fault tests take the server away and bring it
// back.
//
// redis-server must be installed (`make test-deps` installs it); without it
// tests fail with a message saying so rather than silently skipping.
package testredis

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is one redis-server process owned by a test.
type Server struct {
	fatalf func(format string, args ...any)
	bin    string
	dir    string
	port   int
	// busPort is the cluster bus port (cluster mode only): chosen free
	// rather than port+10000, which may be taken or out of range.
	busPort int
	// extra arguments (cluster tuning).
	args []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	cluster bool
}

// Start launches redis-server and waits until it answers PING. The server
// is stopped by t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	return launch(t, false)
}

// launch starts a server in a fresh temp dir on a free loopback port.
func launch(t testing.TB, cluster bool) *Server {
	t.Helper()
	s, err := newServer(t.TempDir(), cluster, t.Fatalf)
	if err != nil {
		t.Fatalf("testredis: %v", err)
	}
	t.Cleanup(s.Kill)
	if err := s.start(); err != nil {
		t.Fatalf("testredis: %v", err)
	}
	return s
}

// newServer prepares (does not start) a server living in dir.
func newServer(dir string, cluster bool, fatalf func(string, ...any)) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server is not installed (run `make test-deps` or `apt-get install -y redis-server`): %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("no free port: %w", err)
	}
	s := &Server{fatalf: fatalf, bin: bin, dir: dir, port: port, cluster: cluster}
	if cluster {
		if s.busPort, err = freePort(); err != nil {
			return nil, fmt.Errorf("no free port: %w", err)
		}
	}
	return s, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Addr is host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL is the redis:// URL of the server.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "yes",
		"--appendfsync", "always",
		"--protected-mode", "yes",
		"--logfile", filepath.Join(s.dir, "redis.log"),
	)
	if s.cluster {
		cmd.Args = append(cmd.Args, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(s.dir, "nodes.conf"),
			"--cluster-port", strconv.Itoa(s.busPort))
	}
	cmd.Args = append(cmd.Args, s.args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ping(s.Addr()) == nil {
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			s.cmd = nil
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			return fmt.Errorf("redis-server on %s did not answer PING within 10s; log:\n%s", s.Addr(), log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping sends an inline PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

// StartCluster launches a one-node Redis Cluster (cluster mode on, every
// slot assigned to the node). Cluster semantics apply as on a real cluster:
// a transaction over keys of different slots fails with CROSSSLOT.
func StartCluster(t testing.TB) *Server {
	t.Helper()
	s := launch(t, true)
	if reply, err := command(s.Addr(), "CLUSTER ADDSLOTSRANGE 0 16383"); err != nil || !strings.HasPrefix(reply, "+OK") {
		t.Fatalf("testredis: assign slots: %q %v", reply, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		reply, err := command(s.Addr(), "CLUSTER INFO")
		if err == nil && strings.Contains(reply, "cluster_state:ok") {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("testredis: cluster not ok within 10s: %q %v", reply, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ClusterURL is the redis-cluster:// URL of a StartCluster server.
func (s *Server) ClusterURL() string { return "redis-cluster://" + s.Addr() }

// command sends one inline command and returns the raw reply (a bulk
// reply's payload included).
func command(addr, cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(line, "$") {
		n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
		if err != nil || n < 0 {
			return line, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return line, nil
}

// Kill stops the server abruptly (SIGKILL), as a crash would. The data
// already in the append-only file survives for Restart.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart starts the server again on the same port and directory.
func (s *Server) Restart() {
	s.Kill()
	if err := s.start(); err != nil {
		s.fatalf("testredis: restart: %v", err)
	}
}
