package gemm

import (
	"runtime"
	"sync"
	"sync/atomic"
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
	splitRows  bool
	tiles      int          // tiles along the split dimension
	stripTiles int          // tiles per strip
	strips     int          // number of strips
	next       atomic.Int64 // next strip to claim
	ws         []*workspace // one per task
	// float32 blocked calls with several tasks: the operand every strip
	// shares, packed once before the tasks start (blocked.prepack)
	pre    prepacked
	preBuf []float32
	wg     sync.WaitGroup
}

const (
	kindRowRange = iota // Portable or a WithKernel kernel over row ranges
	kindBlocked         // float32 SIMD blocked GEMM
	kindBF16            // bf16 SIMD blocked GEMM
	kindPrepack         // first phase of a multi-task kindBlocked call: pack the shared operand
)

// runTask computes task t of the call. On the blocked paths the tasks
// claim strips of C from a shared counter until none is left, so a task
// whose goroutine gets no CPU for a while (the machine is shared) does not
// hold up the others. Which task computes a strip does not change its bits.
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
		s := int(c.next.Add(1)) - 1
		if s >= c.strips {
			return
		}
		lo, hi := s*c.stripTiles, min((s+1)*c.stripTiles, c.tiles)
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

// planStrips cuts the tiles of a blocked call into strips for its tasks to
// claim: about four per task, so that the work rebalances when a goroutine
// stalls, but no thinner than minTiles tiles, because every strip repeats
// the packing of the operand it shares with the others (B for row strips,
// A for column strips). It also makes sure there is a workspace per task.
func (c *call) planStrips(minTiles int) {
	c.next.Store(0)
	c.stripTiles = c.tiles
	if c.tasks > 1 {
		c.stripTiles = max(minTiles, ceilDiv(c.tiles, 4*c.tasks))
	}
	c.strips = ceilDiv(c.tiles, c.stripTiles)
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
type team struct {
	jobs chan job
	mu   sync.Mutex
	n    int          // workers started
	live atomic.Int32 // workers not yet exited (for tests)
}

// teamHandle is what Engines point to; its cleanup stops the workers.
type teamHandle struct{ t *team }

func newTeamHandle() *teamHandle {
	h := &teamHandle{t: &team{jobs: make(chan job)}}
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
			for j := range jobs {
				j.c.runTask(j.t)
				j.c.wg.Done()
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
	c.wg.Add(c.tasks - 1)
	for i := 1; i < c.tasks; i++ {
		t.jobs <- job{c: c, t: i}
	}
	c.runTask(0)
	c.wg.Wait()
}
