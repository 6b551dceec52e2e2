package forget

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gdprgate/gdprgate/cache"
	"github.com/gdprgate/gdprgate/cache/redisstore"
	"github.com/gdprgate/gdprgate/internal/audit"
	"github.com/gdprgate/gdprgate/internal/testredis"
	"github.com/gdprgate/gdprgate/policy/model"
)

// BenchmarkSweepRedis measures the sweeper applying the due transitions of
// many subjects on a real Redis — state refresh only (no deletion is due) —
// and what the due index costs in Redis memory per subject. It is long
// (1,000,000 subjects by default; GDPRGATE_SWEEP_SUBJECTS changes it), so
// run it on its own:
//
//	go test -run '^$' -bench SweepRedis -benchtime 1x -timeout 60m ./internal/forget/
//
// GDPRGATE_SWEEP_RECOMPUTE=1 measures the re-indexing walk of a register
// change instead of the due path; GDPRGATE_SWEEP_BATCH sets the batch,
// GDPRGATE_SWEEP_STATS=1 writes Redis commandstats to /tmp/cmdstats.txt.
func BenchmarkSweepRedis(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("GDPRGATE_SWEEP_SUBJECTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	rs := testredis.Start(b)
	st, err := redisstore.New(ctx, rs.URL(), cache.Options{Timeout: 30 * time.Second, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	// Bits 0-2 and a contract covering them: nothing is obliviated now, so
	// the sweep refreshes states and creates no deletion.
	days := func(d int) *int { return &d }
	regs := &model.Registers{
		Sensitivities: []model.Sensitivity{
			{ID: "auxiliary", Bit: 0, Name: "a", GracePeriod: days(30), ExpirationPeriod: days(365), ObliviationPeriod: days(1095)},
			{ID: "contact", Bit: 1, Name: "c", GracePeriod: days(30), ArchivationPeriod: days(180), ExpirationPeriod: days(365), ObliviationPeriod: days(730)},
			{ID: "significant", Bit: 2, Name: "s", GracePeriod: days(0), ExpirationPeriod: days(400), ObliviationPeriod: days(800)},
		},
		Categories:    []model.Category{{ID: "contract", Name: "c", Article: "6.1.b"}},
		Purposes:      []model.Purpose{{ID: "care", Name: "c", ArchivationPeriod: days(365), ExpirationPeriod: days(730), ObliviationPeriod: days(1095)}},
		Legalisations: []model.Legalisation{{ID: "contract-care", Name: "c", CategoryID: "contract", PurposeID: "care", Coverage: 0b111}},
		Config:        model.Config{GdprEnforced: true, IdentityEntity: "contact"},
	}
	if _, err := st.SaveRegisters(ctx, regs, 0, audit.Entry{Actor: "bench"}); err != nil {
		b.Fatal(err)
	}
	ro, _ := redis.ParseURL(rs.URL())
	rc := redis.NewClient(ro)
	defer rc.Close()
	// The due index: each subject's due score lives in its own record (6
	// bytes) and every shard tag keeps a small zset of buckets; sum those.
	used := func() int64 {
		var total int64
		iter := rc.Scan(ctx, 0, "*:due", 1000).Iterator()
		for iter.Next(ctx) {
			n, err := rc.MemoryUsage(ctx, iter.Val(), 0).Result()
			if err != nil {
				b.Fatal(err)
			}
			total += n
		}
		if err := iter.Err(); err != nil {
			b.Fatal(err)
		}
		return total + 6*int64(n)
	}

	ex, err := NewExecutor(ExecutorOptions{Store: st, Hasher: audit.NewHasher([]byte("k")), Clock: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	// GDPRGATE_SWEEP_BATCH sets lifecycle.batch (default 10000).
	sweepBatch := 10000
	if v := os.Getenv("GDPRGATE_SWEEP_BATCH"); v != "" {
		if sweepBatch, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	sw, err := NewSweeper(SweeperOptions{Executor: ex, Batch: sweepBatch, MaxBatches: 1 << 30, LeaseTTL: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	// By default the sweep measured is the due path (Due: the subjects a
	// write marked, as after an import): the re-indexing the registers'
	// save started is finished first, with nothing to walk yet.
	// GDPRGATE_SWEEP_RECOMPUTE=1 leaves it to walk every subject instead
	// (ScanDue: a register change over a loaded store).
	recompute := os.Getenv("GDPRGATE_SWEEP_RECOMPUTE") != ""
	if !recompute {
		if _, err := sw.Pass(ctx); err != nil {
			b.Fatal(err)
		}
	}
	// Persistence as production runs it (the README: AOF, fsync every
	// second), switched off while loading so that only the sweep pays it.
	if err := rc.ConfigSet(ctx, "appendonly", "no").Err(); err != nil {
		b.Fatal(err)
	}
	// Load n subjects, 1000 per atomic batch (one evidence record each;
	// each write marks its subject due).
	load := time.Now()
	const batch = 1000
	for i := 0; i < n; i += batch {
		evs := make([]model.Evidence, 0, batch)
		for j := i; j < min(i+batch, n); j++ {
			ref := model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("c-%07d", j)}
			evs = append(evs, model.Evidence{ID: "ev", Subject: ref, LegalisationID: "contract-care",
				Origin: now.Add(-time.Duration(j%300) * 24 * time.Hour), CreatedAt: now})
		}
		if _, err := st.PutEvidence(ctx, evs, audit.Entry{Actor: "bench", Time: now}); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("loaded %d subjects in %s", n, time.Since(load).Round(time.Second))
	for _, kv := range [][2]string{{"appendfsync", "everysec"}, {"appendonly", "yes"}} {
		if err := rc.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			b.Fatal(err)
		}
	}
	// Turning AOF on rewrites the whole dataset in a child: wait for it.
	for deadline := time.Now().Add(10 * time.Minute); ; {
		info, _ := rc.Info(ctx, "persistence").Result()
		if strings.Contains(info, "aof_rewrite_in_progress:0") && strings.Contains(info, "aof_rewrite_scheduled:0") {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("AOF rewrite did not finish")
		}
		time.Sleep(100 * time.Millisecond)
	}

	if os.Getenv("GDPRGATE_SWEEP_STATS") != "" {
		rc.ConfigResetStat(ctx)
	}
	redisCPU := func() float64 {
		info, err := rc.Info(ctx, "cpu").Result()
		if err != nil {
			b.Fatal(err)
		}
		var total float64
		for _, line := range strings.Split(info, "\r\n") {
			k, v, _ := strings.Cut(line, ":")
			if k == "used_cpu_sys" || k == "used_cpu_user" {
				f, _ := strconv.ParseFloat(v, 64)
				total += f
			}
		}
		return total
	}
	selfCPU := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	// GDPRGATE_SWEEP_CPUPROFILE=FILE profiles the sweep alone (not the load).
	if f := os.Getenv("GDPRGATE_SWEEP_CPUPROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		defer out.Close()
		if err := pprof.StartCPUProfile(out); err != nil {
			b.Fatal(err)
		}
	}
	r0, c0 := redisCPU(), selfCPU()
	b.ResetTimer()
	start := time.Now()
	var res PassResult
	for {
		r, err := sw.Pass(ctx)
		if err != nil {
			b.Fatal(err)
		}
		res.Processed += r.Processed
		res.Committed += r.Committed
		res.Recomputed += r.Recomputed
		if !r.More {
			break
		}
	}
	took := time.Since(start)
	b.StopTimer()
	pprof.StopCPUProfile()
	r1, c1 := redisCPU(), selfCPU()
	if res.Committed < n {
		b.Fatalf("committed %d of %d subjects", res.Committed, n)
	}
	if ws, _ := st.ListWipes(ctx, 1); len(ws) != 0 {
		b.Fatal("the state refresh created deletions")
	}
	due := used()
	b.ReportMetric(float64(res.Processed)/took.Seconds(), "subjects/s")
	// CPU per subject does not depend on what else the machine runs.
	b.ReportMetric((r1-r0)*1e6/float64(res.Processed), "redis-cpu-µs/subject")
	b.ReportMetric(float64((c1-c0).Microseconds())/float64(res.Processed), "sweeper-cpu-µs/subject")
	b.ReportMetric(float64(due)/float64(n), "due-index-bytes/subject")
	if info, err := rc.Info(ctx, "memory").Result(); err == nil {
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
				f, _ := strconv.ParseFloat(v, 64)
				b.ReportMetric(f/float64(n), "redis-bytes/subject")
			}
		}
	}
	if os.Getenv("GDPRGATE_SWEEP_STATS") != "" {
		info, _ := rc.Info(ctx, "commandstats").Result()
		_ = os.WriteFile("/tmp/cmdstats.txt", []byte(info), 0o644)
	}
	// The floor, in the same run: the store reads alone (the snapshots of
	// every subject, 1000 per call), with no decision and no write.
	fr0 := redisCPU()
	floor := time.Now()
	for i := 0; i < n; i += batch {
		refs := make([]model.SubjectRef, 0, batch)
		for j := i; j < min(i+batch, n); j++ {
			refs = append(refs, model.SubjectRef{Entity: "contact", ID: fmt.Sprintf("c-%07d", j)})
		}
		if _, err := st.Snapshots(ctx, refs); err != nil {
			b.Fatal(err)
		}
	}
	floorRate := float64(n) / time.Since(floor).Seconds()
	b.ReportMetric((redisCPU()-fr0)*1e6/float64(n), "floor-redis-cpu-µs/subject")
	b.ReportMetric(floorRate, "floor-subjects/s")
	b.ReportMetric(float64(res.Processed)/took.Seconds()/floorRate, "ratio-to-floor")
	b.Logf("swept %d subjects (%d processed, %d by re-indexing) in %s", n, res.Processed, res.Recomputed, took.Round(time.Millisecond))
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
