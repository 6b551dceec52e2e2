package loadgen

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// RedisMemory is what the data occupies in Redis: used_memory and the key
// count, summed over the masters of a cluster.
type RedisMemory struct {
	UsedBytes int64 `json:"used_bytes"`
	Keys      int64 `json:"keys"`
}

// ReadRedisMemory reads INFO memory and DBSIZE from a redis:// server or
// from every master of a redis-cluster://h1,h2 cluster.
func ReadRedisMemory(ctx context.Context, rawURL string) (RedisMemory, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return RedisMemory{}, fmt.Errorf("redis url: %w", err)
	}
	var m RedisMemory
	read := func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "memory").Result()
		if err != nil {
			return err
		}
		n, err := c.DBSize(ctx).Result()
		if err != nil {
			return err
		}
		used, err := infoField(info, "used_memory")
		if err != nil {
			return err
		}
		m.UsedBytes += used
		m.Keys += n
		return nil
	}
	switch u.Scheme {
	case "redis":
		opt, err := redis.ParseURL(rawURL)
		if err != nil {
			return m, fmt.Errorf("redis url: %w", err)
		}
		c := redis.NewClient(opt)
		defer c.Close()
		return m, read(ctx, c)
	case "redis-cluster":
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(u.Host, ",")})
		defer c.Close()
		var mu sync.Mutex
		err := c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return read(ctx, n)
		})
		return m, err
	default:
		return m, fmt.Errorf("redis url: want redis:// or redis-cluster:// (got %q)", u.Scheme)
	}
}

func infoField(info, name string) (int64, error) {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("INFO has no %s", name)
}
