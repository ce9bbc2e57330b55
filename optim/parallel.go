package optim

import (
	"runtime"
	"sync"

	"github.com/strand-ml/strand/vec"
)

// minValuesPerPart is the fewest parameters worth a second goroutine in
// Update (waking one costs microseconds; a 64K-value range takes tens).
const minValuesPerPart = 1 << 16

// updateRun is one Update's operands, shared read-only by its parts. Part
// i updates the i-th of parts equal ranges of the packed moment index
// (M and V are the segments packed one after another), cut on 16-value
// boundaries, walking the segments that overlap it.
type updateRun struct {
	params, grads, m, v []float32
	segs                []Segment
	st                  vec.AdamWStep // Decay is set per segment
	decay               float32       // Decay of decaying segments
	parts               int
	wg                  sync.WaitGroup
}

// do runs every part, part 0 on the calling goroutine and the others on
// ws (nil when parts is 1).
func (r *updateRun) do(ws *workerSet) {
	if r.parts <= 1 || ws == nil {
		r.part(0, 1)
		return
	}
	r.wg.Add(r.parts - 1)
	for i := 1; i < r.parts; i++ {
		ws.jobs <- job{run: r, part: i}
	}
	r.part(0, r.parts)
	r.wg.Wait()
}

// part updates range i of parts.
func (r *updateRun) part(i, parts int) {
	total := len(r.m)
	step := (total + parts - 1) / parts
	step = (step + 15) &^ 15
	lo, hi := min(i*step, total), min((i+1)*step, total)
	st := r.st // a copy per goroutine: Decay differs per segment
	state := 0
	for _, s := range r.segs {
		a, b := max(lo, state), min(hi, state+s.Size)
		if a < b {
			off := s.Offset - state // parameter index = state index + off
			st.Decay = 1
			if s.Decay {
				st.Decay = r.decay
			}
			// AVX-512 where available, same bits as the loop
			vec.AdamW(r.params[a+off:b+off], r.grads[a+off:b+off], r.m[a:b], r.v[a:b], &st)
		}
		state += s.Size
		if state >= hi {
			break
		}
	}
}

// job asks a worker for one part of an update.
type job struct {
	run  *updateRun
	part int
}

// workerSet is Threads-1 long-lived goroutines fed through a channel, so
// an update allocates nothing. They hold only the channel and the run they
// are working on, never the AdamW: when it becomes unreachable a cleanup
// closes the channel and they exit.
type workerSet struct {
	jobs chan job
}

func newWorkerSet(o *AdamW) *workerSet {
	ws := &workerSet{jobs: make(chan job)}
	for range o.Threads - 1 {
		go func(jobs <-chan job) {
			for j := range jobs {
				j.run.part(j.part, j.run.parts)
				j.run.wg.Done()
			}
		}(ws.jobs)
	}
	runtime.AddCleanup(o, func(jobs chan job) { close(jobs) }, ws.jobs)
	return ws
}
