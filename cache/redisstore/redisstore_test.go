package redisstore_test

import (
	"context"
	"testing"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/redisstore"
	"github.com/gdprgate/gdprgate/cache/storetest"
	"github.com/gdprgate/gdprgate/internal/testredis"
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
		s, err := redisstore.New(context.Background(), srv.URL(), cache.Options{})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return s
	})
}
