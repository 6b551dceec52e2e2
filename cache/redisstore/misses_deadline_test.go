package redisstore_test

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/storetest"
	"github.com/gdprgate/gdprgate/internal/testredis"
)

// delayProxy forwards TCP connections to a Redis server, holding every
// chunk a client sends for delay while slow is set.
type delayProxy struct {
	addr  string
	slow  atomic.Bool
	delay time.Duration
}

func startDelayProxy(t *testing.T, target string, delay time.Duration) *delayProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &delayProxy{addr: ln.Addr().String(), delay: delay}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, u)
			mu.Unlock()
			wg.Add(2)
			go func() {
				defer wg.Done()
				defer u.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if p.slow.Load() {
							time.Sleep(p.delay)
						}
						if _, werr := u.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, u)
			}()
		}
	}()
	return p
}

// TestMissReadByItsDecisionEndsByItsDeadline: a decision that reads its
// batch on its own goroutine (its deadline lies beyond the read's bound)
// must still be done by its deadline when the read has to fetch the
// registers first (none cached) and Redis answers each round trip slowly
// but within Options.Timeout: the registers' round trip counts against
// the same bound as the records', or the decision is answered well after
// it should have failed closed.
func TestMissReadByItsDecisionEndsByItsDeadline(t *testing.T) {
	srv := testredis.Start(t)
	const timeout, delay = 600 * time.Millisecond, 450 * time.Millisecond
	p := startDelayProxy(t, srv.Addr(), delay)
	s := seededStore(t, "redis://"+p.addr+"/0", cache.Options{Timeout: timeout, MaxSubjects: 1})
	s.Local().DropIndex()
	p.slow.Store(true)
	// Beyond the read's bound (Timeout and 20µs a subject of a full
	// batch): this decision reads the batch itself.
	deadline := time.Now().Add(timeout + 128*20*time.Microsecond + 100*time.Millisecond)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	f, err := s.Facts(ctx, contact(1), storetest.T0)
	if done := time.Now(); err == nil && done.After(deadline) {
		t.Fatalf("answered %v after its deadline (%+v): a decision must fail closed by then", done.Sub(deadline), f)
	}
}
