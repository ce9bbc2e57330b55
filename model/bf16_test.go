package model

import (
	"math"
	"testing"

	"github.com/strand-ml/strand/gemm"
)

// TestBF16ProductsStayCloseToFloat32 runs one forward and backward with
// bf16 products and compares the loss and every gradient with float32: bf16
// keeps 8 bits of mantissa, so products are off by about 2^-9 relative, and
// gradients must still point the same way (cosine > 0.999) with norms within
// a few percent. Then it checks that the float32 path is unchanged after
// turning bf16 off, and that a parameter change reaches the bf16 copy only
// through SyncBF16.
func TestBF16ProductsStayCloseToFloat32(t *testing.T) {
	cfg := Config{VocabSize: 96, NLayer: 2, NHead: 4, NEmbd: 64, NPositions: 32, LayerNormEps: 1e-5,
		Activation: GELUTanh, Norm: LayerNorm, Position: PosLearned, InitStd: 0.05}
	B, T := 2, 32
	tok, tgt := testBatch(B, T, cfg.VocabSize)
	run := func(bf16 bool) (float64, []float32) {
		m, err := New(cfg, B, T, gemm.New(2))
		if err != nil {
			t.Fatal(err)
		}
		m.Init(7)
		m.SetBF16(bf16)
		sum, n, err := m.Forward(tok, tgt, B, T)
		if err != nil {
			t.Fatal(err)
		}
		m.Params.ZeroGrad()
		m.Backward(float32(1 / float64(n)))
		return sum / float64(n), append([]float32(nil), m.Params.Grad...)
	}
	l32, g32 := run(false)
	l16, g16 := run(true)
	if e := math.Abs(l16-l32) / l32; e > 2e-3 || l16 == l32 {
		t.Fatalf("bf16 loss %.6f vs float32 %.6f (relative %.2g; want nonzero and < 2e-3)", l16, l32, e)
	}
	var dot, n32, n16 float64
	for i := range g32 {
		dot += float64(g32[i]) * float64(g16[i])
		n32 += float64(g32[i]) * float64(g32[i])
		n16 += float64(g16[i]) * float64(g16[i])
	}
	if cos := dot / math.Sqrt(n32*n16); cos < 0.999 {
		t.Fatalf("bf16 gradient cosine %.5f with float32, want > 0.999", cos)
	}
	if r := math.Sqrt(n16 / n32); math.Abs(r-1) > 0.03 {
		t.Fatalf("bf16 gradient norm ratio %.4f, want within 3%%", r)
	}

	m, err := New(cfg, B, T, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	m.Init(7)
	m.SetBF16(true)
	before, _, _ := m.Forward(tok, tgt, B, T)
	for i := range m.Params.Data {
		m.Params.Data[i] *= 1.5
	}
	stale, _, _ := m.Forward(tok, tgt, B, T)
	m.SyncBF16()
	synced, _, _ := m.Forward(tok, tgt, B, T)
	if stale == synced || math.Abs(stale-before) > 0.05*before {
		t.Fatalf("losses before/stale/synced %.5f %.5f %.5f: the bf16 copy should follow Params only after SyncBF16", before, stale, synced)
	}
	m.SetBF16(false)
	off, _, _ := m.Forward(tok, tgt, B, T)
	ref, _ := func() (float64, int) {
		r, _ := New(cfg, B, T, gemm.New(1))
		copy(r.Params.Data, m.Params.Data)
		s, n, _ := r.Forward(tok, tgt, B, T)
		return s, n
	}()
	if off != ref {
		t.Fatalf("after SetBF16(false) loss sum %.8f, a float32 model gives %.8f", off, ref)
	}
}

// TestFP16ProductsRoundAndOverflow: fp16-rounded products stay close to
// float32, and a loss scale that pushes output gradients past fp16's 65504
// turns gradients into Inf or NaN -- the overflow dynamic loss scaling
// detects -- while the same scale in float32 stays finite.
func TestFP16ProductsRoundAndOverflow(t *testing.T) {
	cfg := Config{VocabSize: 64, NLayer: 2, NHead: 2, NEmbd: 32, NPositions: 16, LayerNormEps: 1e-5,
		Activation: GELUTanh, Norm: LayerNorm, Position: PosLearned, InitStd: 0.05}
	B, T := 2, 16
	tok, tgt := testBatch(B, T, cfg.VocabSize)
	run := func(fp16 bool, scale float32) (float64, bool) {
		m, err := New(cfg, B, T, gemm.New(1))
		if err != nil {
			t.Fatal(err)
		}
		m.Init(3)
		m.SetFP16(fp16)
		if m.FP16() != fp16 || m.BF16() {
			t.Fatalf("SetFP16(%v): FP16 %v, BF16 %v", fp16, m.FP16(), m.BF16())
		}
		sum, n, err := m.Forward(tok, tgt, B, T)
		if err != nil {
			t.Fatal(err)
		}
		m.Params.ZeroGrad()
		m.Backward(scale / float32(n))
		finite := true
		for _, g := range m.Params.Grad {
			if math.IsNaN(float64(g)) || math.IsInf(float64(g), 0) {
				finite = false
			}
		}
		return sum / float64(n), finite
	}
	l32, _ := run(false, 1)
	l16, ok := run(true, 1)
	if e := math.Abs(l16-l32) / l32; e > 2e-3 || l16 == l32 || !ok {
		t.Fatalf("fp16 loss %.6f vs float32 %.6f (relative %.2g), finite gradients %v", l16, l32, e, ok)
	}
	if _, ok := run(false, 1e8); !ok {
		t.Fatal("float32 gradients overflowed at loss scale 1e8")
	}
	if _, ok := run(true, 1e8); ok {
		t.Fatal("fp16 gradients stayed finite at loss scale 1e8")
	}
}

// TestBF16WithLoRA: under LoRA the frozen base weights are outside Params,
// so bf16 rounds them like activations; with a single short sequence a
// weight is wider than any activation operand, and the scratch must grow
// rather than fail. The loss stays close to the float32 LoRA model's.
func TestBF16WithLoRA(t *testing.T) {
	cfg := Config{VocabSize: 32, NLayer: 1, NHead: 2, NEmbd: 64, NPositions: 4, LayerNormEps: 1e-5,
		Activation: GELUTanh, Norm: LayerNorm, Position: PosLearned, InitStd: 0.05}
	B, T := 1, 4
	tok, tgt := testBatch(B, T, cfg.VocabSize)
	run := func(bf16 bool) float64 {
		m := loraModel(t, cfg, Full(cfg), B, T)
		m.SetBF16(bf16)
		sum, n, err := m.Forward(tok, tgt, B, T)
		if err != nil {
			t.Fatal(err)
		}
		m.Params.ZeroGrad()
		m.Backward(float32(1 / float64(n)))
		return sum / float64(n)
	}
	l32, l16 := run(false), run(true)
	if e := math.Abs(l16-l32) / l32; e > 5e-3 {
		t.Fatalf("bf16 LoRA loss %.6f vs float32 %.6f", l16, l32)
	}
}

func TestPrecisionIsOneSetting(t *testing.T) {
	cfg := parallelTestConfig(GELUTanh, LayerNorm)
	m, err := New(cfg, 1, 4, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	m.Init(1)
	for _, p := range []Precision{BF16, FP16, FP32} {
		if err := m.SetPrecision(p); err != nil {
			t.Fatal(err)
		}
		if m.Precision() != p || m.BF16() != (p == BF16) || m.FP16() != (p == FP16) {
			t.Fatalf("after SetPrecision(%s): Precision %s, BF16 %v, FP16 %v", p, m.Precision(), m.BF16(), m.FP16())
		}
	}
	if err := m.SetPrecision("fp8"); err == nil {
		t.Fatal("fp8 accepted")
	}
	if _, err := ParsePrecision("int4"); err == nil {
		t.Fatal("ParsePrecision(int4) accepted")
	}
	// SyncPrecision refreshes the active copy: a changed weight changes
	// the bf16 product only after it
	if err := m.SetPrecision(BF16); err != nil {
		t.Fatal(err)
	}
	tok := []int32{1, 2, 3, 4}
	_, _, _ = m.Forward(tok, nil, 1, 4)
	before := append([]float32(nil), m.Logits()...)
	p, _ := m.Params.Lookup("h.0.mlp.c_fc.weight")
	for i := range p.Data {
		p.Data[i] *= 2
	}
	_, _, _ = m.Forward(tok, nil, 1, 4)
	stale := append([]float32(nil), m.Logits()...)
	m.SyncPrecision()
	_, _, _ = m.Forward(tok, nil, 1, 4)
	fresh := m.Logits()
	same := func(a, b []float32) bool {
		for i := range a {
			if a[i] != b[i] {
				return false
			}
		}
		return true
	}
	if !same(before, stale) || same(stale, fresh) {
		t.Fatal("SyncPrecision did not refresh the bf16 weight copy (or the product read float32 weights)")
	}
}
