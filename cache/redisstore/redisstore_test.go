package redisstore_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/redisstore"
	"github.com/gdprgate/gdprgate/cache/storetest"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/testredis"
	"github.com/gdprgate/gdprgate/policy/model"
	"github.com/redis/go-redis/v9"
)

func flush(t *testing.T, srv *testredis.Server) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	if err := c.FlushAll(context.Background()).Err(); err != nil {
		t.Fatalf("flushall: %v", err)
	}
}

func TestStoreContract(t *testing.T) {
	srv := testredis.Start(t)
	storetest.Run(t, func(t *testing.T) cache.Store {
		flush(t, srv)
		s, err := redisstore.New(context.Background(), srv.URL(), generous(cache.Options{}))
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return s
	})
}

// cluster is the package's Redis Cluster (three masters, one replica
// each), started by the first test that needs it.
var cluster testredis.SharedCluster

func TestMain(m *testing.M) {
	code := m.Run()
	cluster.Close()
	os.Exit(code)
}

// TestStoreContractOnCluster runs the same suite against a real Redis
// Cluster of three masters with a replica each.
func TestStoreContractOnCluster(t *testing.T) {
	c := cluster.Get(t)
	storetest.Run(t, func(t *testing.T) cache.Store {
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		s, err := redisstore.New(context.Background(), c.URL(), generous(cache.Options{}))
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return s
	})
}

func benchStore(b *testing.B) *redisstore.Store {
	srv := testredis.Start(b)
	s, err := redisstore.New(context.Background(), srv.URL(), generous(cache.Options{}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	if _, err := s.SaveRegisters(ctx, storetest.Registers(), 0, audit.Entry{Actor: "bench", Action: "register.replace"}); err != nil {
		b.Fatal(err)
	}
	if _, err := s.PutEvidence(ctx, []model.Evidence{{Subject: alice, LegalisationID: "contract-care", Origin: storetest.T0.AddDate(0, 0, -100)}}, audit.Entry{Actor: "bench", Action: "evidence.create"}); err != nil {
		b.Fatal(err)
	}
	return s
}

func BenchmarkFactsWarmHit(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	for s.Local().Len() == 0 {
		if _, err := s.Facts(ctx, alice, storetest.T0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Facts(ctx, alice, storetest.T0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFactsRedisMiss(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	if _, err := s.Registers(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Local().Invalidate(alice) // force the round trip, keep the registers
		if _, err := s.Facts(ctx, alice, storetest.T0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFactsRedisMissConcurrent: 16 decisions at a time, each missing
// the local cache (1,000 subjects, none cached), with the misses read
// together (batched: through the batcher's own connection; goredis: the
// same batches through go-redis) and each on its own (unbatched),
// alternating rounds in one run. It reports this process's CPU per miss (store client,
// go-redis, syscalls: the sidecar's share of a miss) and Redis's.
//
//	go test ./cache/redisstore/ -run '^$' -bench FactsRedisMissConcurrent -benchtime 20000x
func BenchmarkFactsRedisMissConcurrent(b *testing.B) {
	const subjects = 1000
	srv := testredis.Start(b)
	ctx := context.Background()
	stores := map[string]*redisstore.Store{}
	names := []string{"batched", "goredis", "unbatched"}
	for _, name := range names {
		s, err := redisstore.New(ctx, srv.URL(), generous(cache.Options{MaxSubjects: 1}))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		stores[name] = s
	}
	redisstore.UnbatchMissesForTest(stores["unbatched"])
	redisstore.GoRedisMissesForTest(stores["goredis"])
	s := stores["batched"]
	if _, err := s.SaveRegisters(ctx, storetest.Registers(), 0, audit.Entry{Actor: "bench", Action: "register.replace"}); err != nil {
		b.Fatal(err)
	}
	var evs []model.Evidence
	for i := range subjects {
		evs = append(evs, model.Evidence{Subject: model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("m-%d", i)}, LegalisationID: "contract-care", Origin: storetest.T0})
	}
	if _, err := s.PutEvidence(ctx, evs, audit.Entry{Actor: "bench", Action: "evidence.import"}); err != nil {
		b.Fatal(err)
	}
	type total struct {
		client time.Duration
		redis  float64
		n      int
	}
	totals := map[string]*total{"batched": {}, "goredis": {}, "unbatched": {}}
	const rounds = 4
	per := max(b.N/rounds, 16)
	for range rounds {
		for _, name := range names {
			st := stores[name]
			var next atomic.Int64
			var wg sync.WaitGroup
			var failed atomic.Value
			r0 := info(b, []string{srv.Addr()}, "used_cpu_")
			c0 := processCPU()
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > int64(per) {
							return
						}
						ref := model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("m-%d", i%subjects)}
						if _, err := st.Facts(ctx, ref, storetest.T0); err != nil {
							failed.CompareAndSwap(nil, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			if err, _ := failed.Load().(error); err != nil {
				b.Fatal(err)
			}
			t := totals[name]
			t.client += processCPU() - c0
			t.redis += info(b, []string{srv.Addr()}, "used_cpu_") - r0
			t.n += per
		}
	}
	for name, t := range totals {
		b.ReportMetric(float64(t.client.Nanoseconds())/1e3/float64(t.n), name+"_client_µs/miss")
		b.ReportMetric(t.redis*1e6/float64(t.n), name+"_redis_µs/miss")
	}
	b.ReportMetric(float64(totals["batched"].client)/float64(totals["unbatched"].client), "client_batched/unbatched")
	b.ReportMetric(float64(totals["batched"].client)/float64(totals["goredis"].client), "client_batched/goredis")
}
