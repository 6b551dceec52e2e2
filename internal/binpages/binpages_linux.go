package binpages

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// Release drops the executable's read-only mappings (code, read-only data)
// from the resident set with madvise(MADV_DONTNEED). The pages stay in the
// page cache: the next read of one is a minor fault that maps it again. A
// private mapping that was never written holds nothing but the file's
// bytes, so this changes no content; writable mappings (.data, .bss) are
// left alone, since DONTNEED would reset them to the file's contents. It
// returns the bytes advised.
//
// It releases nothing (ErrUnsupported) from an executable the dynamic
// loader may have written into (see relocatable): there a read-only
// mapping can hold relocated pointers that DONTNEED would reset.
func Release() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("binpages: %w", err)
	}
	f, err := elf.Open("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("binpages: %w", err)
	}
	err = relocatable(f)
	f.Close()
	if err != nil {
		return 0, err
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("binpages: %w", err)
	}
	var total int64
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		start, end, ok := readOnlyMapping(sc.Text(), exe)
		if !ok {
			continue
		}
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, start, end-start, syscall.MADV_DONTNEED); e != 0 {
			return total, fmt.Errorf("binpages: madvise %x-%x: %w", start, end, e)
		}
		total += int64(end - start)
	}
	if err := sc.Err(); err != nil {
		return total, fmt.Errorf("binpages: %w", err)
	}
	return total, nil
}

// readOnlyMapping reads one line of /proc/self/maps
// ("start-end perms offset dev inode path") and reports the range of a
// private, non-writable mapping of exe.
func readOnlyMapping(line, exe string) (start, end uintptr, ok bool) {
	f := bytes.Fields([]byte(line))
	if len(f) < 6 || string(f[5]) != exe || len(f) > 6 {
		return 0, 0, false
	}
	perms := f[1]
	if len(perms) != 4 || perms[1] == 'w' || perms[3] != 'p' {
		return 0, 0, false
	}
	lo, hi, found := bytes.Cut(f[0], []byte("-"))
	if !found {
		return 0, 0, false
	}
	s, err1 := strconv.ParseUint(string(lo), 16, 64)
	e, err2 := strconv.ParseUint(string(hi), 16, 64)
	if err1 != nil || err2 != nil || e <= s {
		return 0, 0, false
	}
	return uintptr(s), uintptr(e), true
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
