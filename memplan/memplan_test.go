package memplan

import (
	"testing"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
)

func preset(t *testing.T, name string) model.Config {
	t.Helper()
	cfg, err := model.Preset(name)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Position == model.PosRoPE && cfg.RopeTheta == 0 {
		cfg.RopeTheta = cfg.RopeBase()
	}
	return cfg
}

// TestAgainstBuiltModel compares the analytic parameter, activation,
// scratch and precision bytes with what a built model really allocates,
// on every stage of several layouts.
func TestAgainstBuiltModel(t *testing.T) {
	cases := []struct {
		preset    string
		tp, pp    int
		B, T      int
		threads   int
		recompute string
		precision string
	}{
		{"tiny", 1, 1, 4, 64, 1, "none", "fp32"},
		{"tiny", 2, 2, 2, 32, 2, "full", "bf16"},
		{"small", 2, 1, 3, 128, 2, "selective", "fp16"},
		{"small", 1, 4, 2, 16, 1, "full", "fp32"},
		{"llama-tiny", 2, 2, 2, 64, 2, "selective", "bf16"},
		{"llama-tiny", 4, 1, 1, 64, 1, "none", "fp32"}, // kv heads replicated over TP
	}
	for _, c := range cases {
		cfg := preset(t, c.preset)
		bounds, err := model.StageBounds(cfg.NLayer, c.pp, nil)
		if err != nil {
			t.Fatal(err)
		}
		for s := 0; s < c.pp; s++ {
			name := c.preset + "/" + c.recompute + "/" + c.precision
			l := model.Stage(sizeGroup(c.tp), bounds, s)
			m, err := model.NewSharded(cfg, l, c.B, c.T, gemm.New(c.threads))
			if err != nil {
				t.Fatal(err)
			}
			shapes, err := model.ParamShapes(cfg, l)
			if err != nil {
				t.Fatal(err)
			}
			var P int64
			for i, p := range shapes {
				got := m.Params.List[i]
				if got.Name != p.Name || got.Size() != p.Size() || got.TiedCopy != p.TiedCopy {
					t.Fatalf("%s stage %d: shape %d is %s (%d), the model holds %s (%d)", name, s, i, p.Name, p.Size(), got.Name, got.Size())
				}
				P += int64(p.Size())
			}
			if len(shapes) != len(m.Params.List) || P != int64(m.Params.Count()) {
				t.Fatalf("%s stage %d: %d shapes of %d elements, the model has %d of %d", name, s, len(shapes), P, len(m.Params.List), m.Params.Count())
			}
			d := localDims(cfg, c.tp)
			a, err := m.NewActsRecompute(c.B, c.T, c.recompute)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := actsBytes(cfg, d, l, c.B, c.T, c.recompute), a.Bytes(); got != want {
				t.Errorf("%s tp%d stage %d: activation slot predicted %d bytes, allocated %d", name, c.tp, s, got, want)
			}
			if got, want := scratchBytes(cfg, d, l, c.tp, c.B, c.T, c.threads), m.ScratchBytes(); got != want {
				t.Errorf("%s tp%d stage %d: scratch predicted %d bytes, allocated %d", name, c.tp, s, got, want)
			}
			if err := m.SetPrecision(model.Precision(c.precision)); err != nil {
				t.Fatal(err)
			}
			plan, err := Plan(Config{Model: cfg, Mesh: mesh.Mesh{DP: 1, TP: c.tp, PP: c.pp}, Batch: c.B, Micro: 1, Seq: c.T,
				Recompute: c.recompute, Precision: c.precision, Threads: c.threads, Schedule: "gpipe"})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := plan[s].Params, 4*P+m.PrecisionBytes(); got != want {
				t.Errorf("%s tp%d stage %d: parameters predicted %d bytes, allocated %d", name, c.tp, s, got, want)
			}
			// GPipe with one micro-batch keeps one slot on every stage
			if got, want := plan[s].Activations, a.Bytes()+m.ScratchBytes(); got != want {
				t.Errorf("%s tp%d stage %d: activations predicted %d bytes, allocated %d", name, c.tp, s, got, want)
			}
			if plan[s].Grads != 4*P || plan[s].Optimizer != 8*P {
				t.Errorf("%s stage %d: ZeRO-0 gradients %d and optimizer %d bytes, want 4P=%d and 8P=%d", name, s, plan[s].Grads, plan[s].Optimizer, 4*P, 8*P)
			}
		}
	}
}
