// Package bufpool is the buffer pool of gdprgate's body paths (the gRPC
// server's frames and messages, ext_proc bodies, the proxy's mapped
// answers). It is grpc-go's tiered pool without the clearing: grpc-go's
// default pool zeroes every buffer it hands out, a whole megabyte for each
// megabyte body received or rewritten (about 6% of the server CPU of a
// 1 MB ext_proc exchange). Every user of these buffers writes the bytes it
// reads back (a read fills what it returns, a rewrite appends), so nothing
// of a previous body is ever read from one.
package bufpool

import (
	"math/bits"
	"sync"

	"google.golang.org/grpc/mem"
)

const (
	minShift = 8  // 256 B: smaller buffers are not pooled
	maxShift = 26 // 64 MiB: larger ones are allocated and dropped
)

type pool struct {
	tiers [maxShift - minShift + 1]sync.Pool
}

// Pool is the shared pool: a mem.BufferPool whose buffers are not zeroed.
var Pool mem.BufferPool = &pool{}

// Get returns a buffer of length size (its contents unspecified).
func (p *pool) Get(size int) *[]byte {
	if size <= 0 {
		b := []byte{}
		return &b
	}
	shift := max(bits.Len(uint(size-1)), minShift)
	if shift > maxShift {
		b := make([]byte, size)
		return &b
	}
	if b, ok := p.tiers[shift-minShift].Get().(*[]byte); ok {
		*b = (*b)[:size]
		return b
	}
	b := make([]byte, size, 1<<shift)
	return &b
}

// Put gives buf back: it serves later requests of up to its capacity.
func (p *pool) Put(buf *[]byte) {
	c := cap(*buf)
	if c < 1<<minShift {
		return
	}
	shift := bits.Len(uint(c)) - 1 // the largest tier buf can serve
	if shift > maxShift {
		return
	}
	*buf = (*buf)[:0]
	p.tiers[shift-minShift].Put(buf)
}
