package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/strand-ml/strand/gemm"
)

var allLoRA = LoRAConfig{Rank: 2, Alpha: 4, Targets: []string{"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}}

// loraModel is a model with adapters whose B factors are random (so the
// adapters change the output), laid out as l.
func loraModel(t *testing.T, cfg Config, l Layout, B, T int) *GPT {
	t.Helper()
	return loraModelWith(t, cfg, l, B, T, allLoRA)
}

// loraModelWith is loraModel with the adapters of lc.
func loraModelWith(t *testing.T, cfg Config, l Layout, B, T int, lc LoRAConfig) *GPT {
	t.Helper()
	m, err := NewSharded(cfg, l, B, T, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	m.Init(7)
	if err := m.EnableLoRA(lc, 3); err != nil {
		t.Fatal(err)
	}
	// non-zero B, drawn by name so every layout gets the same logical values
	for _, p := range m.Params.List {
		full := make([]float32, Numel(p.Shape))
		r := rand.New(rand.NewPCG(uint64(len(p.Name)), uint64(p.Shape[1])))
		for i := range full {
			full[i] = float32(r.NormFloat64() * 0.2)
		}
		m.Params.SetFull(p, p.Data, full)
	}
	return m
}

func TestLoRAStartsAtBaseAndMerges(t *testing.T) {
	cfg := parallelTestConfig(GELUTanh, LayerNorm)
	B, T := 2, 8
	tok, tgt := testBatch(B, T, cfg.VocabSize)
	base, _ := New(cfg, B, T, gemm.New(1))
	base.Init(7)
	want, _, _ := base.Forward(tok, tgt, B, T)
	m, _ := New(cfg, B, T, gemm.New(1))
	m.Init(7)
	if err := m.EnableLoRA(allLoRA, 3); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := m.Forward(tok, tgt, B, T); got != want {
		t.Fatalf("fresh adapters change the loss: %g, base %g", got, want)
	}
	m = loraModel(t, cfg, Full(cfg), B, T)
	adapted, _, _ := m.Forward(tok, tgt, B, T)
	if adapted == want {
		t.Fatal("random adapters leave the loss unchanged")
	}
	if err := m.MergeLoRA(); err != nil {
		t.Fatal(err)
	}
	merged, _, _ := m.Forward(tok, tgt, B, T)
	if math.Abs(merged-adapted) > 1e-5*math.Abs(adapted) {
		t.Fatalf("merged loss %.7g, adapted %.7g", merged, adapted)
	}
	if _, ok := m.Params.Lookup("wte.weight"); !ok || m.LoRA != nil {
		t.Fatal("after merging the model's parameters are not its base weights")
	}
	bad := allLoRA
	bad.Targets = []string{"attn.c_attn", "lm_head"}
	if err := m.EnableLoRA(bad, 1); err == nil {
		t.Fatal("unknown target accepted")
	}
}

func TestLoRAGradientsFiniteDifference(t *testing.T) {
	cfg := parallelTestConfig(GELUTanh, LayerNorm)
	cfg.NLayer = 2
	B, T := 2, 6
	m := loraModel(t, cfg, Full(cfg), B, T)
	tok, tgt := testBatch(B, T, cfg.VocabSize)
	loss := func() float64 {
		s, _, err := m.Forward(tok, tgt, B, T)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	loss()
	m.Params.ZeroGrad()
	m.Backward(1)
	grad := append([]float32(nil), m.Params.Grad...)
	r := rand.New(rand.NewPCG(5, 5))
	for _, p := range m.Params.List {
		checkGrad(t, p.Name, p.Data, grad[p.Offset:p.Offset+p.Size()], loss, 4, r)
	}
	// the frozen base projections get no gradient
	p, _ := m.LoRA.Base.Lookup("h.0.attn.c_attn.weight")
	for i, v := range p.Grad {
		if v != 0 {
			t.Fatalf("frozen base weight h.0.attn.c_attn.weight got gradient %g at %d", v, i)
		}
	}
}

// TestLoRATensorParallel: adapters sharded with their base layers give the
// single process's loss and adapter gradients at TP 2 and 4.
func TestLoRATensorParallel(t *testing.T) {
	for _, act := range []string{GELUTanh, SwiGLU} {
		cfg := parallelTestConfig(act, LayerNorm)
		B, T := 2, 8
		tok, tgt := testBatch(B, T, cfg.VocabSize)
		one := loraModel(t, cfg, Full(cfg), B, T)
		sum, count, err := one.Forward(tok, tgt, B, T)
		if err != nil {
			t.Fatal(err)
		}
		one.Backward(float32(1 / float64(count)))
		want := map[string][]float32{}
		for _, p := range one.Params.List {
			want[p.Name] = p.Grad
		}
		for _, tp := range []int{2, 4} {
			losses, full := tpRun(t, cfg, tp, B, T, tok, tgt, func(l Layout) *GPT { return loraModel(t, cfg, l, B, T) })
			for r, l := range losses {
				if math.Abs(l-sum/float64(count)) > 1e-5*l {
					t.Errorf("%s tp=%d rank %d: loss %.7f, single process %.7f", act, tp, r, l, sum/float64(count))
				}
			}
			for name, g := range want {
				closeRel(t, act+" lora tp grad "+name, full[name], g, 1e-5)
			}
		}
	}
}

// TestLoRAFreezesEmbeddings: no gradient reaches the frozen embeddings
// (tied head and input) while adapters train; merging restores them.
func TestLoRAFreezesEmbeddings(t *testing.T) {
	cfg := parallelTestConfig(GELUTanh, LayerNorm)
	B, T := 2, 8
	m := loraModel(t, cfg, Full(cfg), B, T)
	tok, tgt := testBatch(B, T, cfg.VocabSize)
	if _, _, err := m.Forward(tok, tgt, B, T); err != nil {
		t.Fatal(err)
	}
	m.Backward(1)
	for _, name := range []string{"wte.weight", "wpe.weight"} {
		p, _ := m.LoRA.Base.Lookup(name)
		for i, g := range p.Grad {
			if g != 0 {
				t.Fatalf("frozen %s got gradient %g at %d", name, g, i)
			}
		}
	}
	if err := m.MergeLoRA(); err != nil {
		t.Fatal(err)
	}
	m.Params.ZeroGrad()
	if _, _, err := m.Forward(tok, tgt, B, T); err != nil {
		t.Fatal(err)
	}
	m.Backward(1)
	p, _ := m.Params.Lookup("wte.weight")
	nonzero := false
	for _, g := range p.Grad {
		nonzero = nonzero || g != 0
	}
	if !nonzero {
		t.Fatal("after merging, wte gets no gradient")
	}
}
