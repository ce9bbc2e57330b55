package model

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/strand-ml/strand/internal/spin"
)

// headTask is work split over independent items (attention's (batch, head)
// pairs): run(worker, i) handles item i using worker's scratch. Items must
// write disjoint outputs so that results never depend on which worker ran
// which item.
type headTask interface {
	run(worker, i int)
}

// headJob asks one pool worker to run items worker, worker+stride, ... of a
// task: a fixed assignment, so each item always uses the same scratch slot.
type headJob struct {
	task           headTask
	worker, stride int
	n              int
	done           *sync.WaitGroup
	finished       *atomic.Int32 // counts done jobs for the caller's spin
}

// headPool is a set of long-lived goroutines fed through a channel.
// Spawning goroutines per attention call allocates a closure and a
// WaitGroup every layer of every step; a pool allocates nothing once its
// workers exist. Workers hold only the channel: when the owning handle
// becomes unreachable a cleanup closes it and they exit.
//
// Workers and the caller spin before they block (internal/spin), like
// gemm's team: a split layer lasts 0.1-1 ms, and waking a parked worker
// on a VM took long enough that LayerNorm's and GELU's backward ran slower
// on 2 goroutines than on 1 (gpt2s, issue #8); spinning took a 2-thread
// gpt2s step from 311 to 294 ms.
type headPool struct {
	jobs     chan headJob
	mu       sync.Mutex
	started  int
	live     atomic.Int32 // workers not yet exited (tests watch it)
	wg       sync.WaitGroup
	finished atomic.Int32
}

// poolHandle is what a model (and its attention) holds; its cleanup stops the
// workers of the pool it points to.
type poolHandle struct{ p *headPool }

func newPoolHandle() *poolHandle {
	// buffered: the caller hands out jobs without waiting for a worker
	h := &poolHandle{p: &headPool{jobs: make(chan headJob, 16)}}
	runtime.AddCleanup(h, func(p *headPool) { close(p.jobs) }, h.p)
	return h
}

// ensure starts workers until n exist.
func (p *headPool) ensure(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for ; p.started < n; p.started++ {
		p.live.Add(1)
		go func(jobs <-chan headJob, live *atomic.Int32) {
			defer live.Add(-1)
			for {
				j, ok := spin.Receive(jobs, spin.WorkerBudget)
				if !ok {
					return
				}
				for i := j.worker; i < j.n; i += j.stride {
					j.task.run(j.worker, i)
				}
				j.finished.Add(1)
				j.done.Done()
			}
		}(p.jobs, &p.live)
	}
}

// run calls task.run(w, i) for every i in [0, n) over up to workers
// goroutines (the caller is worker 0) and returns when all are done. One
// run at a time per pool: callers serialize (a model runs one layer at a
// time).
func (p *headPool) run(task headTask, n, workers int) {
	workers = min(workers, n)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			task.run(0, i)
		}
		return
	}
	p.ensure(workers - 1)
	p.wg.Add(workers - 1)
	p.finished.Store(0)
	for w := 1; w < workers; w++ {
		p.jobs <- headJob{task: task, worker: w, stride: workers, n: n, done: &p.wg, finished: &p.finished}
	}
	for i := 0; i < n; i += workers {
		task.run(0, i)
	}
	if workers <= runtime.GOMAXPROCS(0) {
		spin.Await(&p.finished, int32(workers-1), spin.CallerBudget, spin.CallerYield)
	}
	p.wg.Wait()
}
