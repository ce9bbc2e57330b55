package model

import (
	"context"
	"fmt"

	"github.com/strand-ml/strand/gemm"
)

// This file runs the forward of the blocks as independent lanes over the
// batch when the model has several compute threads: lane i takes whole
// sequences [b0, b1) of the batch through every block, on one goroutine,
// with single-threaded GEMMs.
//
// Every layer of a block is row-wise (norms, linear layers, activations,
// residual adds: one token at a time) or per sequence (attention), so the
// lanes never need each other's rows and meet only once, after the last
// block, instead of at every GEMM and every split layer (about twelve
// fork/joins per block). Splitting each forward GEMM over two goroutines
// ran it at ~1.6x its one-thread speed on gpt2s (the shared packing
// phase, the strips' repacking, the joins); lanes run at ~1.9x. The bits
// are those of the serial forward: a GEMM's output row does not depend on
// which other rows are computed with it, and the other layers work row by
// row or sequence by sequence.
//
// The backward stays split per product (pair.go, split.go): its weight
// gradients sum over every row of the batch, which lanes would have to
// add up in a thread-count-dependent order.
//
// Lanes are used with tensor parallelism 1 (a TP block all-reduces its
// partial sums in the middle). With bf16 or fp16 products each lane
// rounds its activations into scratch of its own and shares the rounded
// weights; with LoRA each lane keeps its rows of inp @ A in the Acts, as
// the serial forward does, for the backward.

// lanes is the reusable state of the lane forward.
type lanes struct {
	models []GPT             // lane i's copy of the model header, see laneModel
	attn   []*FlashAttention // lane i's attention, single-threaded, own scratch
	views  []blockActs       // lane i's row views of the current block's Acts
	// lane i's operand scratch for bf16 / fp16 products (lowPrecision's
	// slots; grown by the lane on first use, kept here between forwards)
	b16Slot [][2][]uint16
	f16Slot [][2][]float32
	task    laneTask
}

// laneTask is one lane forward, run by the attention pool (lane i = item i).
type laneTask struct {
	m    *GPT
	ctx  context.Context
	a    *Acts
	B, T int
	errs []error
}

// laneCount is how many lanes a forward of a B-sequence batch uses: one
// per compute thread, at most one per sequence; 0 or 1 means no lanes.
// Lanes hold whole sequences, so a batch that does not divide evenly
// leaves some lanes a sequence longer: with fewer than 4 sequences per
// lane that imbalance (3 over 2 lanes: 2/3 of the work on one) costs more
// than lanes save, and the layers split instead.
func (m *GPT) laneCount(B, T int) int {
	if m.tp.Size() != 1 || len(m.w.blocks) == 0 || m.residency != nil {
		return 0
	}
	n := min(m.threads(), B)
	if n > 1 && B%n != 0 && B < 4*n {
		return 0
	}
	d := m.local
	rows := B / n * T
	if rows < minLaneRows {
		return 0
	}
	// every product a lane computes must stay on gemm's packed path, as
	// the whole batch's does, or the lane would sum in another order:
	// the smallest are bounded by the narrowest width W of a linear
	// layer's input or output (C for GPT-2; a SwiGLU MLP may be narrower)
	// as rows x W x W, and LoRA's rank-r products as rows x r x W, where
	// an adapter on k_proj or v_proj outputs only the kv width
	W := min(d.C, d.Cl, d.QKVl, d.Hl, d.FCl)
	smallest := rows * W * W
	if r := m.loraRank(); r > 0 {
		smallest = min(smallest, rows*r*min(W, d.KVl))
	}
	if smallest < gemm.MinPackedWork {
		return 0
	}
	return n
}

// minLaneRows is the fewest rows (tokens) a lane takes: smaller batches
// gain little from lanes.
const minLaneRows = 64

// laneModel refreshes lane i's copy of the model header: the same
// weights, config and layout, but its own single-threaded GEMM engine,
// attention (scratch, the segment starts of its rows), split-layer task
// and low-precision operand scratch, so that lanes share nothing they
// write. It is copied from m on every forward, so it follows whatever m
// points to now (weights rebound by a load, new segments).
func (m *GPT) laneModel(i, b0, b1, T int) {
	ln := &m.lanes
	for len(ln.models) <= i {
		a := NewFlashAttention(1, m.MaxT)
		a.SetEngine(m.gemm)
		ln.models = append(ln.models, GPT{})
		ln.attn = append(ln.attn, a)
		ln.views = append(ln.views, blockActs{})
		ln.b16Slot = append(ln.b16Slot, [2][]uint16{})
		ln.f16Slot = append(ln.f16Slot, [2][]float32{})
	}
	h := &ln.models[i]
	*h = *m
	h.lanes = lanes{} // a lane never starts lanes of its own
	h.gemm = m.attn.gemm
	h.split, h.sumSq, h.pair = splitOps{}, sumSqTask{}, pairTask{}
	h.lnStats = nil
	h.b16.slot, h.f16.slot = ln.b16Slot[i], ln.f16Slot[i]
	a := ln.attn[i]
	a.Slopes, a.SegStart, a.Group = m.attn.Slopes, nil, m.attn.Group
	if s := m.attn.SegStart; s != nil {
		a.SegStart = s[b0*T : b1*T]
	}
	h.attn = a
}

// laneRows is lane i's sequences [b0, b1) of n lanes over B.
func laneRows(i, n, B int) (b0, b1 int) { return i * B / n, (i + 1) * B / n }

// forwardLanes runs every block on a.input (B*T, C) in n lanes, leaving
// each block's activations in a as the serial forward would.
func (m *GPT) forwardLanes(ctx context.Context, a *Acts, n, B, T int) error {
	ln := &m.lanes
	for i := range n {
		b0, b1 := laneRows(i, n, B)
		m.laneModel(i, b0, b1, T)
	}
	m.ensureLoRAActs(a)
	if cap(ln.task.errs) < n {
		ln.task.errs = make([]error, n)
	}
	t := &ln.task
	t.m, t.ctx, t.a, t.B, t.T, t.errs = m, ctx, a, B, T, t.errs[:n]
	clear(t.errs)
	m.pool.p.run(t, n, n)
	errs := t.errs
	*t = laneTask{errs: errs} // drop references to the batch
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// run is lane i: sequences [i*B/n, (i+1)*B/n) through every block.
func (t *laneTask) run(_, i int) {
	m, a, T := t.m, t.a, t.T
	b0, b1 := laneRows(i, len(t.errs), t.B)
	h := &m.lanes.models[i]
	d := m.local
	x := a.input[b0*T*d.C : b1*T*d.C]
	v := &m.lanes.views[i]
	for j := range a.blocks {
		*v = a.blocks[j].rows(b0, b1, T, d, m.loraRank())
		if err := h.blockForward(t.ctx, v, &m.w.blocks[a.lo+j], x, b1-b0, T); err != nil {
			t.errs[i] = fmt.Errorf("block %d: %w", m.Layout.blockIDs()[a.lo+j], err)
			return
		}
		x = v.res3
	}
	*v = blockActs{}
	m.lanes.b16Slot[i], m.lanes.f16Slot[i] = h.b16.slot, h.f16.slot // as grown
}

// rows is the view of sequences [b0, b1) of ba (batches of T positions):
// every activation is laid out by row, and att (B, NHl, T) by sequence;
// the LoRA rows (N, rank) where the Acts hold them.
func (ba *blockActs) rows(b0, b1, T int, d localDims, rank int) blockActs {
	r := func(s []float32, width int) []float32 { return s[b0*T*width : b1*T*width] }
	v := blockActs{
		ln1: r(ba.ln1, d.C), ln1Mean: r(ba.ln1Mean, 1), ln1Rstd: r(ba.ln1Rstd, 1),
		qkv: r(ba.qkv, d.QKVl), att: r(ba.att, d.NHl), atty: r(ba.atty, d.Cl), res2: r(ba.res2, d.C),
		ln2: r(ba.ln2, d.C), ln2Mean: r(ba.ln2Mean, 1), ln2Rstd: r(ba.ln2Rstd, 1),
		fch: r(ba.fch, d.FCl), fchAct: r(ba.fchAct, d.Hl), res3: r(ba.res3, d.C),
	}
	for k, h := range ba.lora {
		if len(h) > 0 {
			v.lora[k] = r(h, rank)
		}
	}
	return v
}
