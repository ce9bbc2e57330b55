package model

import (
	"context"
	"fmt"
)

// The backward split for zero-bubble pipeline schedules (Qi et al., 2023):
// BackwardInputActs ("B") computes the gradient flowing to the stage's
// input, on the pipeline's critical path, and queues the blocks'
// weight-gradient products in the Acts; BackwardWeightActs ("W") runs
// them later, in a bubble. Each queued product keeps a copy of its output
// gradient (the model's scratch is reused by the next block) and reads its
// input from the Acts, which therefore stay untouched until W. Bias,
// normalization, embedding, head and LoRA-adapter gradients are small and
// are computed in B. A gradient is reported ready (GradReady) only after
// W has written it. With W run in micro-batch order, every gradient gets
// its contributions in the order of an unsplit backward: same bits.

// deferredW is one queued weight-gradient product dw (+)= inp^T @ dout, or
// (ready > 0) a point where a prefix of the gradients is final.
type deferredW struct {
	args  mmArgs // c is dw; beta is decided when it runs
	ready int
}

// BackwardInputActs is BackwardActs without the blocks' weight-gradient
// products, which it queues in a for BackwardWeightActs. The activations
// must keep their values until then: recomputation modes, which share
// buffers between blocks, are refused.
func (m *GPT) BackwardInputActs(ctx context.Context, a *Acts, dOut []float32, lossScale float32) error {
	if a.recompute != "" && a.recompute != RecomputeNone {
		return fmt.Errorf("model: a split backward needs every activation until its weight gradient; recompute %s shares them", a.recompute)
	}
	if len(a.wq) > 0 {
		return fmt.Errorf("model: the previous split backward of these activations has not run its weight gradients")
	}
	m.deferTo = a
	defer func() { m.deferTo = nil }()
	return m.BackwardActs(ctx, a, dOut, lossScale)
}

// BackwardWeightActs runs the weight-gradient products BackwardInputActs
// queued in a, in order, reporting gradients ready as they become final.
func (m *GPT) BackwardWeightActs(a *Acts) {
	for _, w := range a.wq {
		if w.ready > 0 {
			m.gradReady(w.ready)
			continue
		}
		g := w.args
		m.mm(g.transA, g.transB, g.M, g.N, g.K, g.alpha, g.a, g.lda, g.b, g.ldb, m.gradBeta(g.c), g.c, g.ldc)
	}
	a.wq, a.wn = a.wq[:0], 0
}

// PendingWeightGrads reports whether a holds queued weight gradients.
func (a *Acts) PendingWeightGrads() bool { return len(a.wq) > 0 }

// deferWeight queues dw (+)= inp^T @ dout (dw: C x OC, inp: N x C, dout:
// N x OC) on the Acts of the split backward running, copying dout.
func (m *GPT) deferWeight(dw, dout, inp []float32, N, C, OC int) {
	a := m.deferTo
	k := a.wn // the products' copies, reused split after split
	a.wn++
	if k == len(a.wbuf) {
		a.wbuf = append(a.wbuf, nil)
	}
	if cap(a.wbuf[k]) < N*OC {
		a.wbuf[k] = make([]float32, N*OC)
	}
	buf := a.wbuf[k][:N*OC]
	copy(buf, dout[:N*OC])
	a.wq = append(a.wq, deferredW{args: mmArgs{true, false, C, OC, N, 1, inp, C, buf, OC, 0, dw, OC}})
}

// ready reports Grad[:n] final, or queues the report after the weight
// gradients of a split backward.
func (m *GPT) ready(n int) {
	if a := m.deferTo; a != nil {
		a.wq = append(a.wq, deferredW{ready: n})
		return
	}
	m.gradReady(n)
}
