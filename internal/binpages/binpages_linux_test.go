package binpages

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unicode"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestReadOnlyMappingPicksOnlyPrivateReadOnlyMappingsOfTheExecutable(t *testing.T) {
	const exe = "/usr/bin/gdprgate"
	for _, tc := range []struct {
		name, line string
		ok         bool
	}{
		{"code", "00400000-01a17000 r-xp 00000000 fd:01 123 /usr/bin/gdprgate", true},
		{"read-only data", "01a17000-035ed000 r--p 01617000 fd:01 123 /usr/bin/gdprgate", true},
		{"writable data is left: DONTNEED would reset it to the file", "035ed000-037d0000 rw-p 031ed000 fd:01 123 /usr/bin/gdprgate", false},
		{"shared mapping", "00400000-01a17000 r--s 00000000 fd:01 123 /usr/bin/gdprgate", false},
		{"another file", "7f960d5a7000-7f960d6fd000 r-xp 00028000 fd:01 9 /usr/lib/x86_64-linux-gnu/libc.so.6", false},
		{"anonymous", "b91ed000000-b91eec00000 rw-p 00000000 00:00 0", false},
		{"binary replaced since start", "00400000-01a17000 r-xp 00000000 fd:01 123 /usr/bin/gdprgate (deleted)", false},
		{"path with a space", "00400000-01a17000 r-xp 00000000 fd:01 123 /usr/bin/gdprgate x", false},
		{"empty range", "00400000-00400000 r-xp 00000000 fd:01 123 /usr/bin/gdprgate", false},
		{"bad address", "0040000g-01a17000 r-xp 00000000 fd:01 123 /usr/bin/gdprgate", false},
		{"bad offset", "00400000-01a17000 r-xp 0000000x fd:01 123 /usr/bin/gdprgate", false},
		{"short line", "00400000-01a17000 r-xp", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ok := readOnlyMapping(tc.line, exe)
			if ok != tc.ok {
				t.Fatalf("readOnlyMapping(%q) ok=%v, want %v", tc.line, ok, tc.ok)
			}
		})
	}
	m, _ := readOnlyMapping("01a17000-035ed000 r--p 01617000 fd:01 123 /usr/bin/gdprgate", exe)
	if m != (mapping{start: 0x1a17000, end: 0x35ed000, offset: 0x1617000}) {
		t.Fatalf("mapping %+v", m)
	}
}

// letters reads the unicode package's tables, static data of the binary.
func letters() []byte {
	var b strings.Builder
	for r := rune(0); r < 0x3000; r++ {
		if unicode.IsLetter(r) {
			b.WriteRune(unicode.ToUpper(r))
		}
	}
	return []byte(b.String())
}

func TestReleaseDropsFilePagesAndKeepsTheirContent(t *testing.T) {
	before := rssFile(t)
	sumBefore := sha256.Sum256(letters())
	n := releaseOrSkip(t, true)
	after := rssFile(t)
	// Code and data come back on use, unchanged.
	if got := sha256.Sum256(letters()); got != sumBefore {
		t.Fatal("static data read differently after Release")
	}
	if _, err := strconv.Atoi("12345"); err != nil {
		t.Fatal(err)
	}
	t.Logf("released %d bytes of mappings; RssFile %d kB before, %d kB just after", n, before, after)
	if after >= before {
		t.Fatalf("RssFile %d kB after Release, %d kB before", after, before)
	}
}

func rssFile(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

func TestRelocatableExecutablesAreLeftAlone(t *testing.T) {
	load := &elf.Prog{ProgHeader: elf.ProgHeader{Type: elf.PT_LOAD, Flags: elf.PF_R}}
	relro := &elf.Prog{ProgHeader: elf.ProgHeader{Type: elf.PT_GNU_RELRO, Flags: elf.PF_R}}
	for _, tc := range []struct {
		name  string
		typ   elf.Type
		progs []*elf.Prog
		ok    bool
	}{
		{"Go's default executable", elf.ET_EXEC, []*elf.Prog{load}, true},
		{"position-independent (-buildmode=pie): the loader relocates read-only data", elf.ET_DYN, []*elf.Prog{load}, false},
		{"RELRO: written by the loader, then made read-only", elf.ET_EXEC, []*elf.Prog{load, relro}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &elf.File{FileHeader: elf.FileHeader{Type: tc.typ}, Progs: tc.progs}
			err := relocatable(f)
			if (err == nil) != tc.ok {
				t.Fatalf("relocatable = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v is not ErrUnsupported (serve would warn instead of skipping quietly)", err)
			}
		})
	}
}

// exeMappings reads the executable's mappings from /proc/self/smaps: its
// permissions, address range and VmFlags.
type smapsEntry struct {
	perms, flags string
	start, end   uintptr
}

func exeMappings(t *testing.T) []smapsEntry {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	var out []smapsEntry
	var cur *smapsEntry
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "VmFlags:"); ok {
			if cur != nil {
				cur.flags = " " + strings.TrimSpace(rest) + " "
				out = append(out, *cur)
				cur = nil
			}
			continue
		}
		if strings.HasSuffix(f[0], ":") {
			continue
		}
		cur = nil
		if len(f) == 6 && f[5] == exe {
			lo, hi, _ := strings.Cut(f[0], "-")
			s, _ := strconv.ParseUint(lo, 16, 64)
			e, _ := strconv.ParseUint(hi, 16, 64)
			cur = &smapsEntry{perms: f[1], start: uintptr(s), end: uintptr(e)}
		}
	}
	if len(out) == 0 {
		t.Fatal("no mapping of the executable in /proc/self/smaps")
	}
	return out
}

// releaseOrSkip runs Release(evict) and checks that it released
// something; it skips a test binary Release refuses.
func releaseOrSkip(t *testing.T, evict bool) int64 {
	t.Helper()
	n, err := Release(evict)
	if errors.Is(err, ErrUnsupported) {
		t.Skipf("this test binary is not one Release works on: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no mapping of the executable was released")
	}
	return n
}

func TestReleaseAdvisesRandomOnlyTheMappingsItReleases(t *testing.T) {
	releaseOrSkip(t, true)
	var readOnly int
	for _, m := range exeMappings(t) {
		random := strings.Contains(m.flags, " rr ")
		released := m.perms[1] != 'w' && m.perms[3] == 'p'
		if released {
			readOnly++
		}
		if random != released {
			t.Errorf("mapping %x-%x %s: MADV_RANDOM (VmFlags rr) %v, want %v (flags%s)", m.start, m.end, m.perms, random, released, m.flags)
		}
	}
	if readOnly == 0 {
		t.Fatal("the executable has no read-only mapping to check")
	}
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	if n, want := strings.Count(string(b), " rr "), readOnly; n != want {
		t.Fatalf("%d mappings carry MADV_RANDOM, want the executable's %d read-only ones", n, want)
	}
}

func TestReleaseEvictsTheReleasedPagesFromThePageCache(t *testing.T) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(exe, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC || fs.Type == unix.RAMFS_MAGIC {
		t.Skip("the executable is in memory (tmpfs/ramfs): its pages cannot be evicted")
	}
	// The state after a start from disk: the whole file cached, clean. (A
	// test binary the linker has just written may still be dirty, and
	// the page cache keeps dirty pages.)
	f, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if b, err := os.ReadFile(exe); err != nil || len(b) == 0 {
		t.Fatalf("reading the executable: %v", err)
	}
	var ro []smapsEntry
	for _, m := range exeMappings(t) {
		if m.perms[1] != 'w' {
			ro = append(ro, m)
		}
	}
	before := cachedPages(t, ro)
	releaseOrSkip(t, true)
	after := cachedPages(t, ro)
	t.Logf("pages of the read-only mappings in the page cache: %d before Release, %d after", before, after)
	// The folios holding the code that runs Release and this test stay
	// mapped, hence cached: in this small binary that is about half of
	// it (in gdprgate's 75 MB, a few MiB), so ask for a quarter evicted.
	// Without the eviction none would be.
	if after*4 > before*3 {
		t.Fatalf("%d of %d cached pages still cached after Release", after, before)
	}
}

// cachedPages counts the pages of the ranges in the page cache (mincore).
func cachedPages(t *testing.T, ms []smapsEntry) int {
	t.Helper()
	page := uintptr(os.Getpagesize())
	n := 0
	for _, m := range ms {
		vec := make([]byte, (m.end-m.start+page-1)/page)
		if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, m.start, m.end-m.start, uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			t.Fatalf("mincore %x-%x: %v", m.start, m.end, e)
		}
		for _, v := range vec {
			n += int(v & 1)
		}
	}
	return n
}

// dropOnlyEnv makes the test binary run TestReleaseWithoutEvictionInAChild.
const dropOnlyEnv = "BINPAGES_TEST_DROP_ONLY"

// TestReleaseWithoutEvictionInAChild is the child of
// TestReleaseWithoutEvictionLeavesTheMappingsAsTheyWere: a fresh process,
// since MADV_RANDOM, once set by another test here, stays.
func TestReleaseWithoutEvictionInAChild(t *testing.T) {
	if os.Getenv(dropOnlyEnv) == "" {
		t.Skip("run by TestReleaseWithoutEvictionLeavesTheMappingsAsTheyWere")
	}
	sum := sha256.Sum256(letters())
	releaseOrSkip(t, false)
	if sha256.Sum256(letters()) != sum {
		t.Fatal("static data changed")
	}
	for _, m := range exeMappings(t) {
		if strings.Contains(m.flags, " rr ") {
			t.Errorf("mapping %x-%x %s carries MADV_RANDOM after Release(false)", m.start, m.end, m.perms)
		}
	}
}

// TestReleaseWithoutEvictionLeavesTheMappingsAsTheyWere: with eviction
// off (limits.release_binary_pages: drop) Release drops the pages from the
// resident set and nothing else: no advice on the mappings.
func TestReleaseWithoutEvictionLeavesTheMappingsAsTheyWere(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^TestReleaseWithoutEvictionInAChild$", "-test.v")
	cmd.Env = append(os.Environ(), dropOnlyEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("--- PASS: TestReleaseWithoutEvictionInAChild")) &&
		!bytes.Contains(out, []byte("--- SKIP: TestReleaseWithoutEvictionInAChild")) {
		t.Fatalf("child ran no test:\n%s", out)
	}
	t.Logf("%s", out)
}
