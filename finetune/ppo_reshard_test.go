package finetune

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
)

// ppoStatsClose fails t when got differs from want by more than 1e-4
// relative (floored at 1e-3) in reward, KL, policy or value loss, or in
// the token count, and logs the worst difference.
func ppoStatsClose(t *testing.T, name string, got, want []PPOStats) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d steps, want %d", name, len(got), len(want))
	}
	var worst float64
	for s := range want {
		g, w := got[s], want[s]
		for _, pair := range [][2]float64{{g.Reward, w.Reward}, {g.KL, w.KL}, {g.PolicyLoss, w.PolicyLoss}, {g.ValueLoss, w.ValueLoss}} {
			e := math.Abs(pair[0]-pair[1]) / max(math.Abs(pair[1]), 1e-3)
			worst = max(worst, e)
			if e > 1e-4 || g.Tokens != w.Tokens {
				t.Errorf("%s step %d: %+v, want %+v", name, s+1, g, w)
				break
			}
		}
	}
	t.Logf("%s: within %.2g relative", name, worst)
}

// TestPPOReshardResume: a PPO checkpoint resharded to tp2 x pp2 holds the
// policy and value/ in that layout with trainer state and checksums that
// PPO.Restore accepts. Resumed in one process it continues bit for bit
// like the checkpoint it came from; resumed on tp2 x pp2 it matches within
// 1e-4; resharded back to one file its value model has the original bytes,
// and value/ is still a reward-model checkpoint. A damaged value model and
// a LoRA policy are refused, naming them, and write nothing; the plain
// model reshard refuses to drop value/.
func TestPPOReshardResume(t *testing.T) {
	dir := t.TempDir()
	one := mesh.Mesh{DP: 1, TP: 1, PP: 1}
	type runState struct {
		Drawn int `json:"drawn"`
	}
	single := filepath.Join(dir, "single")
	ppoResumeRun(t, one, "", single, 2, runState{8})
	src, _, err := checkpoint.Resolve(single)
	if err != nil {
		t.Fatal(err)
	}
	want := ppoResumeRun(t, one, single, "", 2, nil)

	// checkpoint.Reshard would drop value/: it refuses, naming it.
	if err := checkpoint.Reshard(src, filepath.Join(dir, "plain"), 2, 1); err == nil || !strings.Contains(err.Error(), PPOValueDir+"/") {
		t.Errorf("checkpoint.Reshard of a PPO checkpoint: %v, want a refusal naming %s/", err, PPOValueDir)
	}

	run := filepath.Join(dir, "resharded")
	dst := filepath.Join(run, "checkpoints", "step_000002")
	if err := ReshardPPO(src, dst, 2, 2); err != nil {
		t.Fatal(err)
	}
	if err := checkpoint.Verify(dst); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dst, filepath.Join(dst, PPOValueDir)} {
		if idx, err := checkpoint.ReadIndex(d); err != nil || idx == nil || idx.Layout != (mesh.Mesh{DP: 1, TP: 2, PP: 2}) {
			t.Fatalf("%s is not sharded tp2 x pp2: %+v, %v", d, idx, err)
		}
	}
	var st PPOState
	if err := checkpoint.LoadTrainerState(dst, &st); err != nil {
		t.Fatal(err)
	}
	var rs runState
	if err := json.Unmarshal(st.Run, &rs); err != nil || st.Step != 2 || st.Layout != checkpoint.ReshardedLayout(2, 2) || rs.Drawn != 8 {
		t.Errorf("resharded trainer state: step %d, layout %q, run %s", st.Step, st.Layout, st.Run)
	}

	got := ppoResumeRun(t, one, run, "", 2, nil)
	for s := range want {
		if fmt.Sprint(got[s]) != fmt.Sprint(want[s]) {
			t.Errorf("step %d: %+v from the resharded checkpoint, %+v from the original", s+3, got[s], want[s])
		}
	}
	ppoStatsClose(t, "resharded tp2 x pp2, resumed on tp2 x pp2", ppoResumeRun(t, mesh.Mesh{DP: 1, TP: 2, PP: 2}, run, "", 2, nil), want)

	// back to one file: the value model's tensors and moments are the
	// original bytes, and value/ loads as a reward model
	back := filepath.Join(dir, "back")
	if err := ReshardPPO(dst, back, 1, 1); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{checkpoint.ModelFile, checkpoint.OptimizerFile} {
		a, _ := os.ReadFile(filepath.Join(src, PPOValueDir, f))
		b, _ := os.ReadFile(filepath.Join(back, PPOValueDir, f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("value/%s changed over tp2 x pp2 and back", f)
		}
	}
	vdir := filepath.Join(back, PPOValueDir)
	cfg, err := checkpoint.ReadConfig(vdir)
	if err != nil {
		t.Fatal(err)
	}
	var vs ppoValueState
	if err := checkpoint.LoadTrainerState(vdir, &vs); err != nil {
		t.Fatal(err)
	}
	g, err := model.New(cfg, 1, cfg.NPositions, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkpoint.LoadModel(vdir, g); err != nil {
		t.Fatalf("value/ as a model: %v", err)
	}
	vm, err := NewRewardModel(g, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.SetHead(vs.RewardHead); err != nil || vs.Step != 2 {
		t.Fatalf("value/ as a reward model: step %d, head: %v", vs.Step, err)
	}

	// A damaged value model is refused, and nothing is written.
	bad := filepath.Join(dir, "bad")
	if err := os.CopyFS(bad, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	vf := filepath.Join(bad, PPOValueDir, checkpoint.ModelFile)
	raw, err := os.ReadFile(vf)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-1] ^= 1
	if err := os.WriteFile(vf, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "from-bad")
	if err := ReshardPPO(bad, out, 2, 1); err == nil || !strings.Contains(err.Error(), filepath.Join(PPOValueDir, checkpoint.ModelFile)) {
		t.Errorf("reshard with a corrupted value model: %v, want a refusal naming it", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a refused reshard wrote %s", out)
	}

	// A LoRA policy holds adapters only: refused, naming them.
	lora := filepath.Join(dir, "lora")
	lc := &model.LoRAConfig{Rank: 2, Alpha: 4, Targets: []string{"attn.c_attn"}}
	ppoRunWith(t, one, lc, func(ctx context.Context, p *PPO, at PPOPlace) ([]PPOStats, error) {
		if _, err := p.TrainStep(ctx, ppoPrompts); err != nil {
			return nil, err
		}
		_, err := p.Save(ctx, lora, 1, at, nil)
		return nil, err
	})
	lsrc, _, err := checkpoint.Resolve(lora)
	if err != nil {
		t.Fatal(err)
	}
	out = filepath.Join(dir, "from-lora")
	if err := ReshardPPO(lsrc, out, 2, 1); err == nil || !strings.Contains(err.Error(), "LoRA") {
		t.Errorf("reshard of a LoRA policy: %v, want a refusal naming the adapters", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a refused reshard wrote %s", out)
	}
}
