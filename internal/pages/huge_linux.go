package pages

import "golang.org/x/sys/unix"

// huge asks for transparent huge pages on b, which is about to be
// rewritten whole: it then faults in 2 MiB at a time instead of 4 KiB.
// The faults, not the copy, were most of a ZeRO-3 gather's time (28 MiB
// into discarded pages at 1.1 GB/s, against 10 GB/s with huge pages).
// Advice only: where THP is off it changes nothing.
func huge(b []byte) { _ = unix.Madvise(b, unix.MADV_HUGEPAGE) }

// notHuge withdraws that advice from discarded pages, or the kernel's
// khugepaged would collapse them back into zero-filled huge pages and
// the memory handed back would be resident again.
func notHuge(b []byte) { _ = unix.Madvise(b, unix.MADV_NOHUGEPAGE) }
