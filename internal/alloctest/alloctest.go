package alloctest

import (
	"math"
	"runtime"
	"runtime/debug"
)

// Tolerance is the allocations per call a test of an allocation-free call
// allows: the runtime's occasional allocations stay well below it (the
// collective's 4 KiB all-reduce measured 0.005-0.055 per call under the
// race detector), an allocation the call makes every call or every other
// call reaches 0.5 or more.
const Tolerance = 0.25

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
