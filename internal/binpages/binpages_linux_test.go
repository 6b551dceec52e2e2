package binpages

import (
	"crypto/sha256"
	"debug/elf"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"unicode"
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
		{"short line", "00400000-01a17000 r-xp", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, ok := readOnlyMapping(tc.line, exe)
			if ok != tc.ok {
				t.Fatalf("readOnlyMapping(%q) ok=%v, want %v", tc.line, ok, tc.ok)
			}
		})
	}
	s, e, _ := readOnlyMapping("00400000-01a17000 r-xp 00000000 fd:01 123 /usr/bin/gdprgate", exe)
	if s != 0x400000 || e != 0x1a17000 {
		t.Fatalf("range %x-%x", s, e)
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
	n, err := Release()
	if errors.Is(err, ErrUnsupported) {
		t.Skipf("this test binary is not one Release works on: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no mapping of the executable was released")
	}
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
