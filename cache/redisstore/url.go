package redisstore

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// newClient builds a go-redis client for one of the accepted URL forms (see
// the package doc). Every socket wait is bounded by timeout (the longer of
// the store's two timeouts) and by the caller's context deadline, which the
// store sets to Options.Timeout on the decisions' hot path (go-redis
// ignores deadlines unless told, and its own default is 5s per read: a hung
// server then held every decision for 5s instead of the configured store
// timeout). Timeouts given in the URL's query (read_timeout=…) win.
func newClient(raw string, timeout time.Duration) (redis.UniversalClient, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
		opt, err := redis.ParseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("redis url: %w", err)
		}
		opt.ContextTimeoutEnabled = true
		bound(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout, timeout)
		opt.MaxRetries = noRetries
		return redis.NewClient(opt), nil
	case "redis-cluster", "rediss-cluster":
		hosts := strings.Split(u.Host, ",")
		scheme := strings.TrimSuffix(u.Scheme, "-cluster")
		q := u.Query()
		for _, h := range hosts[1:] {
			q.Add("addr", h)
		}
		c := *u
		c.Scheme, c.Host, c.RawQuery = scheme, hosts[0], q.Encode()
		opt, err := redis.ParseClusterURL(c.String())
		if err != nil {
			return nil, fmt.Errorf("redis cluster url: %w", err)
		}
		opt.ContextTimeoutEnabled = true
		bound(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout, timeout)
		opt.MaxRetries = noRetries
		return redis.NewClusterClient(opt), nil
	case "redis-sentinel", "rediss-sentinel":
		master := strings.Trim(u.Path, "/")
		if master == "" {
			return nil, fmt.Errorf("redis sentinel url: the master name is required as the path (redis-sentinel://h1:26379,h2:26379/mymaster)")
		}
		opt := &redis.FailoverOptions{MasterName: master, SentinelAddrs: strings.Split(u.Host, ","), ContextTimeoutEnabled: true, MaxRetries: noRetries}
		bound(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout, timeout)
		q := u.Query()
		opt.SentinelAddrs = append(opt.SentinelAddrs, q["addr"]...)
		if u.User != nil {
			opt.Username = u.User.Username()
			opt.Password, _ = u.User.Password()
		}
		opt.SentinelPassword = q.Get("sentinel_password")
		if db := q.Get("db"); db != "" {
			n, err := strconv.Atoi(db)
			if err != nil {
				return nil, fmt.Errorf("redis sentinel url: db %q is not a number", db)
			}
			opt.DB = n
		}
		if u.Scheme == "rediss-sentinel" {
			return nil, fmt.Errorf("redis sentinel url: TLS to sentinels is not supported yet; use redis-sentinel://")
		}
		return redis.NewFailoverClient(opt), nil
	default:
		return nil, fmt.Errorf("redis url: unsupported scheme %q (want redis, rediss, unix, redis-sentinel or redis-cluster)", u.Scheme)
	}
}

// noRetries turns go-redis's own retries off: a script whose answer was
// lost may have run, and the store's compare-and-set loops are the ones
// that know how to try again safely.
const noRetries = -1

// bound sets every unset socket timeout to d.
func bound(dial, read, write, pool *time.Duration, d time.Duration) {
	for _, p := range []*time.Duration{dial, read, write, pool} {
		if *p == 0 {
			*p = d
		}
	}
}
