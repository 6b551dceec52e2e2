package redisstore_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// BenchmarkImportSingleVsCluster imports the same subjects (one evidence
// record each, in batches of 10000 as the admin import stores them, from
// several importers at once) into one redis-server and into a 3-master,
// 3-replica cluster (and, with GDPRGATE_BENCH_NO_REPLICAS=1, into 3 masters
// without replicas), alternating chunks between the two so that both see
// the same machine load, and reports the import rate of each, their ratio
// and the Redis memory per subject (used_memory growth over the masters
// divided by the subjects; replicas hold as much again) and the Redis CPU
// per record (INFO used_cpu_user+sys growth: on a shared machine the rate
// says how busy the machine was, the CPU what a dedicated Redis needs).
// The size is GDPRGATE_BENCH_SUBJECTS (default 100000);
// GDPRGATE_BENCH_BATCH the records per PutEvidence (default 10000, the
// admin import's); GDPRGATE_BENCH_BUCKETS sets store.buckets (the subjects per bucket of a
// bigger store at a smaller size: memory per subject depends on it). Run it
// once:
//
//	GDPRGATE_BENCH_SUBJECTS=1000000 GDPRGATE_BENCH_BUCKETS=51 go test ./cache/redisstore/ \
//	  -run '^$' -bench ImportSingleVsCluster -benchtime 1x -benchmem -timeout 60m
func BenchmarkImportSingleVsCluster(b *testing.B) {
	total := 100000
	if v := os.Getenv("GDPRGATE_BENCH_SUBJECTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1000 {
			b.Fatalf("GDPRGATE_BENCH_SUBJECTS=%q: want a number ≥ 1000", v)
		}
		total = n
	}
	buckets := 0
	if v := os.Getenv("GDPRGATE_BENCH_BUCKETS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("GDPRGATE_BENCH_BUCKETS=%q: want a positive number", v)
		}
		buckets = n
	}
	const (
		importers = 8
		chunk     = 100000
	)
	batch := 10000
	if v := os.Getenv("GDPRGATE_BENCH_BATCH"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("GDPRGATE_BENCH_BATCH=%q: want a positive number", v)
		}
		batch = n
	}
	type target struct {
		name     string
		store    *redisstore.Store
		masters  []string
		replicas []string
		before   int64
		cpu      [2]float64 // masters, replicas
		client   time.Duration
		took     time.Duration
		done     int
	}
	// Generous timeouts: a 10000-record write on a machine at load 40 took
	// longer than 40 s once.
	opts := cache.Options{Timeout: 30 * time.Second, WriteTimeout: 3 * time.Minute, Logger: quiet(), Buckets: buckets}
	// GDPRGATE_BENCH_ONLY=cluster3r0[,single,cluster3]: import into these
	// targets only (a 10M run of all three does not fit in an hour on a
	// loaded 2-core machine).
	only := func(name string) bool {
		v := os.Getenv("GDPRGATE_BENCH_ONLY")
		return v == "" || slices.Contains(strings.Split(v, ","), name)
	}
	srv := testredis.Start(b)
	// The cluster's nodes fsync the AOF every second; so does the single
	// node here (testredis fsyncs every write by default).
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	if err := c.ConfigSet(context.Background(), "appendfsync", "everysec").Err(); err != nil {
		b.Fatal(err)
	}
	_ = c.Close()
	single := &target{name: "single", store: seededStore(b, srv.URL(), opts), masters: []string{srv.Addr()}}
	var targets []*target
	if only("single") {
		targets = append(targets, single)
	}
	clusters := []struct {
		name     string
		replicas int
	}{{"cluster3", 1}}
	if os.Getenv("GDPRGATE_BENCH_NO_REPLICAS") != "" {
		// The same 3 masters without replicas: what replication costs.
		clusters = append(clusters, struct {
			name     string
			replicas int
		}{"cluster3r0", -1})
	}
	for _, k := range clusters {
		if !only(k.name) {
			continue
		}
		// A node timeout long enough for a loaded machine: the import must
		// not meet a failover.
		cl := testredis.StartClusterWith(b, testredis.ClusterOptions{Masters: 3, Replicas: k.replicas, NodeTimeout: 20 * time.Second})
		t := &target{name: k.name, store: seededStore(b, cl.URL(), opts)}
		for _, m := range cl.Masters() {
			t.masters = append(t.masters, m.Addr())
			// The cluster's view can lag (or time out) on a loaded machine:
			// replicas missing here would be missing from the CPU figures.
			for wait := 0; ; wait++ {
				rs := cl.ReplicasOf(m)
				if len(rs) >= k.replicas || wait == 60 {
					for _, r := range rs {
						t.replicas = append(t.replicas, r.Addr())
					}
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
		}
		targets = append(targets, t)
	}
	ctx := context.Background()
	stats := os.Getenv("GDPRGATE_BENCH_COMMANDSTATS") != ""
	// GDPRGATE_BENCH_PROGRESS=1: figures so far on stderr every 1M subjects.
	progress := os.Getenv("GDPRGATE_BENCH_PROGRESS") != ""
	for _, t := range targets {
		t.before = usedMemory(b, t.masters)
		if stats {
			resetStats(b, append(t.masters, t.replicas...))
		}
	}
	b.ResetTimer()
	for range b.N {
		for from := 0; from < total; from += chunk {
			to := min(from+chunk, total)
			for _, t := range targets {
				m0, r0 := info(b, t.masters, "used_cpu_"), info(b, t.replicas, "used_cpu_")
				c0 := processCPU()
				start := time.Now()
				importRange(b, ctx, t.store, from, to, batch, importers)
				t.took += time.Since(start)
				t.client += processCPU() - c0
				t.cpu[0] += info(b, t.masters, "used_cpu_") - m0
				t.cpu[1] += info(b, t.replicas, "used_cpu_") - r0
				t.done += to - from
			}
			if progress && (to/chunk)%10 == 0 || to == total {
				// A long run can be stopped with figures in hand.
				for _, t := range targets {
					fmt.Fprintf(os.Stderr, "progress %s: %d subjects, %.0f rec/s, redis %.2f µs/rec (replicas %.2f), client %.2f µs/rec, %.1f B/subject\n",
						t.name, t.done, float64(t.done)/t.took.Seconds(), t.cpu[0]*1e6/float64(t.done), t.cpu[1]*1e6/float64(t.done),
						float64(t.client.Microseconds())/float64(t.done), float64(usedMemory(b, t.masters)-t.before)/float64(t.done))
				}
			}
		}
	}
	b.StopTimer()
	rate := map[string]float64{}
	for _, t := range targets {
		rate[t.name] = float64(total*b.N) / t.took.Seconds()
		b.ReportMetric(rate[t.name], t.name+"_rec/s")
		grown := usedMemory(b, t.masters) - t.before
		b.ReportMetric(float64(grown)/float64(total), t.name+"_B/subject")
		b.ReportMetric(t.cpu[0]*1e6/float64(total*b.N), t.name+"_redis_µs/rec")
		b.ReportMetric(float64(t.client.Microseconds())/float64(total*b.N), t.name+"_client_µs/rec")
		if len(t.replicas) > 0 {
			b.ReportMetric(t.cpu[1]*1e6/float64(total*b.N), t.name+"_replicas_µs/rec")
		}
	}
	if stats {
		for _, t := range targets {
			b.Logf("%s masters: %s", t.name, commandStats(b, t.masters, total*b.N))
			if len(t.replicas) > 0 {
				b.Logf("%s replicas: %s", t.name, commandStats(b, t.replicas, total*b.N))
			}
		}
	}
	if rate["single"] == 0 {
		return
	}
	if r := rate["cluster3"]; r > 0 {
		b.ReportMetric(r/rate["single"], "cluster/single")
	}
	if r := rate["cluster3r0"]; r > 0 {
		b.ReportMetric(r/rate["single"], "cluster_r0/single")
	}
}

// importRange stores subjects [from, to) with one evidence record each.
func importRange(b testing.TB, ctx context.Context, s *redisstore.Store, from, to, batch, importers int) {
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	var failed atomic.Value
	for range importers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			evs := make([]model.Evidence, 0, batch)
			for {
				lo := int(next.Add(int64(batch))) - batch
				if lo >= to {
					return
				}
				evs = evs[:0]
				for i := lo; i < min(lo+batch, to); i++ {
					evs = append(evs, model.Evidence{
						Subject:        model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("c-%08d", i)},
						LegalisationID: "contract-care",
						Origin:         storetest.T0,
					})
				}
				if _, err := s.PutEvidence(ctx, evs, audit.Entry{Actor: "bench", Action: "evidence.import"}); err != nil {
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
}

// usedMemory is the sum of INFO used_memory over addrs.
func usedMemory(b *testing.B, addrs []string) int64 {
	return int64(info(b, addrs, "used_memory:"))
}

// info sums, over addrs, the INFO fields whose name starts with prefix
// (used_cpu_ ends with the user and sys seconds of the main thread and of
// the children — the latter are zero without snapshots).
func info(b testing.TB, addrs []string, prefix string) float64 {
	var sum float64
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		text, err := c.Info(context.Background()).Result()
		_ = c.Close()
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(text, "\r\n") {
			if !strings.HasPrefix(line, prefix) {
				continue
			}
			name, v, _ := strings.Cut(line, ":")
			if strings.Contains(name, "_main_thread") { // already in used_cpu_user/sys
				continue
			}
			n, _ := strconv.ParseFloat(v, 64)
			sum += n
		}
	}
	return sum
}

// resetStats clears INFO commandstats on addrs.
func resetStats(b testing.TB, addrs []string) {
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		err := c.ConfigResetStat(context.Background()).Err()
		_ = c.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
}

// commandStats sums INFO commandstats over addrs: per command, calls and
// µs of Redis CPU per imported record (commands a script calls count on
// their own as well as inside the script's evalsha).
func commandStats(b testing.TB, addrs []string, records int) string {
	type stat struct{ calls, usec float64 }
	sum := map[string]*stat{}
	var names []string
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		text, err := c.Info(context.Background(), "commandstats").Result()
		_ = c.Close()
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(text, "\r\n") {
			name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":")
			if !ok || !strings.HasPrefix(line, "cmdstat_") {
				continue
			}
			st := sum[name]
			if st == nil {
				st = &stat{}
				sum[name] = st
				names = append(names, name)
			}
			for _, kv := range strings.Split(rest, ",") {
				k, v, _ := strings.Cut(kv, "=")
				n, _ := strconv.ParseFloat(v, 64)
				switch k {
				case "calls":
					st.calls += n
				case "usec":
					st.usec += n
				}
			}
		}
	}
	var out strings.Builder
	for _, n := range names {
		st := sum[n]
		fmt.Fprintf(&out, "%s %.3f calls/rec %.2f µs/rec; ", n, st.calls/float64(records), st.usec/float64(records))
	}
	return out.String()
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// processCPU is the user+system CPU this process used so far (the
// importers: validation, encoding, the Redis client).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
