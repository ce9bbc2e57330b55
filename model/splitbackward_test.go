package model

import (
	"context"
	"math"
	"testing"

	"github.com/strand-ml/strand/gemm"
)

// splitRun runs forward and backward of two micro-batches on a fresh
// model, either unsplit (Backward, Backward) or split in zero-bubble order
// (B0, B1, W0, W1), and returns every gradient, each micro-batch's input
// gradient and the GradReady reports.
func splitRun(t *testing.T, cfg Config, split bool, threads int, setup func(*GPT)) (grads []float32, dinputs [][]float32, ready []int) {
	t.Helper()
	const B, T = 2, 8
	m, err := NewSharded(cfg, Layout{TP: nil, First: false, Last: true, FirstBlock: 0, EndBlock: cfg.NLayer}, B, T, gemm.New(threads))
	if err != nil {
		t.Fatal(err)
	}
	m.Init(3)
	for i := range m.Params.Data { // biases too: Init zeroes them
		m.Params.Data[i] += 0.02 * float32((i*37)%11-5)
	}
	if setup != nil {
		setup(m)
	}
	ctx := context.Background()
	var acts [2]*Acts
	m.Params.ResetGrad()
	m.GradReady = func(n int) { ready = append(ready, n) }
	for j := range acts {
		acts[j] = m.NewActs(B, T)
		hidden, targets := make([]float32, B*T*cfg.NEmbd), make([]int32, B*T)
		for i := range hidden {
			hidden[i] = float32((i*13+j*5)%17)/17 - 0.5
		}
		for i := range targets {
			targets[i] = int32((i*5 + j + 1) % cfg.VocabSize)
		}
		if _, _, err := m.ForwardActs(ctx, acts[j], nil, hidden, targets, B, T); err != nil {
			t.Fatal(err)
		}
	}
	for j, a := range acts {
		var err error
		if split {
			err = m.BackwardInputActs(ctx, a, nil, 0.1)
		} else {
			err = m.BackwardActs(ctx, a, nil, 0.1)
		}
		if err != nil {
			t.Fatal(err)
		}
		dinputs = append(dinputs, append([]float32(nil), m.DInput(a)...))
		if split && !a.PendingWeightGrads() && j == 0 && m.LoRA == nil {
			t.Fatal("a split backward queued no weight gradient")
		}
	}
	if split {
		for _, a := range acts {
			m.BackwardWeightActs(a)
		}
	}
	return append([]float32(nil), m.Params.Grad...), dinputs, ready
}

// TestSplitBackwardIsBitIdentical: the input-gradient and weight-gradient
// halves, run in zero-bubble order over two micro-batches, give the
// unsplit backward's input gradients and parameter gradients bit for bit,
// and report the same gradients ready (the blocks' only after W).
func TestSplitBackwardIsBitIdentical(t *testing.T) {
	gpt2 := Config{VocabSize: 40, NLayer: 3, NHead: 2, NEmbd: 16, NPositions: 8, LayerNormEps: 1e-5,
		Activation: GELUTanh, Norm: LayerNorm, Position: PosLearned, InitStd: 0.2}
	bf16 := func(m *GPT) {
		if err := m.SetPrecision(BF16); err != nil {
			t.Fatal(err)
		}
	}
	lora := func(m *GPT) {
		if err := m.EnableLoRA(LoRAConfig{Rank: 2, Alpha: 4, Targets: []string{"attn.c_attn", "mlp.c_proj"}}, 5); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name    string
		cfg     Config
		threads int
		setup   func(*GPT)
	}{{"gpt2", gpt2, 1, nil}, {"gpt2 2 threads", gpt2, 2, nil}, {"llama", llamaTestConfig(2, true, true), 2, nil},
		{"gpt2 bf16", gpt2, 1, bf16}, {"gpt2 lora", gpt2, 1, lora}} {
		g0, d0, r0 := splitRun(t, c.cfg, false, c.threads, c.setup)
		g1, d1, r1 := splitRun(t, c.cfg, true, c.threads, c.setup)
		for i := range g0 {
			if math.Float32bits(g0[i]) != math.Float32bits(g1[i]) {
				t.Errorf("%s: gradient %d is %v split, %v unsplit", c.name, i, g1[i], g0[i])
				break
			}
		}
		for j := range d0 {
			for i := range d0[j] {
				if math.Float32bits(d0[j][i]) != math.Float32bits(d1[j][i]) {
					t.Errorf("%s micro-batch %d: input gradient %d is %v split, %v unsplit", c.name, j, i, d1[j][i], d0[j][i])
					break
				}
			}
		}
		if len(r0) != len(r1) || r0[len(r0)-1] != r1[len(r1)-1] {
			t.Errorf("%s: ready reports %v split, %v unsplit", c.name, r1, r0)
		}
	}
}
