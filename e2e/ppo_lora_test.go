package e2e

import (
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strand-ml/strand/checkpoint"
)

// TestPPOLoRA: strand ppo --lora-rank trains adapters on the policy only:
// its checkpoints hold only adapters, the KL to the reference (the base)
// is 0 at the first step and then moves, two pipeline stages match the
// single process within 1e-4, and strand lora merge folds the adapters
// into a model that strand generate runs.
func TestPPOLoRA(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process runs")
	}
	dir := t.TempDir()
	data, rm := ppoRewardModel(t, dir, 48, 3)
	const steps = 4
	keys := []string{"reward", "kl", "policy_loss", "value_loss"}
	run := func(name string, mesh ...string) map[string][]float64 {
		out := filepath.Join(dir, name)
		// the policy's base: any tiny checkpoint (here the reward model's
		// transformer), recorded for lora merge
		runStrand(t, time.Minute, append([]string{"ppo", "--ckpt", rm, "--rm", rm, "--data", data, "--steps", "4", "--batch", "8",
			"--seq", "16", "--max-new", "6", "--lr", "3e-3", "--kl-coef", "0.1", "--threads", "1", "--out", out,
			"--lora-rank", "4", "--lora-targets", "attn.c_attn,mlp.c_fc"}, mesh...)...)
		series := map[string][]float64{}
		for _, k := range keys {
			if series[k] = readSeries(t, out, k); len(series[k]) != steps {
				t.Fatalf("%s: %d %s values, want %d", name, len(series[k]), k, steps)
			}
		}
		return series
	}
	want := run("single")
	if want["kl"][0] != 0 || want["kl"][steps-1] == 0 {
		t.Fatalf("KL %v: want 0 at the first step (adapters start at zero), then moving", want["kl"])
	}
	ck, _, err := checkpoint.Resolve(filepath.Join(dir, "single"))
	if err != nil {
		t.Fatal(err)
	}
	names, err := checkpoint.Tensors(ck)
	if err != nil || len(names) == 0 {
		t.Fatalf("checkpoint tensors: %v", err)
	}
	for name := range names {
		if !strings.Contains(name, ".lora_") {
			t.Fatalf("the LoRA policy checkpoint holds %s, not only adapters", name)
		}
	}
	got := run("pp2", "--nproc", "2", "--pp", "2")
	var worst float64
	for _, k := range keys {
		for s := range want[k] {
			e := math.Abs(got[k][s]-want[k][s]) / max(math.Abs(want[k][s]), 1e-3)
			worst = max(worst, e)
			if e > 1e-4 {
				t.Errorf("pp2 step %d: %s %.7g, single process %.7g (relative %.2g)", s+1, k, got[k][s], want[k][s], e)
			}
		}
	}
	t.Logf("pp2: within %.2g relative", worst)
	merged := filepath.Join(dir, "merged")
	runStrand(t, time.Minute, "lora", "merge", "--adapters", filepath.Join(dir, "pp2"), "--out", merged)
	if out := runStrand(t, time.Minute, "generate", "--ckpt", merged, "--prompt", "ab", "--max-tokens", "4", "--threads", "1"); len(out) < 2 {
		t.Errorf("generate from the merged PPO policy printed %q", out)
	}
}
