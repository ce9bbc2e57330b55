package pages

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// rssBytes reads the resident set size of this process (Linux only).
func rssBytes(t *testing.T) int64 {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skip("no /proc/self/statm")
	}
	f := strings.Fields(string(raw))
	n, _ := strconv.ParseInt(f[1], 10, 64)
	return n * int64(os.Getpagesize())
}

func TestDiscardKeepsNeighbours(t *testing.T) {
	const n = 10000
	s, err := Alloc[float32](n)
	if err != nil {
		t.Fatal(err)
	}
	for i := range s {
		s[i] = float32(i + 1)
	}
	lo, hi := 1000, 7000
	if err := Discard(s, lo, hi); err != nil {
		t.Fatal(err)
	}
	for i := range s {
		if (i < lo || i >= hi) && s[i] != float32(i+1) {
			t.Fatalf("element %d outside the discarded range changed to %v", i, s[i])
		}
	}
	// written again, the range holds what was written
	for i := lo; i < hi; i++ {
		s[i] = -1
	}
	if s[lo] != -1 || s[hi-1] != -1 {
		t.Fatal("rewrite lost")
	}
}

func TestDiscardReturnsMemory(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("RSS is read from /proc")
	}
	const n = 64 << 20 / 4 // 64 MiB
	s, err := Alloc[float32](n)
	if err != nil {
		t.Fatal(err)
	}
	before := rssBytes(t)
	for i := range s {
		s[i] = 1
	}
	touched := rssBytes(t)
	if err := Free(s); err != nil {
		t.Fatal(err)
	}
	after := rssBytes(t)
	// 64 MiB in and out; other allocations of the test binary move RSS by
	// far less than half of it
	if touched-before < 48<<20 {
		t.Fatalf("writing 64 MiB raised RSS by only %d bytes", touched-before)
	}
	if touched-after < 48<<20 {
		t.Fatalf("discarding 64 MiB lowered RSS by only %d bytes", touched-after)
	}
	if s[0] != 0 || s[n-1] != 0 {
		t.Fatalf("discarded pages read %v, %v; Linux gives zeros", s[0], s[n-1])
	}
}

func TestUint16(t *testing.T) {
	// 5000 uint16 are 10000 bytes from a page boundary: two whole pages
	// (elements 0..4095) and a partial one (4096..4999), which Discard keeps
	s, err := Alloc[uint16](5000)
	if err != nil {
		t.Fatal(err)
	}
	for i := range s {
		s[i] = uint16(i)
	}
	if err := Discard(s, 0, 5000); err != nil {
		t.Fatal(err)
	}
	if s[4999] != 4999 || s[4096] != 4096 {
		t.Fatalf("the partial last page changed: %d %d", s[4096], s[4999])
	}
	if runtime.GOOS == "linux" && os.Getpagesize() == 4096 && s[2047] != 0 {
		t.Fatalf("a whole page was kept: %d", s[2047])
	}
}
