package model

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/strand-ml/strand/gemm"
)

// Llama-family options: grouped-query attention, biases only on q/k/v
// (Qwen2) or none (Llama), an untied head, Llama 3 RoPE scaling.

func llamaTestConfig(nkv int, qkvBias, untied bool) Config {
	return Config{VocabSize: 32, NLayer: 4, NHead: 4, NKVHead: nkv, NEmbd: 16, NPositions: 8, LayerNormEps: 1e-5,
		Activation: SwiGLU, Norm: RMSNorm, Position: PosRoPE, InitStd: 0.2, MLPHidden: 12,
		NoBias: true, QKVBias: qkvBias, UntiedHead: untied}
}

func TestGQAAttentionGradientsAndFlash(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 2))
	B, T, C, NH := 2, 5, 12, 6
	for _, group := range []int{2, 3, 6} {
		NKV := NH / group
		W := C + 2*NKV*(C/NH)
		for _, threads := range []int{1, 3} {
			a := NewReferenceAttention(threads, T)
			a.Group = group
			qkv, R := randn(r, B*T*W, 1), randn(r, B*T*C, 1)
			out, att := make([]float32, B*T*C), make([]float32, B*NH*T*T)
			loss := func() float64 { a.Forward(out, att, qkv, B, T, C, NH); return dotR(out, R) }
			loss()
			dqkv := make([]float32, len(qkv))
			a.Backward(dqkv, R, qkv, att, B, T, C, NH)
			checkGrad(t, "dqkv", qkv, dqkv, loss, 60, r)

			// FlashAttention computes the same
			loss() // out for the unperturbed qkv
			fa := NewFlashAttention(threads, T)
			fa.Group = group
			fout, lse, fdqkv := make([]float32, len(out)), make([]float32, B*NH*T), make([]float32, len(qkv))
			fa.Forward(fout, lse, qkv, B, T, C, NH)
			fa.Backward(fdqkv, R, qkv, fout, lse, B, T, C, NH)
			closeRel(t, "flash out", fout, out, 1e-5)
			closeRel(t, "flash dqkv", fdqkv, dqkv, 1e-5)
		}
	}
}

// TestGQAMatchesRepeatedHeads checks the stored head order: attention with
// grouped kv heads equals multi-head attention on q with each kv head
// repeated for the query heads that read it (h % NKV).
func TestGQAMatchesRepeatedHeads(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	B, T, C, NH, group := 1, 6, 8, 4, 2
	HS, NKV := C/NH, NH/group
	W := C + 2*NKV*HS
	qkv := randn(r, B*T*W, 1)
	full := make([]float32, B*T*3*C)
	for n := 0; n < B*T; n++ {
		copy(full[n*3*C:n*3*C+C], qkv[n*W:n*W+C])
		for h := 0; h < NH; h++ {
			kv := h % NKV
			copy(full[n*3*C+C+h*HS:n*3*C+C+(h+1)*HS], qkv[n*W+C+kv*HS:n*W+C+(kv+1)*HS])
			copy(full[n*3*C+2*C+h*HS:n*3*C+2*C+(h+1)*HS], qkv[n*W+C+NKV*HS+kv*HS:n*W+C+NKV*HS+(kv+1)*HS])
		}
	}
	a, ref := NewReferenceAttention(1, T), NewReferenceAttention(1, T)
	a.Group = group
	out, want, att := make([]float32, B*T*C), make([]float32, B*T*C), make([]float32, B*NH*T*T)
	a.Forward(out, att, qkv, B, T, C, NH)
	ref.Forward(want, att, full, B, T, C, NH)
	closeRel(t, "gqa vs repeated heads", out, want, 1e-6)
}

func TestLlamaModelGradientsFiniteDifference(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{"gqa-untied", llamaTestConfig(2, false, true)},
		{"mqa-qkvbias-tied", llamaTestConfig(1, true, false)},
		{"llama3-rope", func() Config {
			c := llamaTestConfig(2, false, true)
			c.RopeScaling = &RopeScaling{Type: ScaleLlama3, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8}
			return c
		}()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.NLayer, cfg.VocabSize, cfg.InitStd = 2, 11, 0.3
			// one sequence: a smaller loss sum, so less float32 noise in
			// its differences
			B, T := 1, 6
			m, err := New(cfg, B, T, gemm.New(2))
			if err != nil {
				t.Fatal(err)
			}
			m.Init(42)
			// non-zero biases so their gradients matter
			for _, p := range m.Params.List {
				if strings.HasSuffix(p.Name, ".bias") {
					for i := range p.Data {
						p.Data[i] = 0.1 * float32(i%5-2)
					}
				}
			}
			r := rand.New(rand.NewPCG(8, 2))
			tok, tgt := make([]int32, B*T), make([]int32, B*T)
			for i := range tok {
				tok[i], tgt[i] = int32(r.IntN(11)), int32(r.IntN(11))
			}
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
			for _, p := range m.Params.List {
				checkGrad(t, p.Name, p.Data, grad[p.Offset:p.Offset+p.Size()], loss, 6, r)
			}
		})
	}
}

func TestLlamaParamsFollowConfig(t *testing.T) {
	cfg := llamaTestConfig(2, true, true)
	m, err := New(cfg, 1, 4, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"lm_head.weight", "h.0.attn.c_attn.bias", "h.0.attn.c_attn.weight"} {
		if _, ok := m.Params.Lookup(name); !ok {
			t.Errorf("%s missing", name)
		}
	}
	for _, name := range []string{"h.0.attn.c_proj.bias", "h.0.mlp.c_fc.bias", "h.0.mlp.c_proj.bias", "h.0.ln_1.bias", "ln_f.bias"} {
		if _, ok := m.Params.Lookup(name); ok {
			t.Errorf("%s present in a model without it", name)
		}
	}
	p, _ := m.Params.Lookup("h.0.attn.c_attn.weight")
	if want := []int{16, 16 + 2*2*4}; p.Shape[0] != want[0] || p.Shape[1] != want[1] {
		t.Errorf("c_attn shape %v, want %v", p.Shape, want)
	}
	if m.TiedOffset != len(m.Params.Grad) {
		t.Errorf("untied head: TiedOffset %d, want %d (no tied embedding)", m.TiedOffset, len(m.Params.Grad))
	}
	if err := CheckTP(cfg, 4); err != nil {
		t.Errorf("TP 4 over 2 kv heads (replicated): %v", err)
	}
	three := cfg
	three.NHead, three.NKVHead, three.NEmbd = 6, 3, 24
	if err := CheckTP(three, 2); err == nil || !strings.Contains(err.Error(), "kv heads") {
		t.Errorf("TP 2 over 3 kv heads: %v", err)
	}
	bad := cfg
	bad.NKVHead = 3
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "n_kv_head") {
		t.Errorf("3 kv heads of 4: %v", err)
	}
	bad = cfg
	bad.RopeScaling = &RopeScaling{Type: "dynamic", Factor: 2}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), `"dynamic"`) {
		t.Errorf("unknown rope scaling: %v", err)
	}
}

// TestLlamaTensorParallelMatchesSingleProcess: kv heads split over TP ranks
// (4 query heads, 2 kv heads, TP 2), with the untied head and q/k/v biases.
func TestLlamaTensorParallelMatchesSingleProcess(t *testing.T) {
	for _, c := range []struct {
		cfg Config
		tp  int
	}{
		{llamaTestConfig(2, true, true), 2}, {llamaTestConfig(4, false, false), 2}, {llamaTestConfig(2, false, false), 2},
		// kv heads replicated: 2 kv heads over 4 ranks, multi-query over 2 and 4
		{llamaTestConfig(2, true, true), 4}, {llamaTestConfig(1, false, false), 2}, {llamaTestConfig(1, true, false), 4},
	} {
		cfg, tp := c.cfg, c.tp
		B, T := 2, 8
		wantLoss, wantGrad := fullGrads(t, cfg, B, T)
		tok, tgt := testBatch(B, T, cfg.VocabSize)
		losses, full := tpRun(t, cfg, tp, B, T, tok, tgt, func(l Layout) *GPT { return initShard(t, cfg, l, B, T) })
		for r, l := range losses {
			if math.Abs(l-wantLoss)/wantLoss > 1e-5 {
				t.Errorf("kv %d tp=%d rank %d: loss %.7f, single process %.7f", cfg.KVHeads(), tp, r, l, wantLoss)
			}
		}
		for name, g := range wantGrad {
			closeRel(t, fmt.Sprintf("kv %d tp %d grad %s", cfg.KVHeads(), tp, name), full[name], g, 1e-5)
		}
	}
}

// TestLlamaPipelineStages: an untied head needs no tied-embedding sum
// between the first and last stage; the stages compute the single
// process's loss.
func TestLlamaPipelineStages(t *testing.T) {
	cfg := llamaTestConfig(2, false, true)
	B, T := 2, 8
	wantLoss, wantGrad := fullGrads(t, cfg, B, T)
	bounds, err := StageBounds(cfg.NLayer, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var stages []*GPT
	for s := 0; s < 2; s++ {
		m, err := NewSharded(cfg, Stage(nil, bounds, s), B, T, gemm.New(1))
		if err != nil {
			t.Fatal(err)
		}
		m.Init(7)
		if m.TiedOffset != len(m.Params.Grad) {
			t.Errorf("stage %d: TiedOffset %d with an untied head, want %d", s, m.TiedOffset, len(m.Params.Grad))
		}
		stages = append(stages, m)
	}
	tok, tgt := testBatch(B, T, cfg.VocabSize)
	a0, a1 := stages[0].NewActs(B, T), stages[1].NewActs(B, T)
	if _, _, err := stages[0].ForwardActs(ctx, a0, tok, nil, nil, B, T); err != nil {
		t.Fatal(err)
	}
	sum, count, err := stages[1].ForwardActs(ctx, a1, nil, a0.Output(), tgt, B, T)
	if err != nil {
		t.Fatal(err)
	}
	if l := sum / float64(count); math.Abs(l-wantLoss)/wantLoss > 1e-6 {
		t.Errorf("pipeline loss %.7f, single process %.7f", l, wantLoss)
	}
	scale := float32(1 / float64(count))
	if err := stages[1].BackwardActs(ctx, a1, nil, scale); err != nil {
		t.Fatal(err)
	}
	if err := stages[0].BackwardActs(ctx, a0, stages[1].DInput(a1), scale); err != nil {
		t.Fatal(err)
	}
	for _, m := range stages {
		for _, p := range m.Params.List {
			closeRel(t, "pp grad "+p.Name, p.Grad, wantGrad[p.Name], 1e-6)
		}
	}
}

func TestLlamaKVCacheMatchesFullForward(t *testing.T) {
	ctx := context.Background()
	for _, nkv := range []int{1, 2} {
		cfg := llamaTestConfig(nkv, true, true)
		T := 12 // past n_positions: RoPE runs on
		m, err := New(cfg, 1, T, gemm.New(2))
		if err != nil {
			t.Fatal(err)
		}
		m.Init(3)
		tok := make([]int32, T)
		for i := range tok {
			tok[i] = int32((i*13 + 5) % cfg.VocabSize)
		}
		if _, _, err := m.Forward(tok, nil, 1, T); err != nil {
			t.Fatal(err)
		}
		full := m.Logits()
		V := cfg.VocabSize
		c, err := m.NewKVCache(T)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(c.k[0]), T*cfg.KVDim(); got != want {
			t.Errorf("kv cache layer holds %d keys, want %d (kv heads only)", got, want)
		}
		const prompt = 4
		got, err := c.Forward(ctx, tok[:prompt])
		if err != nil {
			t.Fatal(err)
		}
		closeRel(t, "prefill logits", got, full[(prompt-1)*V:prompt*V], 1e-5)
		for p := prompt; p < T; p++ {
			got, err := c.Forward(ctx, tok[p:p+1])
			if err != nil {
				t.Fatal(err)
			}
			closeRel(t, "cached logits", got, full[p*V:(p+1)*V], 1e-5)
		}
	}
}

// TestLlama3Frequencies checks the llama3 scaling against the three
// regions of Hugging Face's formula.
func TestLlama3Frequencies(t *testing.T) {
	cfg := Config{NHead: 1, NEmbd: 64, Position: PosRoPE, RopeTheta: 500000,
		RopeScaling: &RopeScaling{Type: ScaleLlama3, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}}
	got, ms := RopeFrequencies(cfg)
	plain := cfg
	plain.RopeScaling = nil
	base, _ := RopeFrequencies(plain)
	if ms != 1 {
		t.Errorf("mscale %g, want 1", ms)
	}
	var kept, divided, blended int
	for i, f := range base {
		wave := 2 * math.Pi / f
		switch {
		case wave < 8192/4.0:
			kept++
			if got[i] != f {
				t.Errorf("pair %d (short wavelength) changed: %g -> %g", i, f, got[i])
			}
		case wave > 8192:
			divided++
			if math.Abs(got[i]-f/8) > 1e-18 {
				t.Errorf("pair %d (long wavelength): %g, want %g", i, got[i], f/8)
			}
		default:
			blended++
			if !(got[i] < f && got[i] > f/8) {
				t.Errorf("pair %d (medium): %g not between %g and %g", i, got[i], f/8, f)
			}
		}
	}
	if kept == 0 || divided == 0 || blended == 0 {
		t.Errorf("regions kept %d, divided %d, blended %d: the test misses one", kept, divided, blended)
	}
}
