package model

import (
	"fmt"

	"github.com/strand-ml/strand/gemm"
)

// GPT is a decoder-only transformer with preallocated activations for
// batches of up to MaxB sequences of up to MaxT positions.
type GPT struct {
	Config Config
	Params *Params
	MaxB   int
	MaxT   int

	gemm *gemm.Engine
	attn *Attention
	w    weights // typed views into Params
	acts activations

	// shape of the last Forward, needed by Backward
	b, t int
	// inputs and targets of the last Forward (copied)
	tokens, targets []int32
}

// blockWeights are one transformer block's parameter views.
type blockWeights struct {
	ln1w, ln1b, attnW, attnB, projW, projB []float32
	ln2w, ln2b, fcW, fcB, fcProjW, fcProjB []float32
	// gradients, same order
	dln1w, dln1b, dattnW, dattnB, dprojW, dprojB []float32
	dln2w, dln2b, dfcW, dfcB, dfcProjW, dfcProjB []float32
}

type weights struct {
	wte, wpe, lnfw, lnfb     []float32
	dwte, dwpe, dlnfw, dlnfb []float32
	blocks                   []blockWeights
}

// blockActs are one block's saved activations.
type blockActs struct {
	ln1, ln1Mean, ln1Rstd []float32 // (N, C), (N), (N)
	qkv                   []float32 // (N, 3C)
	att                   []float32 // (B, NH, T, T)
	atty                  []float32 // (N, C)
	res2                  []float32 // (N, C) residual after attention
	ln2, ln2Mean, ln2Rstd []float32
	fch                   []float32 // (N, FC) pre-activation, FC = H or 2H
	fchAct                []float32 // (N, H)
	res3                  []float32 // (N, C) block output
}

type activations struct {
	encoded               []float32 // (N, C)
	blocks                []blockActs
	lnf, lnfMean, lnfRstd []float32
	logits                []float32 // (N, V); holds probabilities after Forward with targets
	losses                []float32 // (N)
	// backward scratch
	dres, dln, datty, dqkv []float32
	dfch, dfchAct          []float32
}

// New builds a model for cfg with activations for batches up to maxB x maxT,
// running GEMMs on e. Parameters are zero until Init or a checkpoint load.
func New(cfg Config, maxB, maxT int, e *gemm.Engine) (*GPT, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if maxB <= 0 || maxT <= 0 {
		return nil, fmt.Errorf("model: batch %d and sequence length %d must be positive", maxB, maxT)
	}
	if cfg.Position == PosLearned && maxT > cfg.NPositions {
		return nil, fmt.Errorf("model: sequence length %d exceeds the %d positions of a learned-position model", maxT, cfg.NPositions)
	}
	m := &GPT{Config: cfg, MaxB: maxB, MaxT: maxT, gemm: e}
	m.Params = buildParams(paramSpecs(cfg))
	m.attn = NewAttention(e.Threads(), maxT)
	m.attn.SetEngine(e)
	m.bindWeights()
	m.allocActivations()
	return m, nil
}

// Init draws fresh parameters from seed (see Params.Init).
func (m *GPT) Init(seed uint64) { m.Params.Init(seed) }

func (m *GPT) bindWeights() {
	get := func(name string) ([]float32, []float32) {
		p, ok := m.Params.Lookup(name)
		if !ok {
			return nil, nil
		}
		return p.Data, p.Grad
	}
	w := &m.w
	w.wte, w.dwte = get("wte.weight")
	w.wpe, w.dwpe = get("wpe.weight")
	w.lnfw, w.dlnfw = get("ln_f.weight")
	w.lnfb, w.dlnfb = get("ln_f.bias")
	w.blocks = make([]blockWeights, m.Config.NLayer)
	for l := range w.blocks {
		b := &w.blocks[l]
		p := fmt.Sprintf("h.%d.", l)
		b.ln1w, b.dln1w = get(p + "ln_1.weight")
		b.ln1b, b.dln1b = get(p + "ln_1.bias")
		b.attnW, b.dattnW = get(p + "attn.c_attn.weight")
		b.attnB, b.dattnB = get(p + "attn.c_attn.bias")
		b.projW, b.dprojW = get(p + "attn.c_proj.weight")
		b.projB, b.dprojB = get(p + "attn.c_proj.bias")
		b.ln2w, b.dln2w = get(p + "ln_2.weight")
		b.ln2b, b.dln2b = get(p + "ln_2.bias")
		b.fcW, b.dfcW = get(p + "mlp.c_fc.weight")
		b.fcB, b.dfcB = get(p + "mlp.c_fc.bias")
		b.fcProjW, b.dfcProjW = get(p + "mlp.c_proj.weight")
		b.fcProjB, b.dfcProjB = get(p + "mlp.c_proj.bias")
	}
}

func (m *GPT) fcWidth() int {
	if m.Config.Activation == SwiGLU {
		return 2 * m.Config.Hidden()
	}
	return m.Config.Hidden()
}

func (m *GPT) allocActivations() {
	cfg := m.Config
	N, C, V, H, NH, T := m.MaxB*m.MaxT, cfg.NEmbd, cfg.VocabSize, cfg.Hidden(), cfg.NHead, m.MaxT
	FC := m.fcWidth()
	f := func(n int) []float32 { return make([]float32, n) }
	a := &m.acts
	a.encoded = f(N * C)
	a.blocks = make([]blockActs, cfg.NLayer)
	for l := range a.blocks {
		a.blocks[l] = blockActs{
			ln1: f(N * C), ln1Mean: f(N), ln1Rstd: f(N),
			qkv: f(N * 3 * C), att: f(m.MaxB * NH * T * T), atty: f(N * C), res2: f(N * C),
			ln2: f(N * C), ln2Mean: f(N), ln2Rstd: f(N),
			fch: f(N * FC), fchAct: f(N * H), res3: f(N * C),
		}
	}
	a.lnf, a.lnfMean, a.lnfRstd = f(N*C), f(N), f(N)
	a.logits, a.losses = f(N*V), f(N)
	a.dres, a.dln, a.datty, a.dqkv = f(N*C), f(N*C), f(N*C), f(N*3*C)
	a.dfch, a.dfchAct = f(N*FC), f(N*H)
	m.tokens, m.targets = make([]int32, N), make([]int32, N)
}

// ActivationBytes is the memory held by saved activations and scratch.
func (m *GPT) ActivationBytes() int64 {
	var n int
	a := &m.acts
	n += len(a.encoded) + len(a.lnf) + len(a.lnfMean) + len(a.lnfRstd) + len(a.logits) + len(a.losses)
	n += len(a.dres) + len(a.dln) + len(a.datty) + len(a.dqkv) + len(a.dfch) + len(a.dfchAct)
	for _, b := range a.blocks {
		n += len(b.ln1) + len(b.ln1Mean) + len(b.ln1Rstd) + len(b.qkv) + len(b.att) + len(b.atty) + len(b.res2)
		n += len(b.ln2) + len(b.ln2Mean) + len(b.ln2Rstd) + len(b.fch) + len(b.fchAct) + len(b.res3)
	}
	return int64(n) * 4
}

func (m *GPT) norm(out, mean, rstd, inp, w, b []float32, N int) {
	C, eps := m.Config.NEmbd, float32(m.Config.LayerNormEps)
	if m.Config.Norm == RMSNorm {
		RMSNormForward(out, rstd, inp, w, N, C, eps)
		return
	}
	LayerNormForward(out, mean, rstd, inp, w, b, N, C, eps)
}

func (m *GPT) normBackward(dinp, dw, db, dout, inp, w, mean, rstd []float32, N int) {
	C := m.Config.NEmbd
	if m.Config.Norm == RMSNorm {
		RMSNormBackward(dinp, dw, dout, inp, w, rstd, N, C)
		return
	}
	LayerNormBackward(dinp, dw, db, dout, inp, w, mean, rstd, N, C)
}

// CheckInput validates a batch before it touches any buffer.
func (m *GPT) CheckInput(tokens, targets []int32, B, T int) error {
	if B <= 0 || B > m.MaxB {
		return fmt.Errorf("model: batch %d outside 1..%d", B, m.MaxB)
	}
	if T <= 0 || T > m.MaxT {
		if m.Config.Position == PosLearned && T > m.Config.NPositions {
			return fmt.Errorf("model: sequence length %d exceeds the %d trained positions of a learned-position model", T, m.Config.NPositions)
		}
		return fmt.Errorf("model: sequence length %d outside 1..%d", T, m.MaxT)
	}
	if len(tokens) != B*T {
		return fmt.Errorf("model: %d tokens for a %dx%d batch", len(tokens), B, T)
	}
	if targets != nil && len(targets) != B*T {
		return fmt.Errorf("model: %d targets for a %dx%d batch", len(targets), B, T)
	}
	V := int32(m.Config.VocabSize)
	for i, t := range tokens {
		if t < 0 || t >= V {
			return fmt.Errorf("model: token id %d at position %d is outside the vocabulary of %d", t, i, V)
		}
	}
	for i, t := range targets {
		if t != IgnoreIndex && (t < 0 || t >= V) {
			return fmt.Errorf("model: target id %d at position %d is outside the vocabulary of %d", t, i, V)
		}
	}
	return nil
}

// Forward runs the model on tokens (B, T). With targets it returns the sum of
// per-position cross-entropy losses and the number of counted positions
// (targets equal to IgnoreIndex are skipped); the logits buffer then holds
// probabilities, ready for Backward. Without targets it leaves logits in
// Logits() and returns zeros.
func (m *GPT) Forward(tokens, targets []int32, B, T int) (lossSum float64, count int, err error) {
	if err := m.CheckInput(tokens, targets, B, T); err != nil {
		return 0, 0, err
	}
	cfg := m.Config
	N, C, V, H, NH := B*T, cfg.NEmbd, cfg.VocabSize, cfg.Hidden(), cfg.NHead
	FC := m.fcWidth()
	m.b, m.t = B, T
	copy(m.tokens, tokens)
	m.targets = m.targets[:cap(m.targets)]
	if targets != nil {
		copy(m.targets, targets)
	}
	m.targets = m.targets[:N]
	a, w := &m.acts, &m.w

	EmbeddingForward(a.encoded, tokens, w.wte, w.wpe, B, T, C)
	x := a.encoded
	for l := 0; l < cfg.NLayer; l++ {
		ba, bw := &a.blocks[l], &w.blocks[l]
		m.norm(ba.ln1, ba.ln1Mean, ba.ln1Rstd, x, bw.ln1w, bw.ln1b, N)
		LinearForward(m.gemm, ba.qkv, ba.ln1, bw.attnW, bw.attnB, N, C, 3*C)
		m.attn.Forward(ba.atty, ba.att, ba.qkv, B, T, C, NH)
		LinearForward(m.gemm, ba.res2, ba.atty, bw.projW, bw.projB, N, C, C)
		ResidualAdd(ba.res2[:N*C], x)
		m.norm(ba.ln2, ba.ln2Mean, ba.ln2Rstd, ba.res2, bw.ln2w, bw.ln2b, N)
		LinearForward(m.gemm, ba.fch, ba.ln2, bw.fcW, bw.fcB, N, C, FC)
		m.activate(ba.fchAct, ba.fch, N, H)
		LinearForward(m.gemm, ba.res3, ba.fchAct, bw.fcProjW, bw.fcProjB, N, H, C)
		ResidualAdd(ba.res3[:N*C], ba.res2)
		x = ba.res3
	}
	m.norm(a.lnf, a.lnfMean, a.lnfRstd, x, w.lnfw, w.lnfb, N)
	// logits (N, V) = lnf (N, C) @ wte^T : the head is tied to the embedding.
	m.gemm.Sgemm(false, true, N, V, C, 1, a.lnf, C, w.wte, C, 0, a.logits, V)
	if targets == nil {
		return 0, 0, nil
	}
	lossSum, count = CrossEntropyForward(a.losses, a.logits, targets, N, V)
	return lossSum, count, nil
}

// Logits returns the (B, T, V) logits of the last Forward without targets.
func (m *GPT) Logits() []float32 {
	return m.acts.logits[:m.b*m.t*m.Config.VocabSize]
}

// Losses returns the per-position losses (B*T) of the last Forward.
func (m *GPT) Losses() []float32 { return m.acts.losses[:m.b*m.t] }

func (m *GPT) activate(out, inp []float32, N, H int) {
	switch m.Config.Activation {
	case SwiGLU:
		SwiGLUForward(out, inp, N, H)
	default:
		GELUForward(out[:N*H], inp[:N*H], m.Config.Activation == GELUErf)
	}
}

func (m *GPT) activateBackward(dinp, inp, dout []float32, N, H int) {
	switch m.Config.Activation {
	case SwiGLU:
		SwiGLUBackward(dinp, inp, dout, N, H)
	default:
		GELUBackward(dinp[:N*H], inp[:N*H], dout[:N*H], m.Config.Activation == GELUErf)
	}
}

// Backward accumulates parameter gradients for the last Forward (which must
// have had targets). lossScale multiplies dLoss/dlogit of every counted
// position: pass 1/(number of counted positions in the whole global batch)
// to get the gradient of the mean loss.
func (m *GPT) Backward(lossScale float32) {
	cfg := m.Config
	B, T := m.b, m.t
	N, C, V, H, NH := B*T, cfg.NEmbd, cfg.VocabSize, cfg.Hidden(), cfg.NHead
	FC := m.fcWidth()
	a, w := &m.acts, &m.w

	dlogits := a.logits[:N*V]
	CrossEntropyBackward(dlogits, m.targets, N, V, lossScale)
	// lnf = dlogits @ wte ; dwte += dlogits^T @ lnf
	dlnf := a.dln[:N*C]
	m.gemm.Sgemm(false, false, N, C, V, 1, dlogits, V, w.wte, C, 0, dlnf, C)
	m.gemm.Sgemm(true, false, V, C, N, 1, dlogits, V, a.lnf, C, 1, w.dwte, C)

	dres := a.dres[:N*C]
	clear(dres)
	last := a.encoded
	if cfg.NLayer > 0 {
		last = a.blocks[cfg.NLayer-1].res3
	}
	m.normBackward(dres, w.dlnfw, w.dlnfb, dlnf, last, w.lnfw, a.lnfMean, a.lnfRstd, N)

	for l := cfg.NLayer - 1; l >= 0; l-- {
		ba, bw := &a.blocks[l], &w.blocks[l]
		x := a.encoded
		if l > 0 {
			x = a.blocks[l-1].res3
		}
		// MLP: dres holds dL/dres3, which flows unchanged to res2 (residual).
		dfchAct, dfch := a.dfchAct[:N*H], a.dfch[:N*FC]
		LinearBackward(m.gemm, dfchAct, bw.dfcProjW, bw.dfcProjB, dres, ba.fchAct, bw.fcProjW, N, H, C, false)
		m.activateBackward(dfch, ba.fch, dfchAct, N, H)
		dln := a.dln[:N*C]
		LinearBackward(m.gemm, dln, bw.dfcW, bw.dfcB, dfch, ba.ln2, bw.fcW, N, C, FC, false)
		m.normBackward(dres, bw.dln2w, bw.dln2b, dln, ba.res2, bw.ln2w, ba.ln2Mean, ba.ln2Rstd, N)
		// attention: dres now holds dL/dres2, which flows unchanged to x.
		datty := a.datty[:N*C]
		LinearBackward(m.gemm, datty, bw.dprojW, bw.dprojB, dres, ba.atty, bw.projW, N, C, C, false)
		dqkv := a.dqkv[:N*3*C]
		m.attn.Backward(dqkv, datty, ba.qkv, ba.att, B, T, C, NH)
		LinearBackward(m.gemm, dln, bw.dattnW, bw.dattnB, dqkv, ba.ln1, bw.attnW, N, C, 3*C, false)
		m.normBackward(dres, bw.dln1w, bw.dln1b, dln, x, bw.ln1w, ba.ln1Mean, ba.ln1Rstd, N)
	}
	EmbeddingBackward(w.dwte, w.dwpe, dres, m.tokens, B, T, C)
}
