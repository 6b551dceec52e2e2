//go:build unix

package testredis

import "syscall"

// Stop freezes the server with SIGSTOP: connections stay open and new ones
// are accepted by the kernel, but nothing is answered — a hung server, not
// a dead one. Continue thaws it; Kill and the test's cleanup work on a
// stopped server too.
func (s *Server) Stop() { s.signal(syscall.SIGSTOP) }

// Continue resumes a server frozen by Stop (SIGCONT).
func (s *Server) Continue() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.fatalf("testredis: %v to a server that is not running", sig)
		return
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.fatalf("testredis: %v: %v", sig, err)
	}
}
