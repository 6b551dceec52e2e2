//go:build !unix

package testredis

// Stop would freeze the server with SIGSTOP, which this platform does not
// have: the tests that simulate a hung Redis run on Unix only.
func (s *Server) Stop() { s.fatalf("testredis: Stop needs SIGSTOP, a Unix signal") }

// Continue would resume a server frozen by Stop.
func (s *Server) Continue() { s.fatalf("testredis: Continue needs SIGCONT, a Unix signal") }
