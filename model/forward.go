package model

import (
	"context"
	"fmt"
)

// ForwardActs runs this rank's part of the model on a batch of B x T,
// saving activations in a:
//   - the first stage embeds tokens; later stages take hiddenIn (B*T, C),
//     the previous stage's Acts.Output;
//   - the last stage computes logits and, when targets is not nil, the
//     loss: it returns the summed loss and the number of counted positions.
//
// With tensor parallelism the ranks of the TP group must call it together.
func (m *GPT) ForwardActs(ctx context.Context, a *Acts, tokens []int32, hiddenIn []float32, targets []int32, B, T int) (lossSum float64, count int, err error) {
	d := m.local
	if B > a.maxB || T > a.maxT {
		return 0, 0, fmt.Errorf("model: batch %dx%d exceeds the activations' %dx%d", B, T, a.maxB, a.maxT)
	}
	if !a.first {
		tokens = nil
	}
	if !a.last {
		targets = nil
	}
	if err := m.CheckInput(tokens, targets, B, T); err != nil {
		return 0, 0, err
	}
	if err := a.seg.prepare(B, T); err != nil {
		return 0, 0, err
	}
	N, C := B*T, d.C
	a.b, a.t, a.hasTargets = B, T, targets != nil
	if targets != nil {
		copy(a.targets, targets)
	}
	x := a.input[:N*C]
	if a.first {
		if tokens == nil {
			return 0, 0, fmt.Errorf("model: the first stage needs tokens")
		}
		copy(a.tokens, tokens)
		var err error
		switch {
		case m.chunked():
			pos := func(n int) int { return n % T }
			if a.seg.ids != nil {
				pos = func(n int) int { return int(a.seg.pos[n]) }
			}
			err = m.embedChunked(ctx, x, tokens, pos, N)
		case a.seg.ids != nil:
			err = m.embedSegmented(ctx, x, tokens, a.seg.pos, B, T)
		default:
			err = m.embed(ctx, x, tokens, B, T)
		}
		if err != nil {
			return 0, 0, err
		}
	} else {
		if len(hiddenIn) != N*C {
			return 0, 0, fmt.Errorf("model: stage input has %d values, want %dx%dx%d", len(hiddenIn), B, T, C)
		}
		copy(x, hiddenIn)
	}
	m.attn.SegStart = a.seg.segStart()
	if n := m.laneCount(B, T); n > 1 && a.recompute == "" {
		if err := m.forwardLanes(ctx, a, n, B, T); err != nil {
			return 0, 0, err
		}
		x = a.blocks[len(a.blocks)-1].res3[:N*C]
	} else {
		for i := range a.blocks {
			if err := m.forwardBlock(ctx, a, i, x, B, T); err != nil {
				return 0, 0, fmt.Errorf("block %d: %w", m.blockID(a, i), err)
			}
			x = a.blocks[i].res3[:N*C]
		}
	}
	if !a.last {
		return 0, 0, nil
	}
	if err := m.need(ctx, m.headUnit(), false); err != nil {
		return 0, 0, err
	}
	lossSum, count, err = m.headForward(ctx, a, x, targets, N)
	if err != nil {
		return 0, 0, err
	}
	if err := m.done(ctx, m.headUnit(), false); err != nil {
		return 0, 0, err
	}
	return lossSum, count, nil
}

// blockID is the global index of block i of a's chunk.
func (m *GPT) blockID(a *Acts, i int) int {
	lo := a.lo + i
	for _, s := range m.Layout.Spans() {
		if lo < s.Hi-s.Lo {
			return s.Lo + lo
		}
		lo -= s.Hi - s.Lo
	}
	return -1
}

// headForward runs ln_f, the logits and (with targets) the loss over the
// last block's output x (N, C).
func (m *GPT) headForward(ctx context.Context, a *Acts, x []float32, targets []int32, N int) (float64, int, error) {
	d, C := m.local, m.local.C
	w := &m.w
	m.norm(a.lnf, a.lnfMean, a.lnfRstd, x, w.lnfw, w.lnfb, N)
	if a.head.hiddenOnly {
		if targets != nil {
			return 0, 0, fmt.Errorf("model: a hidden-only forward (SetHiddenOnly) takes no targets")
		}
		return 0, 0, nil
	}
	// logits (N, Vl) = lnf (N, C) @ head_local^T : the head is the tied
	// embedding (or lm_head), and each TP rank holds a slice of the vocabulary.
	logits := a.logits[:N*d.Vl]
	if m.chunked() {
		if err := m.logitsChunked(ctx, logits, a.lnf, N); err != nil {
			return 0, 0, err
		}
	} else {
		m.mm(false, true, N, d.Vl, C, 1, a.lnf, C, w.head, C, 0, logits, d.Vl)
	}
	if targets == nil {
		return 0, 0, nil
	}
	return m.ce.Forward(ctx, a.losses, logits, targets, N, d.Vl)
}

// embed writes wte[token] + wpe[position] into x (N, C). With a
// vocabulary-parallel wte each rank contributes the rows it holds (zeros
// elsewhere) and an all-reduce sums them.
func (m *GPT) embed(ctx context.Context, x []float32, tokens []int32, B, T int) error {
	d, w := m.local, &m.w
	C := d.C
	if m.tp.Size() == 1 {
		EmbeddingForward(x, tokens, w.wte, w.wpe, B, T, C)
		return nil
	}
	for n, tok := range tokens[:B*T] {
		row := x[n*C : (n+1)*C]
		if v := int(tok) - d.V0; v >= 0 && v < d.Vl {
			copy(row, w.wte[v*C:(v+1)*C])
		} else {
			clear(row)
		}
	}
	if err := m.tp.AllReduceSum(ctx, x[:B*T*C]); err != nil {
		return fmt.Errorf("embedding all-reduce: %w", err)
	}
	if w.wpe != nil {
		for n := 0; n < B*T; n++ {
			ResidualAdd(x[n*C:(n+1)*C], w.wpe[(n%T)*C:(n%T+1)*C])
		}
	}
	return nil
}

// blockForward runs one pre-LN transformer block on x (N, C).
func (m *GPT) blockForward(ctx context.Context, ba *blockActs, bw *blockWeights, x []float32, B, T int) error {
	d := m.local
	N, C := B*T, d.C
	// (under a residency each part's weights are asked for in turn)
	if err := m.needPart(ctx, bw, 0, false); err != nil {
		return err
	}
	m.norm(ba.ln1, ba.ln1Mean, ba.ln1Rstd, x, bw.ln1w, bw.ln1b, N)
	// column-parallel qkv: this rank's heads only
	attnW, attnB := bw.attnW, bw.attnB
	if m.kvrep != nil { // c_attn held whole: this rank's columns, gathered
		attnW, attnB = m.kvrep.gather(bw)
	}
	m.linearForward(ba.qkv, ba.ln1, attnW, attnB, N, C, d.QKVl)
	if err := m.loraLayerForward(ctx, ba, bw, loraQKV, ba.qkv, ba.ln1, N); err != nil {
		return err
	}
	if err := m.donePart(ctx, bw, 0, false); err != nil {
		return err
	}
	if m.rope != nil {
		// qkv keeps the rotated q and k: attention's backward needs them
		m.rope.ForwardGQA(ba.qkv, B, T, d.Cl, d.NHl, d.NKVl, 0)
	}
	m.attn.Forward(ba.atty, ba.att, ba.qkv, B, T, d.Cl, d.NHl)
	// row-parallel projection: partial sums, reduced, then bias and residual
	res2 := ba.res2[:N*C]
	if err := m.needPart(ctx, bw, 1, false); err != nil {
		return err
	}
	m.linearForward(res2, ba.atty, bw.projW, nil, N, d.Cl, C)
	if err := m.loraLayerForward(ctx, ba, bw, loraProj, res2, ba.atty, N); err != nil {
		return err
	}
	if err := m.tp.AllReduceSum(ctx, res2); err != nil {
		return fmt.Errorf("attention output all-reduce: %w", err)
	}
	m.addBiasResidual(res2, bw.projB, x, N, C)
	if err := m.donePart(ctx, bw, 1, false); err != nil {
		return err
	}
	if err := m.needPart(ctx, bw, 2, false); err != nil {
		return err
	}
	m.norm(ba.ln2, ba.ln2Mean, ba.ln2Rstd, res2, bw.ln2w, bw.ln2b, N)
	// tanh GELU takes the fc bias in its own pass over fch (same bits as
	// adding it first), unless a LoRA adapter must be added after the bias
	fcB := bw.fcB
	if m.fusedGELUBias(bw) {
		fcB = nil
	}
	m.linearForward(ba.fch, ba.ln2, bw.fcW, fcB, N, C, d.FCl)
	if err := m.loraLayerForward(ctx, ba, bw, loraFC, ba.fch, ba.ln2, N); err != nil {
		return err
	}
	m.mlpActivation(ba, bw, N)
	if err := m.donePart(ctx, bw, 2, false); err != nil {
		return err
	}
	if err := m.needPart(ctx, bw, 3, false); err != nil {
		return err
	}
	res3 := ba.res3[:N*C]
	m.linearForward(res3, ba.fchAct, bw.fcProjW, nil, N, d.Hl, C)
	if err := m.loraLayerForward(ctx, ba, bw, loraFCProj, res3, ba.fchAct, N); err != nil {
		return err
	}
	if err := m.tp.AllReduceSum(ctx, res3); err != nil {
		return fmt.Errorf("MLP output all-reduce: %w", err)
	}
	m.addBiasResidual(res3, bw.fcProjB, res2, N, C)
	return m.donePart(ctx, bw, 3, false)
}

// fusedGELUBias says whether tanh GELU takes the fc bias in its own pass
// over fch (same bits as adding it first): not when a LoRA adapter must be
// added after the bias.
func (m *GPT) fusedGELUBias(bw *blockWeights) bool {
	return m.Config.Activation == GELUTanh && bw.fcB != nil && (bw.lora == nil || bw.lora.a[loraFC] == nil && bw.lora.a[loraGate] == nil && bw.lora.a[loraUp] == nil)
}

// mlpActivation computes the MLP activation fchAct from its
// pre-activation fch (N rows; the fused tanh GELU adds the fc bias into
// fch first, in place).
func (m *GPT) mlpActivation(ba *blockActs, bw *blockWeights, N int) {
	if m.fusedGELUBias(bw) {
		m.activateBias(ba.fchAct, ba.fch, bw.fcB, N, m.local.Hl)
	} else {
		m.activate(ba.fchAct, ba.fch, N, m.local.Hl)
	}
}

// addBiasResidual: out[n,:] += bias + res[n,:] (N, C), rows split over
// the compute goroutines.
func (m *GPT) addBiasResidual(out, bias, res []float32, N, C int) {
	t := &m.split.biasResidual
	t.W, t.out, t.bias, t.res = C, out, bias, res
	runSplit(m, t, N, rowsPerPart(C))
}

// addBias: out[n,:] += bias (N, OC), rows split over the compute goroutines.
func (m *GPT) addBias(out, bias []float32, N, OC int) {
	t := &m.split.addRows
	t.W, t.out, t.bias = OC, out, bias
	runSplit(m, t, N, rowsPerPart(OC))
}

// norm is the configured normalization of inp (N, C) into out, keeping
// mean (LayerNorm) and rstd per row; rows split over the compute goroutines.
func (m *GPT) norm(out, mean, rstd, inp, w, b []float32, N int) {
	t := &m.split.norm
	C := m.Config.NEmbd
	t.m, t.W, t.out, t.mean, t.rstd, t.a, t.w, t.bias = m, C, out, mean, rstd, inp, w, b
	runSplit(m, t, N, rowsPerPart(C))
}

// normRows is norm on N rows (the slices start at the first row; mean is
// unused by RMSNorm).
func (m *GPT) normRows(out, mean, rstd, inp, w, b []float32, N int) {
	C, eps := m.Config.NEmbd, float32(m.Config.LayerNormEps)
	if m.Config.Norm == RMSNorm {
		RMSNormForward(out, rstd, inp, w, N, C, eps)
		return
	}
	LayerNormForward(out, mean, rstd, inp, w, b, N, C, eps)
}

// activate is the MLP activation of inp (N, FC) into out (N, H); rows
// split over the compute goroutines.
func (m *GPT) activate(out, inp []float32, N, H int) {
	t := &m.split.activate
	t.m, t.W, t.out, t.a = m, H, out, inp
	runSplit(m, t, N, rowsPerPart(H))
}

// activateBias is activate for tanh GELU with the bias (H) of the layer
// before it added to inp (N, H) in the same pass (kept in inp for the
// backward); rows split over the compute goroutines.
func (m *GPT) activateBias(out, inp, bias []float32, N, H int) {
	t := &m.split.biasGELU
	t.W, t.out, t.a, t.bias = H, out, inp, bias
	runSplit(m, t, N, rowsPerPart(H))
}

// activateRows is activate on rows [lo, hi).
func (m *GPT) activateRows(out, inp []float32, lo, hi, H int) {
	switch m.Config.Activation {
	case SwiGLU:
		SwiGLUForward(out[lo*H:hi*H], inp[lo*2*H:hi*2*H], hi-lo, H)
	default:
		GELUForward(out[lo*H:hi*H], inp[lo*H:hi*H], m.Config.Activation == GELUErf)
	}
}
