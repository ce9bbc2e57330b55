package model

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/parallel/tensor/tensortest"
)

// LoRA with Hugging Face target names on a Llama: q_proj, k_proj, v_proj
// and gate_proj, up_proj are adapters on column ranges of the fused
// c_attn and c_fc; o_proj and down_proj are the whole c_proj layers.
var hfLoRA = LoRAConfig{Rank: 2, Alpha: 4, Targets: []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}}

func TestLlamaLoRAGradientsFiniteDifference(t *testing.T) {
	cfg := llamaTestConfig(2, true, true)
	cfg.NLayer = 2
	B, T := 1, 6
	m := loraModelWith(t, cfg, Full(cfg), B, T, hfLoRA)
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
	r := rand.New(rand.NewPCG(5, 6))
	names := map[string]bool{}
	for _, p := range m.Params.List {
		names[p.Name] = true
		checkGrad(t, p.Name, p.Data, grad[p.Offset:p.Offset+p.Size()], loss, 4, r)
	}
	for _, want := range []string{"h.0.attn.q_proj.lora_A", "h.0.attn.v_proj.lora_B", "h.1.attn.c_proj.lora_A", "h.1.mlp.up_proj.lora_B", "h.1.mlp.c_proj.lora_B"} {
		if !names[want] {
			t.Errorf("adapter %s missing (have %d adapters)", want, len(names))
		}
	}
}

// TestLlamaLoRAMergeAndRanges: merging folds each range adapter into its
// columns of the fused weight (the merged model computes the adapted
// loss), and an adapter on q_proj leaves the k and v columns alone.
func TestLlamaLoRAMergeAndRanges(t *testing.T) {
	cfg := llamaTestConfig(2, false, true)
	B, T := 2, 8
	tok, tgt := testBatch(B, T, cfg.VocabSize)
	m := loraModelWith(t, cfg, Full(cfg), B, T, hfLoRA)
	adapted, _, err := m.Forward(tok, tgt, B, T)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.MergeLoRA(); err != nil {
		t.Fatal(err)
	}
	merged, _, _ := m.Forward(tok, tgt, B, T)
	if math.Abs(merged-adapted) > 1e-5*math.Abs(adapted) {
		t.Fatalf("merged loss %.7g, adapted %.7g", merged, adapted)
	}
	q := LoRAConfig{Rank: 2, Alpha: 4, Targets: []string{"q_proj"}}
	m = loraModelWith(t, cfg, Full(cfg), B, T, q)
	w, _ := m.LoRA.Base.Lookup("h.0.attn.c_attn.weight")
	before := append([]float32(nil), w.Data...)
	if err := m.MergeLoRA(); err != nil {
		t.Fatal(err)
	}
	W, Cq := w.Shape[1], cfg.NEmbd
	changed := false
	for i := range before {
		col := i % W
		if col >= Cq && w.Data[i] != before[i] {
			t.Fatalf("q_proj's adapter changed c_attn column %d (a k/v column)", col)
		}
		changed = changed || w.Data[i] != before[i]
	}
	if !changed {
		t.Fatal("q_proj's adapter changed nothing")
	}
	for _, c := range []struct {
		targets []string
		want    string
	}{
		{[]string{"attn.c_attn", "q_proj"}, "overlap"},
		{[]string{"o_proj", "attn.c_proj"}, "listed twice"},
		{[]string{"lm_head"}, "not one of"},
	} {
		bad := LoRAConfig{Rank: 2, Alpha: 4, Targets: c.targets}
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("targets %v: %v, want %q", c.targets, err, c.want)
		}
	}
	gpt := parallelTestConfig(GELUTanh, LayerNorm)
	g, _ := New(gpt, 1, 4, gemm.New(1))
	if err := g.EnableLoRA(LoRAConfig{Rank: 2, Alpha: 4, Targets: []string{"gate_proj"}}, 1); err == nil || !strings.Contains(err.Error(), "SwiGLU") {
		t.Errorf("gate_proj on a GELU model: %v", err)
	}
}

// TestLlamaLoRATensorParallel: Hugging Face range adapters sharded with
// their layers (q over the group chunks, k and v with the kv heads) give
// the single process's loss and gradients at TP 2.
func TestLlamaLoRATensorParallel(t *testing.T) {
	noQKV := LoRAConfig{Rank: 2, Alpha: 4, Targets: []string{"o_proj", "gate_proj", "up_proj", "down_proj"}}
	for _, c := range []struct {
		tp int
		lc LoRAConfig
	}{{2, hfLoRA}, {4, noQKV}} { // TP 4 over 2 kv heads: replicated
		testLlamaLoRATP(t, c.tp, c.lc)
	}
}

func testLlamaLoRATP(t *testing.T, tp int, lc LoRAConfig) {
	cfg := llamaTestConfig(2, true, true)
	B, T := 2, 8
	tok, tgt := testBatch(B, T, cfg.VocabSize)
	one := loraModelWith(t, cfg, Full(cfg), B, T, lc)
	sum, count, err := one.Forward(tok, tgt, B, T)
	if err != nil {
		t.Fatal(err)
	}
	one.Backward(float32(1 / float64(count)))
	losses, full := tpRun(t, cfg, tp, B, T, tok, tgt, func(l Layout) *GPT { return loraModelWith(t, cfg, l, B, T, lc) })
	for r, l := range losses {
		if math.Abs(l-sum/float64(count)) > 1e-5*l {
			t.Errorf("tp rank %d: loss %.7f, single process %.7f", r, l, sum/float64(count))
		}
	}
	for _, p := range one.Params.List {
		closeRel(t, "llama lora tp grad "+p.Name, full[p.Name], p.Grad, 1e-5)
	}
}

// With kv heads replicated over TP ranks c_attn is held whole, so
// adapters on it (or its q/k/v ranges) are refused; o_proj's follow
// c_proj's rows.
func TestLlamaLoRAWithReplicatedKVHeads(t *testing.T) {
	cfg := llamaTestConfig(2, false, true)
	l := Full(cfg)
	l.TP = tensortest.Groups(4)[1]
	m, err := NewSharded(cfg, l, 1, 4, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.EnableLoRA(LoRAConfig{Rank: 2, Alpha: 4, Targets: []string{"q_proj"}}, 1); err == nil || !strings.Contains(err.Error(), "replicated") {
		t.Fatalf("q_proj adapter with replicated kv heads: %v", err)
	}
	if err := m.EnableLoRA(LoRAConfig{Rank: 2, Alpha: 4, Targets: []string{"o_proj", "down_proj"}}, 1); err != nil {
		t.Fatal(err)
	}
}
