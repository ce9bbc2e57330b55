package finetune

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
)

// TestPPOLoRA: PPO with LoRA adapters on the policy trains only the
// adapters (the base weights keep their bits, the reference stays the
// base: KL 0 at the first step, then moving), and pipeline-, tensor- and
// data-parallel runs match the single process within 1e-4.
func TestPPOLoRA(t *testing.T) {
	const steps = 3
	lc := &model.LoRAConfig{Rank: 2, Alpha: 4, Targets: []string{"attn.c_attn", "mlp.c_fc"}}
	run := func(m mesh.Mesh) ([]PPOStats, []map[string][]float32) {
		return ppoRunWith(t, m, lc, func(ctx context.Context, p *PPO, _ PPOPlace) ([]PPOStats, error) {
			base := slices.Clone(p.Policy.LoRA.Base.Data)
			out, err := ppoSteps(ctx, p, steps)
			if err != nil {
				return out, err
			}
			for i, w := range p.Policy.LoRA.Base.Data {
				if math.Float32bits(w) != math.Float32bits(base[i]) {
					return out, fmt.Errorf("base weight %d moved from %g to %g", i, base[i], w)
				}
			}
			return out, nil
		})
	}
	want, wantP := run(mesh.Mesh{DP: 1, TP: 1, PP: 1})
	if want[0].KL != 0 || want[steps-1].KL == 0 {
		t.Fatalf("KL %g at the first step (want 0: adapters start at zero) and %g at the last (want moving)", want[0].KL, want[steps-1].KL)
	}
	for name := range wantP[0] {
		if !slices.Contains([]string{"lora_A", "lora_B"}, name[len(name)-6:]) {
			t.Fatalf("trainable parameter %s is not an adapter", name)
		}
	}
	for _, m := range []mesh.Mesh{{DP: 1, TP: 1, PP: 2}, {DP: 2, TP: 2, PP: 1}, {DP: 1, TP: 2, PP: 2}} {
		got, _ := run(m)
		var worst float64
		for s := range want {
			g, w := got[s], want[s]
			for _, pair := range [][2]float64{{g.Reward, w.Reward}, {g.KL, w.KL}, {g.PolicyLoss, w.PolicyLoss}, {g.ValueLoss, w.ValueLoss}} {
				e := math.Abs(pair[0]-pair[1]) / max(math.Abs(pair[1]), 1e-3)
				worst = max(worst, e)
				if e > 1e-4 {
					t.Errorf("%v step %d: %+v, single process %+v", m, s+1, g, w)
					break
				}
			}
		}
		t.Logf("%v: within %.2g relative", m, worst)
	}
}
