// Package alloctest measures a call's heap allocations in a way a busy
// machine cannot break: allocation tests in several packages use it
// instead of testing.AllocsPerRun.
//
// testing.AllocsPerRun counts every allocation the process makes while
// the call runs, rounded down to whole allocations per run. The Go runtime
// itself allocates now and then while goroutines park and migrate between
// Ps (a blocking channel operation or WaitGroup.Wait takes a sudog from a
// per-P cache, and refills it from the heap when a garbage collection has
// emptied it), so on a loaded machine a call that allocates nothing
// measured 2.0 per run in 5 runs. PerCall warms the call up, turns the
// collector off (a collection empties those caches), counts exact
// allocations over a few windows and keeps the best window; Tolerance is
// the per-call count at which a test fails: what one allocation made by
// the call every other call (0.5) or on every call (1.0) shows.
package alloctest
