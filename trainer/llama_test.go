package trainer

import (
	"math"
	"testing"

	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
	dpdata "github.com/strand-ml/strand/parallel/data"
)

// Llama-family models on every layout: grouped-query attention (kv heads
// split over TP ranks, or replicated when TP exceeds them), an untied head (no tied-embedding sum between the
// pipeline's ends), Qwen2's q/k/v biases with a tied head, bf16 products
// and ZeRO-1, each reproducing the single process's loss curve.
func llamaOptions(qkvBias, tied bool) Options {
	opts := testOptions()
	opts.Model = model.Config{VocabSize: 64, NLayer: 4, NHead: 4, NKVHead: 2, NEmbd: 32, NPositions: 16, LayerNormEps: 1e-5,
		Activation: model.SwiGLU, Norm: model.RMSNorm, Position: model.PosRoPE, MLPHidden: 40, InitStd: 0.02,
		NoBias: true, QKVBias: qkvBias, UntiedHead: !tied}
	return opts
}

func TestLlamaMeshesMatchSingleProcess(t *testing.T) {
	for _, v := range []struct {
		name          string
		qkvBias, tied bool
		kvHeads       int
	}{{"llama", false, false, 2}, {"qwen2", true, true, 2}, {"multi-query", true, false, 1}} {
		opts := llamaOptions(v.qkvBias, v.tied)
		opts.Model.NKVHead = v.kvHeads
		want, wantP := runMesh(t, opts, mesh.Mesh{DP: 1, TP: 1, PP: 1})
		for _, c := range []struct {
			name string
			m    mesh.Mesh
			mod  func(*Options)
		}{
			{"tp2", mesh.Mesh{DP: 1, TP: 2, PP: 1}, nil},
			{"tp4 (kv heads replicated)", mesh.Mesh{DP: 1, TP: 4, PP: 1}, nil},
			{"pp2 gpipe", mesh.Mesh{DP: 1, TP: 1, PP: 2}, func(o *Options) { o.Schedule = "gpipe" }},
			{"dp2 tp2 pp2 1f1b", mesh.Mesh{DP: 2, TP: 2, PP: 2}, nil},
			{"dp2 pp2 zero1", mesh.Mesh{DP: 2, TP: 1, PP: 2}, func(o *Options) {
				o.DP = dpdata.Options{ZeRO1: true, BucketBytes: 4096}
			}},
			{"dp2 zero3", mesh.Mesh{DP: 2, TP: 1, PP: 1}, func(o *Options) { o.Zero = 3 }},
			{"dp2 tp2 zero2", mesh.Mesh{DP: 2, TP: 2, PP: 1}, func(o *Options) { o.Zero = 2 }},
			{"dp2 pp2 zero3", mesh.Mesh{DP: 2, TP: 1, PP: 2}, func(o *Options) { o.Zero, o.Schedule = 3, "gpipe" }},
		} {
			o := opts
			if c.mod != nil {
				c.mod(&o)
			}
			got, gotP := runMesh(t, o, c.m)
			compare(t, v.name+" "+c.name, got, want, gotP, wantP)
		}
	}
}

// TestLlamaBF16FollowsFloat32: bf16 products on a Llama over dp2 x tp2
// stay within 1% of the float32 single process's loss curve.
func TestLlamaBF16FollowsFloat32(t *testing.T) {
	opts := llamaOptions(false, false)
	opts.Steps = 10
	want, _ := runMesh(t, opts, mesh.Mesh{DP: 1, TP: 1, PP: 1})
	opts.Precision = "bf16"
	got, _ := runMesh(t, opts, mesh.Mesh{DP: 2, TP: 2, PP: 1})
	same := true
	for i := range want {
		if e := math.Abs(got[i]-want[i]) / want[i]; e > 0.01 {
			t.Errorf("step %d: bf16 loss %.5f vs float32 %.5f", i+1, got[i], want[i])
		}
		same = same && got[i] == want[i]
	}
	if same {
		t.Fatal("bf16 losses equal float32's to the bit: bf16 products did not run")
	}
}

// ZeRO-3 under bf16 gathers the large weights in bf16, except c_attn when
// TP replicates kv heads (its columns are gathered from the float32
// weight): dp2 x tp4 with two kv heads gives DDP's bits.
func TestLlamaZeRO3BF16ReplicatedKV(t *testing.T) {
	opts := llamaOptions(true, false)
	opts.Precision, opts.GradClip, opts.Micro = "bf16", 0, 1
	m := mesh.Mesh{DP: 2, TP: 4, PP: 1}
	want, wantP := runMesh(t, opts, m)
	opts.Zero = 3
	got, gotP := runMesh(t, opts, m)
	sameBits(t, "zero3 bf16 dp2 tp4", got, want, gotP, wantP)
}
