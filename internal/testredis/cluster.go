package testredis

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ClusterOptions shape a multi-node Redis Cluster.
type ClusterOptions struct {
	// Masters is the number of masters (default 3); slots are spread evenly
	// over them by `redis-cli --cluster create`.
	Masters int
	// Replicas is the number of replicas per master (default 1).
	Replicas int
	// NodeTimeout is cluster-node-timeout: how long a master may be silent
	// before its replica takes over (default 2s; small, so that a failover
	// test is quick, large enough not to fail over a busy but live node).
	NodeTimeout time.Duration
}

func (o *ClusterOptions) defaults() {
	if o.Masters <= 0 {
		o.Masters = 3
	}
	if o.Replicas < 0 {
		o.Replicas = 0
	} else if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.NodeTimeout <= 0 {
		o.NodeTimeout = 2 * time.Second
	}
}

// Cluster is a Redis Cluster of real redis-server processes on loopback:
// masters with replicas, as production runs it. Nodes keep their position
// in Nodes for the cluster's life; which of them are masters changes with
// failovers (see Masters).
type Cluster struct {
	Nodes []*Server
	dir   string
	owned bool // dir is ours to remove
}

// StartCluster3x3 starts three masters with one replica each; the cluster
// is stopped by t.Cleanup. A package that runs many tests on a cluster
// should share one (SharedCluster) rather than pay the start-up each time.
func StartCluster3x3(t testing.TB) *Cluster {
	t.Helper()
	c, err := newCluster(t.TempDir(), ClusterOptions{Masters: 3, Replicas: 1}, t.Fatalf)
	if err != nil {
		t.Fatalf("testredis: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// StartClusterWith starts a cluster shaped by opts; stopped by t.Cleanup.
func StartClusterWith(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	c, err := newCluster(t.TempDir(), opts, t.Fatalf)
	if err != nil {
		t.Fatalf("testredis: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// NewCluster starts a cluster outside any test (TestMain); Close stops it
// and removes its files.
func NewCluster(opts ClusterOptions) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "testredis-cluster-")
	if err != nil {
		return nil, fmt.Errorf("testredis: %w", err)
	}
	fatalf := func(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
	c, err := newCluster(dir, opts, fatalf)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("testredis: %w", err)
	}
	c.owned = true
	return c, nil
}

func newCluster(dir string, opts ClusterOptions, fatalf func(string, ...any)) (*Cluster, error) {
	opts.defaults()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, fmt.Errorf("redis-cli is not installed (it comes with redis-server: `make test-deps`): %w", err)
	}
	c := &Cluster{dir: dir}
	n := opts.Masters * (1 + opts.Replicas)
	for i := range n {
		nd := filepath.Join(dir, "node"+strconv.Itoa(i))
		if err := os.MkdirAll(nd, 0o700); err != nil {
			return nil, err
		}
		s, err := newServer(nd, true, fatalf)
		if err != nil {
			c.Close()
			return nil, err
		}
		s.args = []string{
			"--cluster-node-timeout", strconv.FormatInt(opts.NodeTimeout.Milliseconds(), 10),
			// Any replica may take over however long ago it last heard
			// from its master: the test kills masters on purpose.
			"--cluster-replica-validity-factor", "0",
			"--appendfsync", "everysec",
			// Replicas sync at once (the default waits 5s for more
			// replicas to share one transfer).
			"--repl-diskless-sync-delay", "0",
		}
		c.Nodes = append(c.Nodes, s)
		if err := s.start(); err != nil {
			c.Close()
			return nil, err
		}
	}
	args := []string{"--cluster", "create"}
	for _, s := range c.Nodes {
		args = append(args, s.Addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(opts.Replicas), "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.WaitHealthy(30 * time.Second); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Close stops every node.
func (c *Cluster) Close() {
	for _, s := range c.Nodes {
		s.Kill()
	}
	if c.owned {
		_ = os.RemoveAll(c.dir)
	}
}

// Addrs are the nodes' host:port.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		out[i] = s.Addr()
	}
	return out
}

// URL is a redis-cluster:// URL naming every node as a seed.
func (c *Cluster) URL() string { return "redis-cluster://" + strings.Join(c.Addrs(), ",") }

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id, masterID string
	addr         string
	master       bool
	failed       bool
	slots        int
}

// nodesView asks any live node for CLUSTER NODES.
func (c *Cluster) nodesView() ([]clusterNode, error) {
	var lastErr error
	for _, s := range c.Nodes {
		if !s.running() {
			continue
		}
		reply, err := command(s.Addr(), "CLUSTER NODES")
		if err != nil {
			lastErr = err
			continue
		}
		var out []clusterNode
		for _, line := range strings.Split(strings.TrimSpace(reply), "\n") {
			f := strings.Fields(line)
			if len(f) < 8 {
				continue
			}
			addr, _, _ := strings.Cut(f[1], "@")
			n := clusterNode{id: f[0], masterID: f[3], addr: addr, master: strings.Contains(f[2], "master"), failed: strings.Contains(f[2], "fail")}
			for _, r := range f[8:] {
				if strings.HasPrefix(r, "[") { // a slot being migrated
					continue
				}
				lo, hi, ok := strings.Cut(r, "-")
				a, _ := strconv.Atoi(lo)
				b := a
				if ok {
					b, _ = strconv.Atoi(hi)
				}
				n.slots += b - a + 1
			}
			out = append(out, n)
		}
		return out, nil
	}
	if lastErr == nil {
		lastErr = errors.New("no node is running")
	}
	return nil, lastErr
}

// Masters are the running nodes that currently serve slots.
func (c *Cluster) Masters() []*Server {
	view, err := c.nodesView()
	if err != nil {
		return nil
	}
	var out []*Server
	for _, n := range view {
		if !n.master || n.failed || n.slots == 0 {
			continue
		}
		for _, s := range c.Nodes {
			if s.Addr() == n.addr && s.running() {
				out = append(out, s)
			}
		}
	}
	return out
}

// ReplicasOf are the running nodes replicating master.
func (c *Cluster) ReplicasOf(master *Server) []*Server {
	view, err := c.nodesView()
	if err != nil {
		return nil
	}
	id := ""
	for _, n := range view {
		if n.addr == master.Addr() {
			id = n.id
		}
	}
	var out []*Server
	for _, n := range view {
		if n.master || n.masterID != id || id == "" {
			continue
		}
		for _, s := range c.Nodes {
			if s.Addr() == n.addr && s.running() {
				out = append(out, s)
			}
		}
	}
	return out
}

// WaitHealthy waits until every running node reports cluster_state:ok,
// every slot is served by a master that is not failed, and every replica's
// link to its master is up.
func (c *Cluster) WaitHealthy(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		err := c.healthy()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not healthy within %s: %w", limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) healthy() error {
	view, err := c.nodesView()
	if err != nil {
		return err
	}
	served := 0
	for _, n := range view {
		if n.master && !n.failed {
			served += n.slots
		}
	}
	if served != 16384 {
		return fmt.Errorf("%d of 16384 slots served by live masters", served)
	}
	for _, s := range c.Nodes {
		if !s.running() {
			continue
		}
		info, err := command(s.Addr(), "CLUSTER INFO")
		if err != nil {
			return err
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state not ok", s.Addr())
		}
		repl, err := command(s.Addr(), "INFO replication")
		if err != nil {
			return err
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return fmt.Errorf("%s: replica not linked to its master", s.Addr())
		}
	}
	return nil
}

// Flush empties every master (replicas follow): a fresh store per test
// without restarting the cluster.
func (c *Cluster) Flush() error {
	for _, s := range c.Masters() {
		if reply, err := command(s.Addr(), "FLUSHALL"); err != nil || !strings.HasPrefix(reply, "+OK") {
			return fmt.Errorf("flushall on %s: %q %v", s.Addr(), reply, err)
		}
	}
	return nil
}

func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// SharedCluster starts one cluster for a whole test package on first use;
// the package's TestMain closes it:
//
//	var cluster testredis.SharedCluster
//	func TestMain(m *testing.M) { code := m.Run(); cluster.Close(); os.Exit(code) }
//	func TestX(t *testing.T) { c := cluster.Get(t) ... }
type SharedCluster struct {
	Options ClusterOptions
	once    sync.Once
	c       *Cluster
	err     error
}

// Get returns the package's cluster, starting it the first time.
func (s *SharedCluster) Get(t testing.TB) *Cluster {
	t.Helper()
	s.once.Do(func() { s.c, s.err = NewCluster(s.Options) })
	if s.err != nil {
		t.Fatalf("%v", s.err)
	}
	return s.c
}

// Close stops the cluster if it was started.
func (s *SharedCluster) Close() {
	if s.c != nil {
		s.c.Close()
	}
}
