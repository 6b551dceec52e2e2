package testredis

import "testing"

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
