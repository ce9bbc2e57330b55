package model

import (
	"context"
	"math"
	"testing"

	"github.com/strand-ml/strand/gemm"
)

// recomputeRun is one forward and backward of m (fresh from seed) with
// activations kept as mode says; it returns the loss, a copy of every
// gradient and the activations' bytes.
func recomputeRun(t *testing.T, cfg Config, mode string, threads int, setup func(*GPT)) (float64, []float32, int64) {
	t.Helper()
	const B, T = 4, 8
	m, err := New(cfg, B, T, gemm.New(threads))
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
	a, err := m.NewActsRecompute(B, T, mode)
	if err != nil {
		t.Fatal(err)
	}
	tokens, targets := make([]int32, B*T), make([]int32, B*T)
	for i := range tokens {
		tokens[i] = int32((i*7 + 3) % cfg.VocabSize)
		targets[i] = int32((i*5 + 1) % cfg.VocabSize)
	}
	ctx := context.Background()
	m.Params.ZeroGrad()
	loss, _, err := m.ForwardActs(ctx, a, tokens, nil, targets, B, T)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.BackwardActs(ctx, a, nil, 1/float32(B*T)); err != nil {
		t.Fatal(err)
	}
	return loss, append([]float32(nil), m.Params.Grad...), a.Bytes()
}

// TestRecomputeGradientsAreBitIdentical: selective and full recomputation
// give the loss and every gradient of keeping all activations, bit for
// bit, for GPT-2 (tanh GELU with its fused bias), a Llama-family block
// (SwiGLU, RMSNorm, RoPE, grouped-query attention), LoRA adapters and
// bf16 products, on one and two threads; and keep fewer bytes.
func TestRecomputeGradientsAreBitIdentical(t *testing.T) {
	gpt2 := Config{VocabSize: 40, NLayer: 3, NHead: 2, NEmbd: 16, NPositions: 8, LayerNormEps: 1e-5,
		Activation: GELUTanh, Norm: LayerNorm, Position: PosLearned, InitStd: 0.2}
	lora := func(m *GPT) {
		if err := m.EnableLoRA(LoRAConfig{Rank: 2, Alpha: 4, Targets: []string{"attn.c_attn", "mlp.c_fc"}}, 5); err != nil {
			t.Fatal(err)
		}
	}
	bf16 := func(m *GPT) {
		if err := m.SetPrecision(BF16); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name    string
		cfg     Config
		threads int
		setup   func(*GPT)
	}{
		{"gpt2", gpt2, 1, nil}, {"gpt2 2 threads", gpt2, 2, nil}, {"llama", llamaTestConfig(2, true, true), 1, nil},
		{"gpt2 lora", gpt2, 1, lora}, {"gpt2 bf16", gpt2, 2, bf16},
	} {
		loss, grads, bytes := recomputeRun(t, c.cfg, RecomputeNone, c.threads, c.setup)
		prev := bytes
		for _, mode := range []string{RecomputeSelective, RecomputeFull} {
			l, g, b := recomputeRun(t, c.cfg, mode, c.threads, c.setup)
			if math.Float64bits(l) != math.Float64bits(loss) {
				t.Errorf("%s %s: loss %v, without recomputation %v", c.name, mode, l, loss)
			}
			for i := range grads {
				if math.Float32bits(g[i]) != math.Float32bits(grads[i]) {
					t.Errorf("%s %s: gradient %d is %v, without recomputation %v", c.name, mode, i, g[i], grads[i])
					break
				}
			}
			if b >= prev {
				t.Errorf("%s %s: %d activation bytes, not below the previous mode's %d", c.name, mode, b, prev)
			}
			prev = b
		}
	}
	if err := CheckRecompute("some"); err == nil {
		t.Error("an unknown recomputation mode was accepted")
	}
}
