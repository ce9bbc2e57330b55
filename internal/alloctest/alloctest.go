package alloctest

import (
	"math"
	"runtime"
	"runtime/debug"
)

// Tolerance is the allocations per call a test of an allocation-free call
// allows (it fails at Tolerance or more): an allocation the call makes on
// every call shows 1 or more, one every other call 0.5. The runtime's own
// stay below it: a blocking channel receive or WaitGroup.Wait allocates a
// sudog now and then even with the collector off (0.005-0.055 per call
// for the collective's 4 KiB all-reduce, up to 0.25 per 2-thread training
// step in the best window, both under the race detector on a busy
// machine).
const Tolerance = 0.5

// PerCall returns the fewest allocations per call of f over windows
// windows of runs calls each, measured with the garbage collector off
// after warm calls of f (which size pools and caches), a collection, and
// warm more calls (which refill the runtime's caches the collection
// emptied). The collector setting is restored on return.
func PerCall(warm, runs, windows int, f func()) float64 {
	for i := 0; i < warm; i++ {
		f()
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	runtime.GC()
	for i := 0; i < warm; i++ {
		f()
	}
	best := math.Inf(1)
	for w := 0; w < windows; w++ {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := 0; i < runs; i++ {
			f()
		}
		runtime.ReadMemStats(&after)
		best = min(best, float64(after.Mallocs-before.Mallocs)/float64(runs))
		if best == 0 {
			break
		}
	}
	return best
}
