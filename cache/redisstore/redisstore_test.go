package redisstore_test

import (
	"context"
	"os"
	"testing"

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
