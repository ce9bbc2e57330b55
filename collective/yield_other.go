//go:build !linux

package collective

import "runtime"

// yield lets this process's other goroutines run.
func yield() { runtime.Gosched() }
