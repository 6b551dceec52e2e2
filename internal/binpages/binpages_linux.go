package binpages

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Release drops the executable's read-only mappings (code, read-only data)
// from the resident set with madvise(MADV_DONTNEED). A private mapping that
// was never written holds nothing but the file's bytes, so this changes no
// content; writable mappings (.data, .bss) are left alone, since DONTNEED
// would reset them to the file's contents. It returns the bytes advised.
//
// What comes back afterwards depends on how the page cache holds the file.
// Linux 6.18 maps a whole large folio on a fault, and maps the cached
// pages around the faulting one (fault-around), whatever the mapping's
// advice; a binary whose file was read whole (by exec from disk, a copy, a
// scan) sits in the cache in large folios, so touching one page of it mapped
// up to hundreds of KiB again. So Release also marks the mappings
// MADV_RANDOM (a fault reads the page it needs, no read-around) and, 2 MiB
// at a time right after dropping them, asks the kernel to drop those file
// pages from the page cache (posix_fadvise(POSIX_FADV_DONTNEED), which
// skips pages any process still maps). A page used later is read again
// from the file as a page of its own: a major fault the first time, then
// mapped alone. The cost is those reads on the first exchanges after start.
//
// With evict false it only drops the mappings (no advice, no eviction):
// pages come back from the page cache as it holds them, as minor faults,
// so the first exchanges read no file but more of the binary returns.
//
// It releases nothing (ErrUnsupported) from an executable the dynamic
// loader may have written into (see relocatable): there a read-only
// mapping can hold relocated pointers that DONTNEED would reset.
func Release(evict bool) (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("binpages: %w", err)
	}
	// One open file for the header check and the eviction: the same
	// executable whatever happens to its path meanwhile.
	exeFile, err := os.Open("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("binpages: %w", err)
	}
	defer exeFile.Close()
	f, err := elf.NewFile(exeFile)
	if err != nil {
		return 0, fmt.Errorf("binpages: %w", err)
	}
	if err := relocatable(f); err != nil {
		return 0, err
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("binpages: %w", err)
	}
	var ms []mapping
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		if m, ok := readOnlyMapping(sc.Text(), exe); ok {
			ms = append(ms, m)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("binpages: %w", err)
	}
	// Advice first: a fault between the drop and the eviction must not
	// read around.
	for _, m := range ms {
		if evict {
			if err := madvise(m.start, m.end-m.start, syscall.MADV_RANDOM); err != nil {
				return 0, err
			}
		}
	}
	fd := int(exeFile.Fd())
	var total int64
	var fadviseErr error
	evictRange := func(off, n uintptr) {
		if !evict {
			return
		}
		if err := unix.Fadvise(fd, int64(off), int64(n), unix.FADV_DONTNEED); err != nil && fadviseErr == nil {
			fadviseErr = fmt.Errorf("binpages: posix_fadvise %x+%x: %w", off, n, err)
		}
	}
	for _, m := range ms {
		// Steps aligned in the file, as the page cache's folios are
		// (up to 2 MiB): the kernel evicts only folios wholly inside
		// the range it is given, and only those no process maps.
		for off := m.offset; off < m.offset+(m.end-m.start); {
			next := min((off+evictStep)&^(evictStep-1), m.offset+(m.end-m.start))
			start := m.start + (off - m.offset)
			if err := madvise(start, next-off, syscall.MADV_DONTNEED); err != nil {
				return total, err
			}
			total += int64(next - off)
			// Right after the drop, so that as few of these pages as
			// possible are mapped again (by another goroutine) and kept.
			evictRange(off, next-off)
			off = next
		}
	}
	// Once more over all of them, for the folios that straddle two
	// mappings: the first was not yet dropped when its neighbour's
	// pages were evicted.
	if len(ms) > 0 {
		lo, hi := ms[0].offset, ms[0].offset+(ms[0].end-ms[0].start)
		for _, m := range ms[1:] {
			lo, hi = min(lo, m.offset), max(hi, m.offset+(m.end-m.start))
		}
		evictRange(lo, hi-lo)
	}
	// The pages are dropped from the resident set either way; a file
	// system that cannot evict only leaves them cached as they were.
	return total, fadviseErr
}

// evictStep is how much Release drops and evicts at once: the largest
// folio the page cache makes on x86-64 and arm64 with 4 KiB pages (a PMD).
const evictStep = 2 << 20

func madvise(start, length uintptr, advice int) error {
	if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, start, length, uintptr(advice)); e != 0 {
		return fmt.Errorf("binpages: madvise(%d) %x+%x: %w", advice, start, length, e)
	}
	return nil
}

// mapping is one line of /proc/self/maps: the address range and the file
// offset it maps from.
type mapping struct {
	start, end, offset uintptr
}

// readOnlyMapping reads one line of /proc/self/maps
// ("start-end perms offset dev inode path") and reports the range of a
// private, non-writable mapping of exe and its offset in the file.
func readOnlyMapping(line, exe string) (m mapping, ok bool) {
	f := bytes.Fields([]byte(line))
	if len(f) < 6 || string(f[5]) != exe || len(f) > 6 {
		return mapping{}, false
	}
	perms := f[1]
	if len(perms) != 4 || perms[1] == 'w' || perms[3] != 'p' {
		return mapping{}, false
	}
	lo, hi, found := bytes.Cut(f[0], []byte("-"))
	if !found {
		return mapping{}, false
	}
	s, err1 := strconv.ParseUint(string(lo), 16, 64)
	e, err2 := strconv.ParseUint(string(hi), 16, 64)
	o, err3 := strconv.ParseUint(string(f[2]), 16, 64)
	if err1 != nil || err2 != nil || err3 != nil || e <= s {
		return mapping{}, false
	}
	return mapping{uintptr(s), uintptr(e), uintptr(o)}, true
}

// relocatable refuses an executable whose read-only pages may differ from
// its file: a position-independent one (ELF type DYN, as -buildmode=pie
// builds), whose loader relocates pointers in read-only data, and any with
// a GNU_RELRO segment, which the loader writes and then makes read-only —
// it shows as "r--p" in /proc/self/maps like code. Go's default
// executable on Linux is neither.
func relocatable(f *elf.File) error {
	if f.Type != elf.ET_EXEC {
		return fmt.Errorf("%w: a position-independent executable (ELF type %v)", ErrUnsupported, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_GNU_RELRO {
			return fmt.Errorf("%w: the executable has a GNU_RELRO segment", ErrUnsupported)
		}
	}
	return nil
}
