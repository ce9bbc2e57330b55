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
// input from the Acts, which therefore stay untouched until W. W also
// takes the linear layers' bias gradients (column sums of the output
// gradient it copies anyway) and the LM head's weight gradient: the more
// of the backward W holds, the more of a bubble it fills (W is shorter
// than B on a small model: attention and the element-wise backwards are
// on B's path). Normalization, embedding and LoRA-adapter gradients are
// small and are computed in B. A gradient is reported ready (GradReady)
// only after W has written it. With W run in micro-batch order, every gradient gets
// its contributions in the order of an unsplit backward: same bits.

// deferredW is one queued weight-gradient product dw (+)= inp^T @ dout, or
// (ready > 0) a point where a prefix of the gradients is final.
type deferredW struct {
	args  mmArgs // c is dw; beta is decided when it runs
	ready int
	// db, when set, gets the column sums of the output gradient (args.b,
	// N x OC) after the product: the layer's bias gradient
	db []float32
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
		if w.db != nil {
			m.biasGrad(w.db, g.b, g.K, g.N)
		}
	}
	a.wq, a.wn = a.wq[:0], 0
}

// PendingWeightGrads reports whether a holds queued weight gradients.
func (a *Acts) PendingWeightGrads() bool { return len(a.wq) > 0 }

// deferWeight queues dw (+)= inp^T @ dout (dw: C x OC, inp: N x C, dout:
// N x OC) and, with db, db += column sums of dout, on the Acts of the
// split backward running, copying dout.
func (m *GPT) deferWeight(dw, db, dout, inp []float32, N, C, OC int) {
	m.deferTo.wq = append(m.deferTo.wq, deferredW{args: mmArgs{true, false, C, OC, N, 1, inp, C, m.keepCopy(dout[:N*OC]), OC, 0, dw, OC}, db: db})
}

// deferKept is deferWeight for a dout that stays in the Acts until W (the
// head's: ln_f's output), which needs no copy.
func (m *GPT) deferKept(dw, dout, inp []float32, N, C, OC int) {
	m.deferTo.wq = append(m.deferTo.wq, deferredW{args: mmArgs{true, false, C, OC, N, 1, inp, C, dout[:N*OC], OC, 0, dw, OC}})
}

// keepCopy copies v into the next of the running split backward's
// output-gradient buffers, reused split after split.
func (m *GPT) keepCopy(v []float32) []float32 {
	a := m.deferTo
	k := a.wn // the products' copies, reused split after split
	a.wn++
	if k == len(a.wbuf) {
		a.wbuf = append(a.wbuf, nil)
	}
	if cap(a.wbuf[k]) < len(v) {
		a.wbuf[k] = make([]float32, len(v))
	}
	buf := a.wbuf[k][:len(v)]
	copy(buf, v)
	return buf
}

// ready reports Grad[:n] final, or queues the report after the weight
// gradients of a split backward.
func (m *GPT) ready(n int) {
	if n <= 0 {
		return // nothing to report (a queued 0 would be a product)
	}
	if a := m.deferTo; a != nil {
		a.wq = append(a.wq, deferredW{ready: n})
		return
	}
	m.gradReady(n)
}
