package model

import (
	"context"
	"fmt"
)

// BackwardActs accumulates parameter gradients for the Forward that filled a.
// The last stage starts from the loss (its Forward must have had targets;
// lossScale multiplies dLoss/dlogit of each counted position, so pass
// 1/(counted positions in the global batch) for the mean). Other stages
// start from dOut (B*T, C), the gradient the next stage sent back. After it
// returns, DInput holds the gradient to send to the previous stage.
func (m *GPT) BackwardActs(ctx context.Context, a *Acts, dOut []float32, lossScale float32) error {
	d, w := m.local, &m.w
	B, T := a.b, a.t
	N, C := B*T, d.C
	dres := m.dres[:N*C]
	if a.first && m.chunked() && w.dwte != nil {
		m.rows.collect(a.tokens[:N], d.V0, d.Vl, C)
	}
	if a.last {
		if err := m.need(ctx, m.headUnit(), true); err != nil {
			return err
		}
	}
	if a.last && a.head.grad != nil {
		if err := m.customHeadBackward(a, dres); err != nil {
			return err
		}
	} else if a.last {
		if !a.hasTargets {
			return fmt.Errorf("model: backward needs a forward with targets")
		}
		dlogits := a.logits[:N*d.Vl]
		m.ce.Backward(dlogits, a.targets, N, d.Vl, lossScale)
		if err := a.head.weightRows(dlogits, N, d.Vl); err != nil {
			return err
		}
		// dlnf = dlogits @ wte_local (partial over the vocabulary split)
		// and dwte += dlogits^T @ lnf, both before the all-reduce so that
		// with two threads they run at once (pair.go)
		dlnf := m.dln[:N*C]
		dx := mmArgs{false, false, N, C, d.Vl, 1, dlogits, d.Vl, w.head, C, 0, dlnf, C}
		switch {
		case m.chunked():
			if err := m.headBackwardChunked(ctx, a, dlogits, dlnf, N); err != nil {
				return err
			}
		case w.dhead != nil && m.deferTo != nil:
			// a split backward: dwte (Vl, C) += dlogits^T @ lnf waits for
			// W (dlogits and lnf stay in a until then)
			m.mm(dx.transA, dx.transB, dx.M, dx.N, dx.K, dx.alpha, dx.a, dx.lda, dx.b, dx.ldb, dx.beta, dx.c, dx.ldc)
			m.deferKept(w.dhead, a.lnf, dlogits, N, d.Vl, C)
		case w.dhead != nil: // nil: frozen (LoRA)
			m.mmPair(dx, mmArgs{true, false, d.Vl, C, N, 1, dlogits, d.Vl, a.lnf, C, m.gradBeta(w.dhead), w.dhead, C})
		default:
			m.mm(dx.transA, dx.transB, dx.M, dx.N, dx.K, dx.alpha, dx.a, dx.lda, dx.b, dx.ldb, dx.beta, dx.c, dx.ldc)
		}
		if err := m.tp.AllReduceSum(ctx, dlnf); err != nil {
			return fmt.Errorf("head backward all-reduce: %w", err)
		}
		clear(dres)
		last := a.input[:N*C]
		if len(a.blocks) > 0 {
			last = a.blocks[len(a.blocks)-1].res3[:N*C]
		}
		m.normBackward(dres, w.dlnfw, w.dlnfb, dlnf, last, w.lnfw, a.lnfMean, a.lnfRstd, N)
		m.ready(w.headReady) // after W when the head's weight gradient waits for it
	} else {
		if len(dOut) != N*C {
			return fmt.Errorf("model: stage output gradient has %d values, want %dx%dx%d", len(dOut), B, T, C)
		}
		copy(dres, dOut)
	}
	if a.last {
		if err := m.done(ctx, m.headUnit(), true); err != nil {
			return err
		}
	}
	// FlashAttention recomputes probabilities in backward: it needs this
	// Acts' segments, not those of whichever micro-batch ran forward last.
	m.attn.SegStart = a.seg.segStart()
	for i := len(a.blocks) - 1; i >= 0; i-- {
		x := a.input[:N*C]
		if i > 0 {
			x = a.blocks[i-1].res3[:N*C]
		}
		if err := m.backwardBlock(ctx, a, i, x, dres, B, T); err != nil {
			return fmt.Errorf("block %d backward: %w", m.blockID(a, i), err)
		}
		m.ready(m.w.blocks[a.lo+i].readyAfter)
	}
	if a.first && w.dwte != nil && m.chunked() {
		if err := m.embedBackwardChunked(ctx, a, dres, N, T); err != nil {
			return err
		}
	} else if a.first && w.dwte != nil { // nil: frozen embeddings (LoRA)
		m.clearIfStale(w.dwte)
		m.clearIfStale(w.dwpe)
		if a.seg.ids != nil {
			m.embedBackwardSegmented(dres, a.tokens, a.seg.pos, B, T)
		} else if m.tp.Size() == 1 {
			EmbeddingBackward(w.dwte, w.dwpe, dres, a.tokens, B, T, C)
		} else {
			m.embedBackward(dres, a.tokens, B, T)
		}
	}
	if a.chunk == 0 {
		m.ready(len(m.Params.Grad))
	} else if len(a.blocks) > 0 {
		// a later chunk: the gradients laid out before its first block
		// (the chunks above it, last first) are what it finishes; the
		// chunks below it and the tail come after (Layout.Chunks)
		m.ready(m.w.blocks[a.lo].readyAfter)
	}
	return nil
}

// DInput is the gradient with respect to this stage's input hidden state
// (B*T, C) after BackwardActs: what a non-first stage sends back. It is
// valid until the next BackwardActs.
func (m *GPT) DInput(a *Acts) []float32 { return m.dres[:a.b*a.t*m.local.C] }

func (m *GPT) gradReady(n int) {
	// after ResetGrad: what backward did not write is zero. With a
	// residency each unit's are cleared when the unit is done (done):
	// here they would also be the units ZeRO already moved out and marked
	// stale, whose handed-back pages clearing would bring back.
	if m.residency == nil {
		m.Params.clearStale(n)
	}
	if m.GradReady != nil {
		m.GradReady(n)
	}
}

// embedBackward accumulates the vocabulary-parallel embedding's gradient:
// each rank adds only the rows it holds.
func (m *GPT) embedBackward(dres []float32, tokens []int32, B, T int) {
	d, w := m.local, &m.w
	C := d.C
	for n := 0; n < B*T; n++ {
		g := dres[n*C : (n+1)*C]
		if v := int(tokens[n]) - d.V0; v >= 0 && v < d.Vl {
			ResidualAdd(w.dwte[v*C:(v+1)*C], g)
		}
		if w.dwpe != nil {
			ResidualAdd(w.dwpe[(n%T)*C:(n%T+1)*C], g)
		}
	}
}

// blockBackward: on entry dres holds dL/d(block output); on exit dL/dx.
func (m *GPT) blockBackward(ctx context.Context, ba *blockActs, bw *blockWeights, x, dres []float32, B, T int) error {
	d := m.local
	N, C := B*T, d.C
	// MLP. The residual passes dres through unchanged to res2. (Under a
	// residency each part's weights are asked for in turn.)
	dfchAct, dfch := m.dfchAct[:N*d.Hl], m.dfch[:N*d.FCl]
	if err := m.needPart(ctx, bw, 3, true); err != nil {
		return err
	}
	m.linearBackward(dfchAct, bw.dfcProjW, bw.dfcProjB, dres, ba.fchAct, bw.fcProjW, N, d.Hl, C, false)
	if err := m.loraLayerBackward(ctx, ba, bw, loraFCProj, dfchAct, dres, ba.fchAct, N); err != nil {
		return err
	}
	if err := m.donePart(ctx, bw, 3, true); err != nil {
		return err
	}
	if err := m.needPart(ctx, bw, 2, true); err != nil {
		return err
	}
	// tanh GELU's backward also sums the fc bias gradient (one pass over
	// dfch fewer; same bits)
	dfcB := bw.dfcB
	if m.Config.Activation == GELUTanh && dfcB != nil {
		m.activateBackwardBias(dfch, ba.fch, dfchAct, dfcB, N, d.Hl)
		dfcB = nil
	} else {
		m.activateBackward(dfch, ba.fch, dfchAct, N, d.Hl)
	}
	dln := m.dln[:N*C]
	m.linearBackward(dln, bw.dfcW, dfcB, dfch, ba.ln2, bw.fcW, N, C, d.FCl, false)
	if err := m.loraLayerBackward(ctx, ba, bw, loraFC, dln, dfch, ba.ln2, N); err != nil {
		return err
	}
	if err := m.tp.AllReduceSum(ctx, dln); err != nil {
		return fmt.Errorf("MLP input gradient all-reduce: %w", err)
	}
	m.normBackward(dres, bw.dln2w, bw.dln2b, dln, ba.res2, bw.ln2w, ba.ln2Mean, ba.ln2Rstd, N)
	if err := m.donePart(ctx, bw, 2, true); err != nil {
		return err
	}
	// Attention. dres now holds dL/dres2, which flows unchanged to x.
	datty := m.datty[:N*d.Cl]
	if err := m.needPart(ctx, bw, 1, true); err != nil {
		return err
	}
	m.linearBackward(datty, bw.dprojW, bw.dprojB, dres, ba.atty, bw.projW, N, d.Cl, C, false)
	if err := m.loraLayerBackward(ctx, ba, bw, loraProj, datty, dres, ba.atty, N); err != nil {
		return err
	}
	if err := m.donePart(ctx, bw, 1, true); err != nil {
		return err
	}
	if err := m.needPart(ctx, bw, 0, true); err != nil {
		return err
	}
	dqkv := m.dqkv[:N*d.QKVl]
	m.attn.Backward(dqkv, datty, ba.qkv, ba.atty, ba.att, B, T, d.Cl, d.NHl)
	if m.rope != nil {
		m.rope.BackwardGQA(dqkv, B, T, d.Cl, d.NHl, d.NKVl, 0)
	}
	if m.kvrep != nil {
		if err := m.kvrep.backward(ctx, m, bw, dln, dqkv, ba.ln1, N); err != nil {
			return err
		}
	} else {
		m.linearBackward(dln, bw.dattnW, bw.dattnB, dqkv, ba.ln1, bw.attnW, N, C, d.QKVl, false)
	}
	if err := m.loraLayerBackward(ctx, ba, bw, loraQKV, dln, dqkv, ba.ln1, N); err != nil {
		return err
	}
	if err := m.tp.AllReduceSum(ctx, dln); err != nil {
		return fmt.Errorf("attention input gradient all-reduce: %w", err)
	}
	m.normBackward(dres, bw.dln1w, bw.dln1b, dln, x, bw.ln1w, ba.ln1Mean, ba.ln1Rstd, N)
	return m.donePart(ctx, bw, 0, true)
}

// normBackward accumulates dinp, dw and db (N, C) of the configured
// normalization. RMSNorm, and LayerNorm with a bias, are split over the
// compute goroutines in two passes with the serial row functions' bits:
// rows for the row statistics and dinp, then columns for dw and db (each
// column summed over the rows in order).
func (m *GPT) normBackward(dinp, dw, db, dout, inp, w, mean, rstd []float32, N int) {
	C := m.Config.NEmbd
	m.clearIfStale(dw)
	m.clearIfStale(db)
	rms := m.Config.Norm == RMSNorm
	switch {
	case rms && m.threads() == 1:
		RMSNormBackward(dinp, dw, dout, inp, w, rstd, N, C)
		return
	case rms:
		mean, db = nil, nil
	case db == nil || m.threads() == 1 || len(m.lnStats) < 2*N:
		LayerNormBackward(dinp, dw, db, dout, inp, w, mean, rstd, N, C)
		return
	}
	rt := &m.split.normBackRows
	rt.m, rt.W, rt.rms, rt.out, rt.dout, rt.x, rt.w, rt.mean, rt.rstd = m, C, rms, dinp, dout, inp, w, mean, rstd
	runSplit(m, rt, N, rowsPerPart(C))
	pt := &m.split.normBackParams
	pt.N, pt.W, pt.rms, pt.dw, pt.db, pt.dout, pt.x, pt.mean, pt.rstd = N, C, rms, dw, db, dout, inp, mean, rstd
	runSplit(m, pt, C, max(16, minSplitValues/max(N, 1)))
}

// activateBackward writes dinp (N, FC) from the activation's input inp
// and output gradient dout (N, H); rows split over the compute goroutines.
func (m *GPT) activateBackward(dinp, inp, dout []float32, N, H int) {
	t := &m.split.activateBack
	t.m, t.W, t.out, t.a, t.dout = m, H, dinp, inp, dout
	runSplit(m, t, N, rowsPerPart(H))
}

// activateBackwardBias is activateBackward for tanh GELU that also adds
// the column sums of dinp (N, H) to db (H), the bias gradient of the layer
// before, as biasGrad would (rows in order per column), so the bits do not
// depend on the thread count. On one goroutine it is one fused pass. On
// several, the GELU runs split by rows and biasGrad sums the columns
// after it: the fused pass split by column ranges (each goroutine half of
// every row) ran slower on 2 goroutines than on 1 (gpt2s: 5.3 vs 4.2 ms
// per step), the two split passes take 3.5.
func (m *GPT) activateBackwardBias(dinp, inp, dout, db []float32, N, H int) {
	if m.threads() > 1 {
		m.activateBackward(dinp, inp, dout, N, H)
		m.biasGrad(db, dinp, N, H)
		return
	}
	m.clearIfStale(db)
	t := &m.split.geluBackBias
	t.N, t.W, t.out, t.a, t.dout, t.bias = N, H, dinp, inp, dout, db
	runSplit(m, t, H, max(16, minSplitValues/max(N, 1)))
}

// activateBackwardRows is activateBackward on rows [lo, hi).
func (m *GPT) activateBackwardRows(dinp, inp, dout []float32, lo, hi, H int) {
	switch m.Config.Activation {
	case SwiGLU:
		SwiGLUBackward(dinp[lo*2*H:hi*2*H], inp[lo*2*H:hi*2*H], dout[lo*H:hi*H], hi-lo, H)
	default:
		GELUBackward(dinp[lo*H:hi*H], inp[lo*H:hi*H], dout[lo*H:hi*H], m.Config.Activation == GELUErf)
	}
}

// biasGrad: db (OC) += column sums of dout (N, OC), in row order;
// columns split over the compute goroutines.
func (m *GPT) biasGrad(db, dout []float32, N, OC int) {
	m.clearIfStale(db)
	t := &m.split.columnSums
	t.N, t.W, t.out, t.a, t.align = N, OC, db, dout, true
	runSplit(m, t, OC, max(16, minSplitValues/max(N, 1)))
}

// gradBeta is the beta of a GEMM adding its product to the gradient g: 0
// when g is stale after Params.ResetGrad (the product overwrites it, same
// bits as clearing and adding), else 1.
func (m *GPT) gradBeta(g []float32) float32 {
	if m.Params.claim(g) {
		return 0
	}
	return 1
}

// clearIfStale clears g if it is stale after Params.ResetGrad, for
// writers that can only add (scatters, row loops): the small gradients.
func (m *GPT) clearIfStale(g []float32) {
	if m.Params.claim(g) {
		clear(g)
	}
}
