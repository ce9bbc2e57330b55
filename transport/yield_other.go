//go:build !linux

package transport

import "runtime"

// Yield lets this process's other goroutines run.
func Yield() { runtime.Gosched() }
