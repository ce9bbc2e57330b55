//go:build !linux

package tcp

import "runtime"

// osYield lets other goroutines run. Without sched_yield (Linux only here)
// this is the best a spinner can do; spinning is bounded by its adaptive
// budget either way.
func osYield() { runtime.Gosched() }

// readable reports every descriptor as readable where ppoll is not used:
// a spinning receive then parks at once and the reader goroutine delivers
// the message, the behaviour without spinning.
func readable(fd int) bool { return true }
