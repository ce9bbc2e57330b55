package gemm

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/strand-ml/strand/internal/spin"
)

// A call is one Sgemm split into tasks. Calls are recycled through a
// callPool so that a steady-state GEMM allocates nothing: layers call GEMM
// many times per training step.
type call struct {
	e     *Engine
	kind  int      // kindRowRange, kindBlocked or kindBF16
	args  gemmArgs // float32 calls
	bargs bf16Args // GemmBF16 calls
	tasks int
	// blocked paths: strips of whole tiles along rows or columns.
	splitRows bool
	tiles     int          // tiles along the split dimension
	minTiles  int          // thinnest strip a task claims (but the last)
	next      atomic.Int64 // first tile not yet claimed
	ws        []*workspace // one per task
	// float32 blocked calls with several tasks: the operand every strip
	// shares, packed once before the tasks start (blocked.prepack)
	pre    prepacked
	preBuf []float32
	done   atomic.Int32 // tasks finished by workers, for the caller's spin
	wg     sync.WaitGroup
}

const (
	kindRowRange = iota // Portable or a WithKernel kernel over row ranges
	kindBlocked         // float32 SIMD blocked GEMM
	kindBF16            // bf16 SIMD blocked GEMM
	kindPrepack         // first phase of a multi-task kindBlocked call: pack the shared operand
)

// runTask computes task t of the call. On the blocked paths the tasks
// claim strips of C from a shared counter until none is left (see claim),
// so a task whose goroutine starts late or gets no CPU for a while does
// not hold up the others. Which task computes a strip does not change its
// bits.
func (c *call) runTask(t int) {
	g := &c.args
	if c.kind == kindRowRange {
		// Row-range kernel (portable or WithKernel): split rows evenly.
		i0, i1 := t*g.m/c.tasks, (t+1)*g.m/c.tasks
		c.e.kernel(g.transA, g.transB, i0, i1, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc)
		return
	}
	if c.kind == kindPrepack {
		c.e.blk.prepackPart(&c.pre, g, t, c.tasks, c.ws[t])
		return
	}
	for {
		lo, hi, ok := c.claim()
		if !ok {
			return
		}
		if c.kind == kindBF16 {
			g, bl := &c.bargs, c.e.bf
			if c.splitRows {
				bl.run(g, lo*bl.micro.MR, min(hi*bl.micro.MR, g.m), 0, g.n, c.ws[t])
			} else {
				bl.run(g, 0, g.m, lo*bl.micro.NR, min(hi*bl.micro.NR, g.n), c.ws[t])
			}
			continue
		}
		bl := c.e.blk
		var pre *prepacked
		if c.pre.a != nil || c.pre.b != nil {
			pre = &c.pre
		}
		if c.splitRows {
			bl.run(g, lo*bl.micro.MR, min(hi*bl.micro.MR, g.m), 0, g.n, c.ws[t], pre)
		} else {
			bl.run(g, 0, g.m, lo*bl.micro.NR, min(hi*bl.micro.NR, g.n), c.ws[t], pre)
		}
	}
}

// claim takes the next strip of tiles [lo, hi) off the shared counter:
// guided self-scheduling, each claim a 1/(2*tasks) share of the tiles still
// unclaimed but at least minTiles. Strips start wide (few repacks of what a
// strip packs for itself) and end thin, so the tasks finish close together:
// with fixed strips of 1/8 of the work at 2 threads, one goroutine idled
// for up to a whole strip at the end (about 20% of the wall time on
// 1024x1152x384, issue #8).
func (c *call) claim() (lo, hi int, ok bool) {
	for {
		cur := c.next.Load()
		lo = int(cur)
		if lo >= c.tiles {
			return 0, 0, false
		}
		n := c.tiles - lo
		if c.tasks > 1 {
			n = max(c.minTiles, ceilDiv(n, 2*c.tasks))
		}
		hi = min(lo+n, c.tiles)
		if c.next.CompareAndSwap(cur, int64(hi)) {
			return lo, hi, true
		}
	}
}

// planStrips readies the call for its tasks to claim strips: no strip
// thinner than minTiles tiles (but the last), because a strip may repeat
// the packing of the operand it shares with the others (B for row strips,
// A for column strips) when that is not prepacked. It also makes sure
// there is a workspace per task.
func (c *call) planStrips(minTiles int) {
	c.next.Store(0)
	c.minTiles = max(1, minTiles)
	for len(c.ws) < c.tasks {
		c.ws = append(c.ws, new(workspace))
	}
}

// callPool recycles calls and their workspaces. It is owned by one Engine
// (and its WithThreads copies): no global state.
type callPool struct {
	mu   sync.Mutex
	free []*call
}

func (p *callPool) get() *call {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		c := p.free[n-1]
		p.free = p.free[:n-1]
		return c
	}
	return new(call)
}

func (p *callPool) put(c *call) {
	c.args, c.bargs = gemmArgs{}, bf16Args{} // drop references to the caller's matrices
	c.pre = prepacked{}                      // preBuf stays, for the next call
	c.e = nil
	p.mu.Lock()
	p.free = append(p.free, c)
	p.mu.Unlock()
}

// job is task t of call c, sent to a worker.
type job struct {
	c *call
	t int
}

// team is a set of long-lived worker goroutines. Spawning a goroutine per
// task would allocate a closure on every call; workers fed through a
// channel do not. Workers hold only the channel, so when the last Engine
// that uses the team becomes unreachable, a cleanup closes the channel and
// the workers exit.
//
// Workers and the caller spin (yielding the P each round) for a while
// before they block, as OpenMP runtimes do: a worker that finished a task
// polls for the next one for spin.WorkerBudget, and the caller polls for
// the workers' tasks for spin.CallerBudget before parking on the WaitGroup. A parked
// goroutine whose CPU has gone idle took long to wake here (a VM's idle
// vCPU): at 2 threads on 1024x1152x384 (~3 ms per call) both cores were
// busy only 80% of the time; spinning (issue #8) fills that in.
type team struct {
	jobs chan job
	mu   sync.Mutex
	n    int          // workers started
	live atomic.Int32 // workers not yet exited (for tests)
}

// teamHandle is what Engines point to; its cleanup stops the workers.
type teamHandle struct{ t *team }

func newTeamHandle() *teamHandle {
	// buffered, so that the caller hands out jobs without waiting for a
	// spinning worker to take each one
	h := &teamHandle{t: &team{jobs: make(chan job, 64)}}
	runtime.AddCleanup(h, func(t *team) { close(t.jobs) }, h.t)
	return h
}

// ensure starts workers until there are at least n.
func (t *team) ensure(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for ; t.n < n; t.n++ {
		t.live.Add(1)
		go func(jobs <-chan job, live *atomic.Int32) {
			defer live.Add(-1)
			for {
				j, ok := spin.Receive(jobs, spin.WorkerBudget)
				if !ok {
					return
				}
				j.c.runTask(j.t)
				j.c.done.Add(1)
				j.c.wg.Done() // the last touch of j.c: the caller may recycle it
			}
		}(t.jobs, &t.live)
	}
}

// run executes tasks 1..c.tasks-1 on workers and task 0 on the calling
// goroutine, then waits for all of them.
func (t *team) run(c *call) {
	if c.tasks <= 1 {
		c.runTask(0)
		return
	}
	t.ensure(c.tasks - 1)
	c.done.Store(0)
	c.wg.Add(c.tasks - 1)
	for i := 1; i < c.tasks; i++ {
		t.jobs <- job{c: c, t: i}
	}
	c.runTask(0)
	// Busy-wait, yielding only every spin.CallerYield: the caller may be
	// locked to its OS thread (benchmarks do that), and then every Gosched
	// is a futex hand-off of its P. Only when each task could have a P of
	// its own; the occasional yield lets a worker that still waits for a P
	// (concurrent calls on a small machine) run.
	if c.tasks <= runtime.GOMAXPROCS(0) {
		spin.Await(&c.done, int32(c.tasks-1), spin.CallerBudget, spin.CallerYield)
	}
	c.wg.Wait()
}
