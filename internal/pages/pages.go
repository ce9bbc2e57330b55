package pages

import (
	"fmt"
	"os"
	"unsafe"
)

// PageSize is the operating system's page size in bytes.
var pageSize = os.Getpagesize()

// Alloc maps n zero elements of E. The memory is not resident until
// written. Element types are plain numbers (float32, uint16): the garbage
// collector never scans this memory.
func Alloc[E float32 | uint16](n int) ([]E, error) {
	if n == 0 {
		return nil, nil
	}
	var e E
	b, err := mmap(n * int(unsafe.Sizeof(e)))
	if err != nil {
		return nil, fmt.Errorf("pages: mapping %d bytes: %w", n*int(unsafe.Sizeof(e)), err)
	}
	return unsafe.Slice((*E)(unsafe.Pointer(unsafe.SliceData(b))), n), nil
}

// Discard returns to the kernel every page lying entirely inside s[lo:hi];
// their contents become undefined (zero on Linux). Pages shared with
// elements outside the range keep their contents, so neighbouring ranges
// can be discarded independently. s may be any slice, mapped by Alloc or
// not; callers only discard memory nobody reads before rewriting.
func Discard[E float32 | uint16](s []E, lo, hi int) error {
	b := inner(s, lo, hi)
	if b == nil {
		return nil
	}
	if err := dontNeed(b); err != nil {
		return fmt.Errorf("pages: discarding %d bytes: %w", len(b), err)
	}
	return nil
}

// inner is the bytes of the pages lying entirely inside s[lo:hi], or nil.
func inner[E float32 | uint16](s []E, lo, hi int) []byte {
	if hi <= lo {
		return nil
	}
	var e E
	sz := int(unsafe.Sizeof(e))
	base := unsafe.Pointer(unsafe.SliceData(s))
	// page-aligned [first, last) inside the range, as offsets from base
	ps := uintptr(pageSize)
	at := uintptr(base)
	start, end := at+uintptr(lo*sz), at+uintptr(hi*sz)
	first := (start + ps - 1) &^ (ps - 1)
	last := end &^ (ps - 1)
	if last <= first {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Add(base, first-at)), last-first)
}

// Prepare says s[lo:hi] is about to be written whole (a gather into
// discarded pages): on Linux it may then fault in as transparent huge
// pages, ten times faster than page by page. The next Discard withdraws
// the advice. Only pages entirely inside the range are advised.
func Prepare[E float32 | uint16](s []E, lo, hi int) {
	if b := inner(s, lo, hi); b != nil {
		huge(b)
	}
}

// Free discards all of s (see Discard).
func Free[E float32 | uint16](s []E) error { return Discard(s, 0, len(s)) }
