package model

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/strand-ml/strand/gemm"
)

// TestLaneForwardBitIdentical: the blocks' forward in lanes over the batch
// (2 and 4 compute threads over 4 and 6 sequences: lanes of 1 to 3
// sequences, none for 6 over 4) gives the loss and the saved activations
// (checked through the gradients backward computes from them) of the
// one-thread forward bit for bit, for learned positions, RoPE, ALiBi,
// packed segments, bf16 / fp16 products and LoRA adapters; and the lanes
// really ran.
func TestLaneForwardBitIdentical(t *testing.T) {
	for _, c := range []struct {
		name      string
		pos       string
		segments  bool
		precision string
	}{{"learned", PosLearned, false, ""}, {"rope", PosRoPE, false, ""}, {"alibi", PosALiBi, false, ""}, {"segments", PosLearned, true, ""},
		{"rope segments", PosRoPE, true, ""}, {"bf16", PosLearned, false, "bf16"}, {"fp16 alibi", PosALiBi, false, "fp16"},
		{"lora", PosLearned, false, "lora"}, {"lora bf16", PosRoPE, false, "lora bf16"},
		{"llama gqa", PosRoPE, false, "llama"}, {"llama gqa lora", PosRoPE, false, "llama lora"}, {"lora segments", PosRoPE, true, "lora"}} {
		cfg := parallelTestConfig(GELUTanh, LayerNorm)
		if strings.HasPrefix(c.precision, "llama") {
			cfg = llamaTestConfig(2, true, true)
			// wide enough that LoRA's narrowest product (k_proj's, rows x 2 x
			// the kv width 16) stays packed, so LoRA lanes run
			cfg.NEmbd, cfg.MLPHidden = 32, 64
			c.precision = strings.TrimPrefix(strings.TrimPrefix(c.precision, "llama"), " ")
		}
		cfg.Position, cfg.NPositions = c.pos, 64
		for _, B := range []int{4, 6} {
			T := cfg.NPositions
			run := func(threads int) (float64, []float32, int) {
				m, err := New(cfg, B, T, gemm.New(threads))
				if err != nil {
					t.Fatal(err)
				}
				m.Init(7)
				if strings.HasPrefix(c.precision, "lora") {
					lc := LoRAConfig{Rank: 2, Alpha: 4, Targets: []string{"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}}
					if cfg.NoBias { // the Llama cases: Hugging Face range adapters
						lc = hfLoRA
					}
					if err := m.EnableLoRA(lc, 3); err != nil {
						t.Fatal(err)
					}
					for i := range m.Params.Data { // B starts at zero: give the adapters an output
						m.Params.Data[i] += 0.1 * float32(math.Sin(float64(i)))
					}
				}
				m.SetBF16(strings.HasSuffix(c.precision, "bf16"))
				if c.precision == "fp16" {
					m.SetFP16(true)
				}
				a := m.NewActs(B, T)
				if c.segments {
					ids := make([]int32, B*T)
					for i := range ids {
						ids[i] = int32(i / 37) // segments cross sequence boundaries
					}
					a.SetSegments(ids)
				}
				tok, tgt := testBatch(B, T, cfg.VocabSize)
				m.Params.ZeroGrad()
				sum, count, err := m.ForwardActs(context.Background(), a, tok, nil, tgt, B, T)
				if err != nil {
					t.Fatal(err)
				}
				if err := m.BackwardActs(context.Background(), a, nil, float32(1/float64(count))); err != nil {
					t.Fatal(err)
				}
				return sum, append([]float32(nil), m.Params.Grad...), len(m.lanes.models)
			}
			loss1, g1, lanes1 := run(1)
			if lanes1 != 0 {
				t.Fatalf("%s: one thread ran %d lanes", c.name, lanes1)
			}
			for _, threads := range []int{2, 4} {
				loss, g, lanes := run(threads)
				want := min(threads, B)
				rows := B / want * T
				// LoRA's rank-2 products (rows x 2 x the narrowest width)
				// must stay packed
				packed := !strings.HasPrefix(c.precision, "lora") || rows*2*min(cfg.NEmbd, cfg.Hidden(), cfg.KVDim()) >= gemm.MinPackedWork
				if B%want == 0 && rows >= minLaneRows && packed && lanes != want {
					t.Errorf("%s B=%d, %d threads: %d lanes ran, want %d", c.name, B, threads, lanes, want)
				}
				if loss != loss1 {
					t.Errorf("%s B=%d, %d threads: loss %v, 1 thread %v", c.name, B, threads, loss, loss1)
				}
				for i := range g {
					if math.Float32bits(g[i]) != math.Float32bits(g1[i]) {
						t.Errorf("%s B=%d, %d threads: grad[%d] = %v, 1 thread %v", c.name, B, threads, i, g[i], g1[i])
						break
					}
				}
			}
		}
	}
}
