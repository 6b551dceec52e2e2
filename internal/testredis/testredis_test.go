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
