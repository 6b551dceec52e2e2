package testredis

import (
	"testing"
	"time"
)

func TestKillAndRestartKeepAddress(t *testing.T) {
	s := Start(t)
	addr := s.Addr()
	if err := ping(addr); err != nil {
		t.Fatalf("ping after Start: %v", err)
	}
	s.Kill()
	if err := ping(addr); err == nil {
		t.Fatal("server still answers after Kill")
	}
	s.Restart()
	if s.Addr() != addr {
		t.Fatalf("address moved from %s to %s", addr, s.Addr())
	}
	if err := ping(addr); err != nil {
		t.Fatalf("ping after Restart: %v", err)
	}
}

func TestStopFreezesAndContinueThaws(t *testing.T) {
	s := Start(t)
	s.Stop()
	if err := ping(s.Addr()); err == nil {
		t.Fatal("a stopped server answered PING")
	}
	s.Continue()
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("ping after Continue: %v", err)
	}
	s.Stop() // the cleanup must end a stopped server too
}

func TestClusterOfThreeMastersSurvivesAMasterKill(t *testing.T) {
	c := StartCluster3x3(t)
	if n := len(c.Nodes); n != 6 {
		t.Fatalf("%d nodes, want 6", n)
	}
	masters := c.Masters()
	if len(masters) != 3 {
		t.Fatalf("%d masters, want 3", len(masters))
	}
	victim := masters[0]
	victim.Kill()
	if err := c.WaitHealthy(60 * time.Second); err != nil {
		t.Fatalf("after killing a master: %v", err)
	}
	after := c.Masters()
	if len(after) != 3 {
		t.Fatalf("%d masters after failover, want 3 (a replica promoted)", len(after))
	}
	for _, m := range after {
		if m == victim {
			t.Fatal("the killed master is still listed as a master")
		}
	}
	// Back, the old master rejoins as a replica.
	victim.Restart()
	if err := c.WaitHealthy(60 * time.Second); err != nil {
		t.Fatalf("after the old master came back: %v", err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}
