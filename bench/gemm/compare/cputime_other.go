//go:build !linux

package main

import "time"

// threadCPU falls back to wall-clock seconds where the per-thread CPU
// clock (RUSAGE_THREAD, Linux) is not available, so the "per CPU-second"
// column equals the wall-clock rate there.
func threadCPU() float64 { return float64(time.Now().UnixNano()) / 1e9 }
