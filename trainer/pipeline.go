package trainer

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/parallel/pipeline"
	"github.com/strand-ml/strand/trace"
)

// runSchedule walks this stage's program for one step.
func (t *Trainer) runSchedule(ctx context.Context, scale float32) error {
	if t.exec == nil {
		t.exec = &stageExec{t: t, pendingAct: map[int]*sendJob{}, pendingGrad: map[int]*sendJob{}}
	}
	ex := t.exec
	if ex.slots == nil && t.Pipe.Needs() != 0 {
		ex.slots = t.Pipe.Slots(t.Comms.Coord.PP)
	}
	ex.scale, ex.lastBackward = scale, t.Opts.Micro-1
	ex.inputs, ex.targets, ex.b, ex.T, ex.last = t.inputs, t.targets, t.micro, t.Opts.Seq, nil
	clear(ex.pendingAct)
	clear(ex.pendingGrad)
	if t.chunks != nil {
		t.chunks.reset(len(t.recvAct))
	}
	t.Model.GradReady = nil
	ex.firstAt, ex.lastAt = time.Time{}, time.Time{}
	t0 := time.Now()
	err := pipeline.Run(ctx, t.Pipe, t.Comms.Coord.PP, ex)
	t.pipeSteps = append(t.pipeSteps, float32(time.Since(t0).Seconds()))
	t.pipeWindow += ex.lastAt.Sub(ex.firstAt)
	t.Model.GradReady = nil
	if t.sender != nil {
		if ferr := t.sender.flush(ctx); err == nil {
			err = ferr
		}
	}
	return err
}

// stageExec is pipeline.Stage for one pass of this rank's stage: a
// training step's program, or a caller's Forward and Backward (Pass).
type stageExec struct {
	t *Trainer
	// the step's first compute start and last compute end on this rank
	firstAt, lastAt time.Time
	scale           float32
	lastBackward    int
	// the pass: rows (micro-batches of b rows of T positions; targets nil
	// for no per-position loss) and the last stage's callback
	inputs, targets []int32
	b, T            int
	last            func(ctx context.Context, micro int, a *model.Acts) error
	// sends still in flight from an activation slot or gradient buffer
	pendingAct, pendingGrad map[int]*sendJob
	// slots maps a micro-batch to its activation buffer under a schedule
	// that splits the backward (a buffer is busy until the weight
	// gradient); nil: micro mod the buffers
	slots map[[2]int]int
}

func (e *stageExec) slot(micro, chunk int) int {
	if cb := e.t.chunks; cb != nil {
		return cb.slotOf(micro, chunk, e.last != nil)
	}
	if e.slots != nil && e.last == nil {
		return e.slots[[2]int{micro, 0}]
	}
	return micro % len(e.t.acts)
}

func (e *stageExec) rows(micro int) (lo, hi int) {
	n := e.b * e.T
	return micro * n, (micro + 1) * n
}

// width is the length of the residual stream between stages for one
// micro-batch of the pass.
func (e *stageExec) width() int { return e.b * e.T * e.t.Opts.Model.NEmbd }

// computed records a compute action that started at t0: its time, the
// step's compute window, and its span on the trace's compute lane.
func (e *stageExec) computed(name string, t0 time.Time, args map[string]any) {
	now := time.Now()
	e.t.pipeCompute += now.Sub(t0)
	if e.firstAt.IsZero() {
		e.firstAt = t0
	}
	e.lastAt = now
	e.t.Trace.Add(name, "compute", trace.LaneCompute, t0, now, args)
}

// Do implements pipeline.Stage.
func (e *stageExec) Do(ctx context.Context, a pipeline.Action) error {
	t := e.t
	m, T, n := t.Model, e.T, e.width()
	slot := e.slot(a.Micro, a.Chunk)
	// with virtual stages chunk c of the last stage feeds chunk c+1 of the
	// first: the neighbours wrap around (without, nothing sends past the
	// ends)
	pp, stages := t.Comms.Coord.PP, t.Comms.Mesh.PP
	prev, next := (pp+stages-1)%stages, (pp+1)%stages
	// this micro-batch's chunk embeds tokens (the first stage's first
	// chunk) or ends in the head and loss (the last stage's last chunk)
	first := m.Layout.First && a.Chunk == 0
	last := m.Layout.Last && a.Chunk == m.Chunks()-1
	cb := t.chunks
	var args map[string]any
	if t.Trace != nil {
		args = map[string]any{"micro": a.Micro}
		if cb != nil {
			args["chunk"] = a.Chunk
		}
	}
	switch a.Kind {
	case pipeline.Forward:
		// the activation slot may still be sending an earlier micro-batch
		if err := e.wait(ctx, e.pendingAct, slot); err != nil {
			return err
		}
		lo, hi := e.rows(a.Micro)
		var hidden []float32
		if !first && cb != nil {
			i := give(&cb.freeAct, cb.heldAct, a.Micro, a.Chunk)
			if i < 0 {
				return fmt.Errorf("forward of micro-batch %d chunk %d: its activation was not received", a.Micro, a.Chunk)
			}
			hidden = t.recvAct[i][:n] // read before the next receive
		} else if !first {
			hidden = t.recvAct[slot][:n]
		}
		if sg, ok := t.Source.(Segmented); ok && e.last == nil {
			t.acts[slot].SetSegments(sg.Segments()[lo:hi])
		}
		var targets []int32
		if e.targets != nil && (t.head == nil || e.last != nil) {
			// (a training step's head objective replaces the LM loss)
			targets = e.targets[lo:hi]
		}
		t0 := time.Now()
		sum, _, err := m.ForwardActs(ctx, t.acts[slot], e.inputs[lo:hi], hidden, targets, e.b, T)
		if err == nil && e.last != nil && last {
			err = e.last(ctx, a.Micro, t.acts[slot])
		} else if err == nil && t.head != nil && last {
			sum, err = t.headForward(lo/T, slot, e.scale)
		}
		if err == nil && t.Objective != nil && last && e.last == nil {
			if len(t.weights) != hi-lo {
				t.weights = make([]float32, hi-lo)
			}
			sum, err = t.Objective.Forward(lo/T, t.targets[lo:hi], t.acts[slot].Losses(), t.weights)
			t.acts[slot].SetLossWeights(t.weights)
		}
		e.computed("forward", t0, args)
		t.lossSum += sum
		return err
	case pipeline.BackwardInput:
		// the zero-bubble B: the input gradient now, the weight gradients
		// queued in the activations for W
		t0 := time.Now()
		dOut, err := e.gradOut(a, last)
		if err != nil {
			return err
		}
		err = m.BackwardInputActs(ctx, t.acts[slot], dOut, e.scale)
		e.computed("backward input", t0, args)
		return err
	case pipeline.BackwardWeight:
		// W of the last micro-batch makes gradients final, block by block
		// (an earlier W may run after the last B)
		e.hookBuckets(ctx, a)
		t0 := time.Now()
		m.BackwardWeightActs(t.acts[slot])
		e.computed("backward weight", t0, args)
		return nil
	case pipeline.Backward:
		// Gradients become final only in the step's last backward.
		e.hookBuckets(ctx, a)
		t0 := time.Now()
		dOut, err := e.gradOut(a, last)
		if err != nil {
			return err
		}
		err = m.BackwardActs(ctx, t.acts[slot], dOut, e.scale)
		e.computed("backward", t0, args)
		return err
	case pipeline.SendAct:
		e.pendingAct[slot] = t.sender.send(ctx, t.acts[slot].Output(), next, "send activation", a.Micro)
	case pipeline.RecvAct:
		i := slot
		if cb != nil {
			var err error
			if i, err = take(&cb.freeAct, cb.heldAct, a.Micro, a.Chunk, "recv activation"); err != nil {
				return err
			}
		}
		buf := t.recvAct[i]
		return e.recv(ctx, buf[:n], prev, "recv activation", a.Micro)
	case pipeline.SendGrad:
		if err := e.wait(ctx, e.pendingGrad, slot); err != nil {
			return err
		}
		buf := t.sendGrad[slot][:n]
		copy(buf, m.DInput(t.acts[slot]))
		e.pendingGrad[slot] = t.sender.send(ctx, buf, prev, "send gradient", a.Micro)
	case pipeline.RecvGrad:
		buf := t.gradIn
		if cb != nil {
			i, err := take(&cb.freeGrad, cb.heldGrad, a.Micro, a.Chunk, "recv gradient")
			if err != nil {
				return err
			}
			buf = cb.gradIn[i]
		}
		return e.recv(ctx, buf[:n], next, "recv gradient", a.Micro)
	}
	return nil
}

// gradOut is the output gradient a backward of a starts from: nil on the
// chunk with the head (last), else the one received from the next stage.
func (e *stageExec) gradOut(a pipeline.Action, last bool) ([]float32, error) {
	if last {
		return nil, nil
	}
	n, cb := e.width(), e.t.chunks
	if cb == nil {
		return e.t.gradIn[:n], nil
	}
	// given back now: the backward copies it before any receive can run
	i := give(&cb.freeGrad, cb.heldGrad, a.Micro, a.Chunk)
	if i < 0 {
		return nil, fmt.Errorf("backward of micro-batch %d chunk %d: its output gradient was not received", a.Micro, a.Chunk)
	}
	return cb.gradIn[i][:n], nil
}

// hookBuckets, before the backward that makes gradients final (the last
// micro-batch's), starts the data-parallel reduction of each bucket as it
// finishes, keeping the tied embedding's tail for after its stage sum.
// With several chunks the hook is on only in each chunk's last backward
// (an earlier backward of a lower chunk must not report its blocks), and
// only when the chunks finish in the flat buffer's order; otherwise the
// reduction waits for the end of the program (Bucketer.Finish).
func (e *stageExec) hookBuckets(ctx context.Context, a pipeline.Action) {
	t := e.t
	if t.bucketer == nil {
		return
	}
	tied := t.Model.TiedOffset
	hook := func(n int) { t.bucketer.Ready(ctx, min(n, tied)) }
	if cb := t.chunks; cb != nil {
		t.Model.GradReady = nil
		if cb.lastMicro != nil && a.Micro == cb.lastMicro[a.Chunk] {
			t.Model.GradReady = hook
		}
		return
	}
	if a.Micro != e.lastBackward {
		return
	}
	t.Model.GradReady = hook
}

func (e *stageExec) recv(ctx context.Context, buf []float32, peer int, what string, micro int) error {
	t0 := time.Now()
	err := e.t.Comms.PP.Recv(ctx, collective.F32(buf), peer)
	if e.t.Trace != nil {
		e.t.Trace.Add(what, "comm", trace.LaneComm, t0, time.Now(), map[string]any{"micro": micro, "peer_stage": peer})
	}
	if err != nil {
		return fmt.Errorf("%s of micro-batch %d from stage %d: %w", what, micro, peer, err)
	}
	return nil
}

func (e *stageExec) wait(ctx context.Context, m map[int]*sendJob, slot int) error {
	j := m[slot]
	if j == nil {
		return nil
	}
	delete(m, slot)
	return j.wait(ctx)
}

// orderedSender sends pipeline messages from one goroutine in the order
// they were queued, so two sends to the same stage can never overtake each
// other (the receiver matches them by order), while compute goes on.
type orderedSender struct {
	comm  *collective.Comm
	tr    *trace.Recorder
	queue chan *sendJob
	mu    sync.Mutex
	open  []*sendJob
	once  sync.Once
}

type sendJob struct {
	ctx   context.Context
	buf   []float32
	peer  int
	what  string
	micro int
	done  chan struct{}
	err   error
}

func newOrderedSender(c *collective.Comm, tr *trace.Recorder) *orderedSender {
	return &orderedSender{comm: c, tr: tr, queue: make(chan *sendJob, 1024)}
}

func (s *orderedSender) send(ctx context.Context, buf []float32, peer int, what string, micro int) *sendJob {
	s.once.Do(func() { go s.loop() })
	j := &sendJob{ctx: ctx, buf: buf, peer: peer, what: what, micro: micro, done: make(chan struct{})}
	s.mu.Lock()
	s.open = append(s.open, j)
	s.mu.Unlock()
	s.queue <- j
	return j
}

func (s *orderedSender) loop() {
	for j := range s.queue {
		t0 := time.Now()
		j.err = s.comm.Send(j.ctx, collective.F32(j.buf), j.peer)
		s.tr.Add(j.what, "comm", trace.LaneComm, t0, time.Now(), map[string]any{"micro": j.micro, "peer_stage": j.peer})
		if j.err != nil {
			j.err = fmt.Errorf("%s of micro-batch %d to stage %d: %w", j.what, j.micro, j.peer, j.err)
		}
		close(j.done)
	}
}

func (j *sendJob) wait(ctx context.Context) error {
	select {
	case <-j.done:
		return j.err
	case <-ctx.Done():
		return fmt.Errorf("%s of micro-batch %d: %w", j.what, j.micro, ctx.Err())
	}
}

// flush waits for every queued send.
func (s *orderedSender) flush(ctx context.Context) error {
	s.mu.Lock()
	open := s.open
	s.open = nil
	s.mu.Unlock()
	var first error
	for _, j := range open {
		if err := j.wait(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Close stops the sender goroutine.
func (s *orderedSender) Close() {
	if s != nil {
		close(s.queue)
	}
}
