package spin

import (
	"runtime"
	"sync/atomic"
	"time"
)

// The budgets the compute pools use. A worker that finished a job polls
// for the next one for WorkerBudget: a training step's parallel sections
// follow each other within tens of microseconds. A caller waits for its
// workers for up to CallerBudget (sections last 0.1-3 ms), yielding every
// CallerYield.
const (
	WorkerBudget = 300 * time.Microsecond
	CallerBudget = 2 * time.Millisecond
	CallerYield  = 500 * time.Microsecond
)

// Receive returns the next value from ch. It polls ch for up to budget,
// yielding the processor between polls (a goroutine that needs it, such as
// a job's other worker, runs meanwhile), then blocks. ok is false once ch
// is closed and drained.
func Receive[T any](ch <-chan T, budget time.Duration) (v T, ok bool) {
	start := time.Now()
	for {
		select {
		case v, ok = <-ch:
			return v, ok
		default:
		}
		if time.Since(start) > budget {
			break
		}
		runtime.Gosched()
	}
	v, ok = <-ch
	return v, ok
}

// Await polls until *n reaches want or budget has passed, and reports
// whether it got there. It yields the processor only every yieldEvery:
// the caller may be locked to its OS thread, and then every yield is a
// futex hand-off of its P; the occasional yield lets a worker that still
// waits for a P run. Callers fall back to a blocking wait (a WaitGroup)
// when it returns false, and should call it only when every goroutine
// they wait for can have a P of its own (else spinning steals their time).
func Await(n *atomic.Int32, want int32, budget, yieldEvery time.Duration) bool {
	start := time.Now()
	last := start
	for n.Load() < want {
		now := time.Now()
		if now.Sub(start) > budget {
			return false
		}
		if now.Sub(last) > yieldEvery {
			runtime.Gosched()
			last = now
		}
	}
	return true
}
