package loadgen

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// workload is the bounded, measured loop every kind of run shares: Warmup
// calls first, then Requests calls from Concurrency goroutines, stopped by
// Duration, with the server's CPU time read around the measured part.
type workload struct {
	Concurrency, Requests int
	Duration, Timeout     time.Duration
	Warmup                int
	ServerPID             int
}

func (c *workload) normalise() error {
	if c.Concurrency <= 0 {
		c.Concurrency = 32
	}
	if c.Concurrency > MaxConcurrency {
		return fmt.Errorf("concurrency %d is above the limit of %d", c.Concurrency, MaxConcurrency)
	}
	if c.Requests <= 0 {
		c.Requests = 20000
	}
	if c.Requests > MaxRequests {
		return fmt.Errorf("requests %d is above the limit of %d", c.Requests, MaxRequests)
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Duration > MaxDuration {
		c.Duration = MaxDuration
	}
	if c.Warmup < 0 || c.Warmup > MaxRequests {
		return fmt.Errorf("warmup %d out of range", c.Warmup)
	}
	if c.Timeout <= 0 {
		c.Timeout = time.Second
	}
	return nil
}

// call makes one measured request: worker w's i-th. It reports whether the
// answer was the ordinary one (an allow, a 2xx) and how many answer bytes
// came back.
type call func(ctx context.Context, w int, i int64) (ok bool, bytes int64, err error)

func (c workload) run(ctx context.Context, do call) (*Report, error) {
	if err := c.normalise(); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	for i := 0; i < c.Warmup; i++ {
		cctx, cancel := context.WithTimeout(ctx, c.Timeout)
		_, _, _ = do(cctx, 0, int64(i))
		cancel()
	}

	var serverBefore time.Duration
	if c.ServerPID > 0 {
		v, err := ProcessCPU(c.ServerPID)
		if err != nil {
			return nil, fmt.Errorf("loadgen: server CPU: %w", err)
		}
		serverBefore = v
	}
	clientBefore, clientErr := ProcessCPU(0)

	runCtx, stop := context.WithTimeout(ctx, c.Duration)
	defer stop()
	var (
		issued  atomic.Int64
		allowed atomic.Int64
		denied  atomic.Int64
		errs    atomic.Int64
		bytes   atomic.Int64
		mu      sync.Mutex
		samples []string
		lats    = make([][]time.Duration, c.Concurrency)
		wg      sync.WaitGroup
	)
	perWorker := c.Requests/c.Concurrency + 1
	start := time.Now()
	for w := 0; w < c.Concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			local := make([]time.Duration, 0, perWorker)
			for runCtx.Err() == nil {
				i := issued.Add(1) - 1
				if i >= int64(c.Requests) {
					break
				}
				// In-flight calls are not cancelled by the run's end: a cut-off call
				// would count as an error that the server did not make.
				cctx, cancel := context.WithTimeout(ctx, c.Timeout)
				t0 := time.Now()
				ok, n, err := do(cctx, w, i+int64(c.Warmup))
				local = append(local, time.Since(t0))
				cancel()
				bytes.Add(n)
				switch {
				case err != nil:
					errs.Add(1)
					mu.Lock()
					if len(samples) < 5 && !slices.Contains(samples, err.Error()) {
						samples = append(samples, err.Error())
					}
					mu.Unlock()
				case ok:
					allowed.Add(1)
				default:
					denied.Add(1)
				}
			}
			lats[w] = local
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)

	rep := &Report{
		Allowed: allowed.Load(), Denied: denied.Load(), Errors: errs.Load(),
		ErrorSamples: samples, Elapsed: elapsed, CPUTick: clockTick, Bytes: bytes.Load(),
	}
	for _, l := range lats {
		rep.lats = append(rep.lats, l...)
	}
	if c.ServerPID > 0 {
		after, err := ProcessCPU(c.ServerPID)
		if err != nil {
			return rep, fmt.Errorf("loadgen: server CPU after the run: %w", err)
		}
		rep.ServerCPU = after - serverBefore
	}
	var clientCPU time.Duration
	if clientErr == nil {
		if after, err := ProcessCPU(0); err == nil {
			clientCPU = after - clientBefore
		}
	}
	rep.finish(clientCPU)
	return rep, nil
}

// finish computes the derived figures from the counts, the samples and
// the CPU times.
func (r *Report) finish(clientCPU time.Duration) {
	r.Requests = r.Allowed + r.Denied + r.Errors
	if r.Elapsed > 0 {
		r.Throughput = float64(r.Requests) / r.Elapsed.Seconds()
		r.MBps = float64(r.Bytes) / 1e6 / r.Elapsed.Seconds()
	}
	slices.Sort(r.lats)
	r.P50, r.P90, r.P99 = quantile(r.lats, 0.50), quantile(r.lats, 0.90), quantile(r.lats, 0.99)
	r.Max = 0
	if len(r.lats) > 0 {
		r.Max = r.lats[len(r.lats)-1]
	}
	if r.Requests > 0 {
		r.ServerCPUPerRequest = float64(r.ServerCPU.Nanoseconds()) / 1e3 / float64(r.Requests)
		if clientCPU > 0 {
			r.ClientCPUPerRequest = float64(clientCPU.Nanoseconds()) / 1e3 / float64(r.Requests)
		}
	}
	if r.ServerCPU > 0 {
		r.MBPerServerCPUSecond = float64(r.Bytes) / 1e6 / r.ServerCPU.Seconds()
	}
}

// Merge adds another run's counts and samples to r (rounds of one
// interleaved comparison).
func (r *Report) Merge(o *Report) {
	clientCPU := time.Duration(r.ClientCPUPerRequest*float64(r.Requests)*1e3) + time.Duration(o.ClientCPUPerRequest*float64(o.Requests)*1e3)
	r.Allowed += o.Allowed
	r.Denied += o.Denied
	r.Errors += o.Errors
	for _, s := range o.ErrorSamples {
		if len(r.ErrorSamples) < 5 && !slices.Contains(r.ErrorSamples, s) {
			r.ErrorSamples = append(r.ErrorSamples, s)
		}
	}
	r.Elapsed += o.Elapsed
	r.ServerCPU += o.ServerCPU
	r.Bytes += o.Bytes
	r.CPUTick = o.CPUTick
	r.ServerPeakRSS = max(r.ServerPeakRSS, o.ServerPeakRSS)
	r.lats = append(r.lats, o.lats...)
	r.finish(clientCPU)
}

// Interleave runs candidate and baseline alternately, rounds times each,
// and returns each side's merged report: on a shared, noisy machine only
// figures taken in the same stretch of time compare.
func Interleave(ctx context.Context, rounds int, candidate, baseline func(ctx context.Context, round int) (*Report, error)) (cand, base *Report, err error) {
	if rounds <= 0 {
		rounds = 1
	}
	for k := range rounds {
		c, err := candidate(ctx, k)
		if err != nil {
			return nil, nil, fmt.Errorf("round %d, candidate: %w", k+1, err)
		}
		b, err := baseline(ctx, k)
		if err != nil {
			return nil, nil, fmt.Errorf("round %d, baseline: %w", k+1, err)
		}
		if cand == nil {
			cand, base = c, b
			continue
		}
		cand.Merge(c)
		base.Merge(b)
	}
	return cand, base, nil
}
