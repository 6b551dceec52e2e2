package loadgen

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime/stime in /proc/PID/stat. Linux reports them in USER_HZ,
// which is 100 on every mainstream architecture regardless of the kernel's CONFIG_HZ;
// reading sysconf(_SC_CLK_TCK) would need cgo for a constant that does not change.
const clockTick = 10 * time.Millisecond

// ProcessCPU returns the user+system CPU time consumed so far by process pid (all its
// threads), or by this process when pid is 0.
func ProcessCPU(pid int) (time.Duration, error) {
	path := "/proc/self/stat"
	if pid > 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/stat"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return parseStatCPU(string(b))
}

// parseStatCPU extracts utime+stime (fields 14 and 15) from a /proc/PID/stat line. The
// command name (field 2) may contain spaces and parentheses, so fields are counted from
// the last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat line %q", stat)
	}
	// After ')' come field 3 (state) onwards; utime is field 14, i.e. index 11 here.
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("stat line has %d fields after the command, want at least 13", len(f))
	}
	ut, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime %q: %w", f[11], err)
	}
	st, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime %q: %w", f[12], err)
	}
	return time.Duration(ut+st) * clockTick, nil
}

// PeakRSS returns process pid's peak resident set size (VmHWM in
// /proc/PID/status) in bytes.
func PeakRSS(pid int) (int64, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/status"
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "VmHWM:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%s: unexpected VmHWM line %q", path, line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: VmHWM %q: %w", path, f[0], err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("%s: no VmHWM line", path)
}

// ResetPeakRSS starts process pid's VmHWM afresh from its current resident
// set (writing 5 to /proc/PID/clear_refs, Linux 4.0 and later), so that a
// run reports its own peak rather than the process's lifetime one. It needs
// the right to write that file (the process's owner, or root).
func ResetPeakRSS(pid int) error {
	path := "/proc/" + strconv.Itoa(pid) + "/clear_refs"
	if err := os.WriteFile(path, []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak RSS: %w", err)
	}
	return nil
}
