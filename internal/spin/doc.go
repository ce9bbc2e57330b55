// Package spin holds the short busy-waits of the compute worker pools
// (gemm's team, the model's split and attention pool).
//
// A goroutine that parks on a channel or a WaitGroup and is woken a few
// microseconds later pays for it twice on a VM: the futex round trip and,
// when its CPU went idle meanwhile, the idle vCPU's wake-up, tens of
// microseconds here. Training runs thousands of parallel sections per step
// (every GEMM, every split layer), each a few hundred microseconds to a
// few milliseconds long, so OpenMP-style runtimes spin for a while before
// they block; these helpers do the same, with a budget after which they
// block as usual so that an idle pool costs nothing.
package spin
