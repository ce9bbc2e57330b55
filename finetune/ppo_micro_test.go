package finetune

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
)

// TestPPOMicroBatches: PPO with every pass split into micro-batches (two
// or four of the rank's rows, pipelined over two stages, with data and
// tensor parallelism, and a LoRA policy) matches the one-micro-batch
// single process's statistics within 1e-4 and its policy weights within
// 1e-4 relative L2; a micro-batch count that does not divide the rows
// per rank is refused.
func TestPPOMicroBatches(t *testing.T) {
	const steps, C = 3, 8
	steps3 := func(ctx context.Context, p *PPO, _ PPOPlace) ([]PPOStats, error) {
		return ppoSteps(ctx, p, steps)
	}
	one := mesh.Mesh{DP: 1, TP: 1, PP: 1}
	want, wantP := ppoRunMicro(t, one, nil, 1, steps3)
	for _, c := range []struct {
		m     mesh.Mesh
		micro int
	}{{one, 4}, {mesh.Mesh{DP: 1, TP: 1, PP: 2}, 2}, {mesh.Mesh{DP: 1, TP: 1, PP: 2}, 4}, {mesh.Mesh{DP: 2, TP: 1, PP: 2}, 2},
		{mesh.Mesh{DP: 1, TP: 2, PP: 2}, 2}} {
		name := fmt.Sprintf("%v, %d micro-batches", c.m, c.micro)
		got, gotP := ppoRunMicro(t, c.m, nil, c.micro, steps3)
		ppoStatsClose(t, name, got, want)
		if e := policyDistance(wantP[0], gotP[0], C); e > 1e-4 {
			t.Errorf("%s: policy weights differ from one micro-batch's by %.2g (relative L2)", name, e)
		}
	}

	// LoRA policy on two stages with two micro-batches
	lc := &model.LoRAConfig{Rank: 2, Alpha: 4, Targets: []string{"attn.c_attn", "mlp.c_fc"}}
	wantL, _ := ppoRunMicro(t, one, lc, 1, steps3)
	gotL, _ := ppoRunMicro(t, mesh.Mesh{DP: 1, TP: 1, PP: 2}, lc, 2, steps3)
	ppoStatsClose(t, "lora, pp2, 2 micro-batches", gotL, wantL)

	// 4 rows per rank do not split into 3 micro-batches: NewPPOParallel
	// refuses; a step of 3 prompts for a 4-row model is refused by
	// TrainStep (a step fills every row).
	_, _ = ppoRunMicro(t, one, nil, 2, func(ctx context.Context, p *PPO, _ PPOPlace) ([]PPOStats, error) {
		if _, err := p.TrainStep(ctx, ppoPrompts[:3]); err == nil || !strings.Contains(err.Error(), "the models hold 4 per rank") {
			t.Errorf("3 prompts for 4 rows: %v, want a refusal", err)
		}
		cfg := p.Cfg
		cfg.Micro = 3
		if _, err := NewPPOParallel(p.Policy, p.Ref, p.Reward, p.Value, p.EOS, p.T, cfg, &p.Comms); err == nil || !strings.Contains(err.Error(), "micro-batches") {
			t.Errorf("3 micro-batches of 4 rows: %v, want a refusal", err)
		}
		return nil, nil
	})
}
