package finetune

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/parallel/tensor"
	"github.com/strand-ml/strand/trainer"
	"github.com/strand-ml/strand/transport/loopback"
)

// ppoRun runs steps PPO steps of a small synthetic setup on mesh m (one
// goroutine per rank over loopback transports) and returns rank 0's
// per-step statistics and each data-parallel replica's policy weights
// (its tensor-parallel shards put together), by DP coordinate.
func ppoRun(t *testing.T, m mesh.Mesh, steps int) ([]PPOStats, []map[string][]float32) {
	t.Helper()
	return ppoRunWith(t, m, nil, func(ctx context.Context, p *PPO, _ PPOPlace) ([]PPOStats, error) {
		return ppoSteps(ctx, p, steps)
	})
}

// ppoSteps takes steps PPO steps on ppoPrompts and returns their
// statistics (those before a failing step, and its error).
func ppoSteps(ctx context.Context, p *PPO, steps int) ([]PPOStats, error) {
	var out []PPOStats
	for s := 0; s < steps; s++ {
		st, err := p.TrainStep(ctx, ppoPrompts)
		if err != nil {
			return out, fmt.Errorf("step %d: %w", s+1, err)
		}
		out = append(out, st)
	}
	return out, nil
}

// ppoPrompts is the global batch of every step of ppoRun.
var ppoPrompts = [][]int32{{'a', 'b', '='}, {'c', '='}, {'x', 'y', 'z', '='}, {'q', '='}}

// ppoRunWith builds the synthetic setup of ppoRun on mesh m (with LoRA
// adapters lc on the policy when not nil) and runs body on every rank (at
// says where the rank sits; its Barrier spans the world).
func ppoRunWith(t *testing.T, m mesh.Mesh, lc *model.LoRAConfig, body func(ctx context.Context, p *PPO, at PPOPlace) ([]PPOStats, error)) ([]PPOStats, []map[string][]float32) {
	t.Helper()
	return ppoRunMicro(t, m, lc, 0, body)
}

// ppoRunMicro is ppoRunWith with every pass split into micro micro-batches
// (PPOConfig.Micro).
func ppoRunMicro(t *testing.T, m mesh.Mesh, lc *model.LoRAConfig, micro int, body func(ctx context.Context, p *PPO, at PPOPlace) ([]PPOStats, error)) ([]PPOStats, []map[string][]float32) {
	t.Helper()
	return ppoRunConfig(t, m, lc, func(c *PPOConfig) { c.Micro = micro }, body)
}

// ppoRunConfig is ppoRunMicro with any change to the PPO configuration.
func ppoRunConfig(t *testing.T, m mesh.Mesh, lc *model.LoRAConfig, mod func(*PPOConfig), body func(ctx context.Context, p *PPO, at PPOPlace) ([]PPOStats, error)) ([]PPOStats, []map[string][]float32) {
	t.Helper()
	cfg := model.Config{VocabSize: 256, NLayer: 2, NHead: 2, NEmbd: 8, NPositions: 12, LayerNormEps: 1e-5,
		Activation: model.GELUTanh, Norm: model.LayerNorm, Position: model.PosLearned, InitStd: 0.3}
	const T, batch = 12, 4
	world := m.World()
	trs := loopback.New(world)
	stats := make([][]PPOStats, world)
	params := make([]map[string][]float32, m.DP)
	for i := range params {
		params[i] = map[string][]float32{}
	}
	var mu sync.Mutex // guards params
	errs := make([]error, world)
	var wg sync.WaitGroup
	for r := 0; r < world; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = func() error {
				ctx := context.Background()
				dp, err := collective.New(trs[r], m.Group(mesh.DataAxis, r), collective.Options{Name: "dp"})
				if err != nil {
					return err
				}
				tp, err := collective.New(trs[r], m.Group(mesh.TensorAxis, r), collective.Options{Name: "tp"})
				if err != nil {
					return err
				}
				pp, err := collective.New(trs[r], m.Group(mesh.PipelineAxis, r), collective.Options{Name: "pp"})
				if err != nil {
					return err
				}
				c := m.Coord(r)
				comms := trainer.Comms{Mesh: m, Coord: c, DP: dp, TP: tp, PP: pp}
				if m.PP > 1 && (c.PP == 0 || c.PP == m.PP-1) {
					first, last := c, c
					first.PP, last.PP = 0, m.PP-1
					if comms.Embed, err = collective.New(trs[r], []int{m.Rank(first), m.Rank(last)}, collective.Options{Name: "embed"}); err != nil {
						return err
					}
				}
				bounds, err := model.StageBounds(cfg.NLayer, m.PP, nil)
				if err != nil {
					return err
				}
				layout := model.Stage(tensor.FromComm(tp), bounds, c.PP)
				mk := func(seed uint64) (*model.GPT, error) {
					g, err := model.NewSharded(cfg, layout, batch/m.DP, T, gemm.New(1))
					if err != nil {
						return nil, err
					}
					g.Init(seed)
					return g, nil
				}
				var gs [4]*model.GPT
				for i, seed := range []uint64{1, 1, 2, 2} {
					if gs[i], err = mk(seed); err != nil {
						return err
					}
				}
				if lc != nil {
					if err := gs[0].EnableLoRA(*lc, 6); err != nil {
						return err
					}
				}
				rm, err := NewStageRewardModel(gs[2], NewRewardHead(cfg.NEmbd, 3))
				if err != nil {
					return err
				}
				vm, err := NewStageRewardModel(gs[3], NewRewardHead(cfg.NEmbd, 4))
				if err != nil {
					return err
				}
				pc := PPOConfig{MaxNew: 4, Epochs: 2, Clip: 0.2, ValueClip: 0.2,
					KLCoef: 0.1, Gamma: 1, Lambda: 0.95, Temperature: 1, LR: 3e-3, GradClip: 1, Seed: 5}
				mod(&pc)
				p, err := NewPPOParallel(gs[0], gs[1], rm, vm, 0, T, pc, &comms)
				if err != nil {
					return err
				}
				all := make([]int, world)
				for i := range all {
					all[i] = i
				}
				wc, err := collective.New(trs[r], all, collective.Options{Name: "world"})
				if err != nil {
					return err
				}
				barrier := func(ctx context.Context) error {
					return wc.AllReduce(ctx, collective.F32(make([]float32, 1)), collective.Sum)
				}
				if stats[r], err = body(ctx, p, PPOPlace{Rank: r, Mesh: m, Coord: m.Coord(r), Barrier: barrier}); err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				full := params[m.Coord(r).DP]
				for _, q := range gs[0].Params.List {
					if q.TiedCopy {
						continue // the first stage's wte
					}
					if full[q.Name] == nil {
						n := 1
						for _, d := range q.Shape {
							n *= d
						}
						full[q.Name] = make([]float32, n)
					}
					q.Shard.Insert(full[q.Name], q.Data, q.Shape, tp.Rank(), tp.Size())
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("%v rank %d: %v", m, r, err)
		}
	}
	for r := 1; r < world; r++ {
		if fmt.Sprint(stats[r]) != fmt.Sprint(stats[0]) {
			t.Fatalf("%v: rank %d's statistics %+v differ from rank 0's %+v", m, r, stats[r], stats[0])
		}
	}
	return stats[0], params
}

// TestPPOLayouts: PPO data-parallel (each rank samples its share of the
// prompts), tensor-parallel, pipeline-parallel (two stages of every model)
// and their products match the single process's per-step statistics within
// 1e-4 relative; data-parallel replicas hold identical weights and the
// policy matches the single process's.
func TestPPOLayouts(t *testing.T) {
	const steps, C = 3, 8
	want, wantP := ppoRun(t, mesh.Mesh{DP: 1, TP: 1, PP: 1}, steps)
	if want[0].KL != 0 || want[steps-1].KL == 0 {
		t.Fatalf("KL %g at the first step (want 0: the policy is the reference) and %g at the last (want the policy moved)", want[0].KL, want[steps-1].KL)
	}
	var worst float64
	close := func(a, b float64) bool {
		e := math.Abs(a-b) / max(math.Abs(b), 1e-3)
		worst = max(worst, e)
		return e <= 1e-4
	}
	for _, m := range []mesh.Mesh{{DP: 2, TP: 1, PP: 1}, {DP: 1, TP: 2, PP: 1}, {DP: 2, TP: 2, PP: 1}, {DP: 1, TP: 1, PP: 2},
		{DP: 2, TP: 1, PP: 2}, {DP: 1, TP: 2, PP: 2}} {
		got, gotP := ppoRun(t, m, steps)
		worst = 0
		for s := range want {
			g, w := got[s], want[s]
			if g.Tokens != w.Tokens || !close(g.Reward, w.Reward) || !close(g.KL, w.KL) || !close(g.PolicyLoss, w.PolicyLoss) ||
				!close(g.ValueLoss, w.ValueLoss) || !close(g.ClipFrac, w.ClipFrac) {
				t.Errorf("%v step %d: %+v, single process %+v", m, s+1, g, w)
			}
		}
		for dp := range gotP {
			// data-parallel replicas: the same bits
			for name, w := range gotP[dp] {
				for i := range w {
					if math.Float32bits(w[i]) != math.Float32bits(gotP[0][name][i]) {
						t.Fatalf("%v: data-parallel replica %d's %s[%d] is %g, replica 0's %g", m, dp, name, i, w[i], gotP[0][name][i])
					}
				}
			}
		}
		if e := policyDistance(wantP[0], gotP[0], C); e > 1e-4 {
			t.Errorf("%v: policy weights differ from the single process's by %.2g (relative L2)", m, e)
		} else {
			t.Logf("%v: statistics within %.2g relative, policy weights within %.2g relative L2", m, worst, e)
		}
	}
}

// policyDistance is the relative L2 distance of policy weights got from
// want (by tensor name; model width C), leaving out the key bias: its
// gradient is zero but for rounding (softmax ignores a shift shared by all
// keys), and AdamW turns rounding noise into full steps, so it differs
// between layouts without changing the model.
func policyDistance(want, got map[string][]float32, C int) float64 {
	var num, den float64
	for name, w := range want {
		for i := range w {
			if strings.HasSuffix(name, "attn.c_attn.bias") && i/C == 1 {
				continue
			}
			d := float64(got[name][i] - w[i])
			num, den = num+d*d, den+float64(w[i])*float64(w[i])
		}
	}
	return math.Sqrt(num / den)
}
