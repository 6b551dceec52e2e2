package loadgen

import (
	"fmt"
	"io"
	"time"
)

// Format writes the report for people.
func (r *Report) Format(w io.Writer) error {
	_, err := fmt.Fprintf(w, `requests    %d (allowed %d, denied %d, errors %d)
elapsed     %s
throughput  %.0f req/s
latency     p50 %s  p90 %s  p99 %s  max %s
`, r.Requests, r.Allowed, r.Denied, r.Errors, r.Elapsed.Round(time.Millisecond), r.Throughput,
		us(r.P50), us(r.P90), us(r.P99), us(r.Max))
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if r.ServerCPU > 0 || r.ServerCPUPerRequest > 0 {
		if _, err := fmt.Fprintf(w, "server CPU  %s total, %.1f µs/request (±%.1f µs: /proc ticks are %s)\n",
			r.ServerCPU, r.ServerCPUPerRequest, float64(r.CPUTick.Microseconds())/float64(max(r.Requests, 1)), r.CPUTick); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	if r.ClientCPUPerRequest > 0 {
		if _, err := fmt.Fprintf(w, "client CPU  %.1f µs/request (the generator's own share of the cores)\n", r.ClientCPUPerRequest); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	if r.Bytes > 0 {
		if _, err := fmt.Fprintf(w, "answers     %d bytes, %.1f MB/s", r.Bytes, r.MBps); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		if r.MBPerServerCPUSecond > 0 {
			if _, err := fmt.Fprintf(w, ", %.1f MB per second of server CPU", r.MBPerServerCPUSecond); err != nil {
				return fmt.Errorf("write report: %w", err)
			}
		}
		if _, err := fmt.Fprintln(w); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	if r.ServerPeakRSS > 0 {
		if _, err := fmt.Fprintf(w, "server RSS  peak %.1f MiB (VmHWM)\n", float64(r.ServerPeakRSS)/(1<<20)); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	for _, s := range r.ErrorSamples {
		if _, err := fmt.Fprintf(w, "error       %s\n", s); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	return nil
}

func us(d time.Duration) string {
	return fmt.Sprintf("%.0fµs", float64(d.Nanoseconds())/1e3)
}
