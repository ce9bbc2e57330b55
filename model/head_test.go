package model

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/strand-ml/strand/gemm"
)

// TestLossWeights: the gradient with weights 2 on some positions and -1 on
// the others equals 2*grad(first group) - grad(second group), each group
// computed alone by masking the other's targets.
func TestLossWeights(t *testing.T) {
	cfg := segConfig(PosLearned)
	B, T := 2, 5
	m, err := New(cfg, B, T, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	m.Init(3)
	r := rand.New(rand.NewPCG(1, 1))
	tok, tgt := make([]int32, B*T), make([]int32, B*T)
	w := make([]float32, B*T)
	tgtA, tgtB := make([]int32, B*T), make([]int32, B*T)
	for i := range tok {
		tok[i], tgt[i] = int32(r.IntN(11)), int32(r.IntN(11))
		tgtA[i], tgtB[i] = IgnoreIndex, IgnoreIndex
		if i%3 == 0 {
			w[i], tgtA[i] = 2, tgt[i]
		} else {
			w[i], tgtB[i] = -1, tgt[i]
		}
	}
	ctx := context.Background()
	grad := func(targets []int32, weights []float32) []float32 {
		a := m.NewActs(B, T)
		a.SetLossWeights(weights)
		m.Params.ZeroGrad()
		if _, _, err := m.ForwardActs(ctx, a, tok, nil, targets, B, T); err != nil {
			t.Fatal(err)
		}
		if err := m.BackwardActs(ctx, a, nil, 0.5); err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), m.Params.Grad...)
	}
	got := grad(tgt, w)
	ga, gb := grad(tgtA, nil), grad(tgtB, nil)
	for i := range got {
		want := 2*ga[i] - gb[i]
		if math.Abs(float64(got[i]-want)) > 1e-5+1e-4*math.Abs(float64(want)) {
			t.Fatalf("grad[%d] = %g, want %g", i, got[i], want)
		}
	}
	a := m.NewActs(B, T)
	a.SetLossWeights(w[:3])
	if _, _, err := m.ForwardActs(ctx, a, tok, nil, tgt, B, T); err != nil {
		t.Fatal(err)
	}
	if err := m.BackwardActs(ctx, a, nil, 1); err == nil {
		t.Fatal("3 loss weights for 10 positions accepted")
	}
}

// TestCustomHeadGradients: a linear head on Hidden, L = sum(Hidden * R),
// backpropagated through SetHeadGrad(R), agrees with finite differences.
func TestCustomHeadGradients(t *testing.T) {
	cfg := segConfig(PosLearned)
	B, T := 2, 4
	m, err := New(cfg, B, T, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	m.Init(8)
	r := rand.New(rand.NewPCG(2, 2))
	tok := make([]int32, B*T)
	for i := range tok {
		tok[i] = int32(r.IntN(11))
	}
	R := randn(r, B*T*cfg.NEmbd, 1)
	ctx := context.Background()
	a := m.NewActs(B, T)
	loss := func() float64 {
		if _, _, err := m.ForwardActs(ctx, a, tok, nil, nil, B, T); err != nil {
			t.Fatal(err)
		}
		return dotR(a.Hidden(), R)
	}
	loss()
	a.SetHeadGrad(R)
	m.Params.ZeroGrad()
	if err := m.BackwardActs(ctx, a, nil, 1); err != nil {
		t.Fatal(err)
	}
	grad := append([]float32(nil), m.Params.Grad...)
	for _, name := range []string{"ln_f.weight", "h.1.mlp.c_fc.weight", "h.0.attn.c_attn.weight", "wpe.weight", "wte.weight"} {
		p, _ := m.Params.Lookup(name)
		checkGrad(t, name, p.Data, grad[p.Offset:p.Offset+p.Size()], loss, 8, r)
	}
}

// TestHiddenOnlyForward: a hidden-only forward leaves the same final
// hidden states as a full one, computes no logits, and refuses targets;
// a custom head's backward from it gives the full forward's gradients.
func TestHiddenOnlyForward(t *testing.T) {
	cfg := parallelTestConfig(GELUTanh, LayerNorm)
	B, T := 2, cfg.NPositions
	ctx := context.Background()
	run := func(hiddenOnly bool) ([]float32, []float32, []float32) {
		m, err := New(cfg, B, T, gemm.New(1))
		if err != nil {
			t.Fatal(err)
		}
		m.Init(5)
		a := m.NewActs(B, T)
		a.SetHiddenOnly(hiddenOnly)
		for i := range a.logits {
			a.logits[i] = -7 // a full forward overwrites every logit
		}
		tok, _ := testBatch(B, T, cfg.VocabSize)
		if _, _, err := m.ForwardActs(ctx, a, tok, nil, nil, B, T); err != nil {
			t.Fatal(err)
		}
		hid := append([]float32(nil), a.Hidden()...)
		dh := make([]float32, len(hid))
		for i := range dh {
			dh[i] = float32(i%7) - 3
		}
		a.SetHeadGrad(dh)
		m.Params.ZeroGrad()
		if err := m.BackwardActs(ctx, a, nil, 1); err != nil {
			t.Fatal(err)
		}
		return hid, append([]float32(nil), a.Logits()...), append([]float32(nil), m.Params.Grad...)
	}
	hid, logits, grad := run(false)
	hid2, logits2, grad2 := run(true)
	for i := range hid {
		if hid[i] != hid2[i] {
			t.Fatalf("hidden[%d] = %v hidden-only, %v full", i, hid2[i], hid[i])
		}
	}
	for i := range grad {
		if grad[i] != grad2[i] {
			t.Fatalf("grad[%d] = %v hidden-only, %v full", i, grad2[i], grad[i])
		}
	}
	if logits[0] == -7 || logits2[0] != -7 {
		t.Fatalf("logit 0: %v after a full forward, %v after a hidden-only one (want computed, untouched)", logits[0], logits2[0])
	}
	m, err := New(cfg, B, T, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	a := m.NewActs(B, T)
	a.SetHiddenOnly(true)
	tok, tgt := testBatch(B, T, cfg.VocabSize)
	if _, _, err := m.ForwardActs(ctx, a, tok, nil, tgt, B, T); err == nil {
		t.Fatal("a hidden-only forward accepted targets")
	}
}
