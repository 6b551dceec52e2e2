// Package testlog holds a log sink for tests whose code under test logs
// from several goroutines while the test reads what was written. It depends
// on nothing of gdprgate, so any package's tests can import it.
package testlog

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer that concurrent writers and a reader may share.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
