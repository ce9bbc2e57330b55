package e2e

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPPOResume: strand ppo for 6 steps straight equals, bit for bit, 3
// steps (--stop-after, checkpointing every 2 and at the stop) then --resume
// for the rest in the same layout: policy, value model and head, their
// optimizers, the step and the prompt sampler come back. The step-3
// checkpoint resumed on dp2 x tp2 and on two pipeline stages gives the
// same statistics within 1e-4, and the policy checkpoint still loads into
// strand generate as a model.
func TestPPOResume(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process runs")
	}
	dir := t.TempDir()
	data, rm := ppoRewardModel(t, dir, 48, 3)
	const steps = 6
	args := func(out string, extra ...string) []string {
		return append([]string{"ppo", "--from-scratch", "--model", "tiny", "--rm", rm, "--data", data, "--steps", "6", "--batch", "8", "--seq", "16",
			"--max-new", "6", "--lr", "1e-4", "--kl-coef", "0.1", "--threads", "1", "--out", out}, extra...)
	}
	keys := []string{"reward", "kl", "policy_loss", "value_loss", "clip_frac", "length"}
	series := func(run string) map[string][]float64 {
		out := map[string][]float64{}
		for _, k := range keys {
			if out[k] = readSeries(t, run, k); len(out[k]) != steps {
				t.Fatalf("%s: %d %s values, want %d", run, len(out[k]), k, steps)
			}
		}
		return out
	}
	straight := filepath.Join(dir, "straight")
	runStrand(t, time.Minute, args(straight)...)
	want := series(straight)

	resumed := filepath.Join(dir, "resumed")
	runStrand(t, time.Minute, args(resumed, "--stop-after", "3", "--ckpt-every", "2", "--keep", "2")...)
	for _, s := range []string{"step_000002", "step_000003"} {
		if _, err := os.Stat(filepath.Join(resumed, "checkpoints", s, "commit.json")); err != nil {
			t.Fatalf("no committed checkpoint %s: %v", s, err)
		}
	}
	// copies of the stopped run to resume in other layouts
	other, staged := filepath.Join(dir, "other"), filepath.Join(dir, "staged")
	for _, d := range []string{other, staged} {
		if err := os.CopyFS(d, os.DirFS(resumed)); err != nil {
			t.Fatal(err)
		}
	}
	runStrand(t, time.Minute, args(resumed, "--resume")...)
	got := series(resumed)
	for _, k := range keys {
		for s := range want[k] {
			if got[k][s] != want[k][s] {
				t.Errorf("step %d: %s %v stopped at 3 and resumed, %v straight", s+1, k, got[k][s], want[k][s])
			}
		}
	}
	if r := lastRecord(t, resumed, "resumed_from_step"); r["resumed_from_step"].(float64) != 3 {
		t.Errorf("resumed from step %v, want 3", r["resumed_from_step"])
	}

	for _, c := range []struct {
		run  string
		mesh []string
	}{{other, []string{"--nproc", "4", "--dp", "2", "--tp", "2"}}, {staged, []string{"--nproc", "2", "--pp", "2"}}} {
		runStrand(t, 2*time.Minute, args(c.run, append([]string{"--resume"}, c.mesh...)...)...)
		got = series(c.run)
		var worst float64
		for _, k := range keys[:4] {
			for s := range want[k] {
				e := math.Abs(got[k][s]-want[k][s]) / max(math.Abs(want[k][s]), 1e-3)
				worst = max(worst, e)
				if e > 1e-4 {
					t.Errorf("%v from step 3: step %d %s %.7g, straight %.7g (relative %.2g)", c.mesh, s+1, k, got[k][s], want[k][s], e)
				}
			}
		}
		t.Logf("resumed on %v: within %.2g relative", c.mesh, worst)
	}
	// the policy is a model checkpoint (sharded now) for generate
	out := runStrand(t, time.Minute, "generate", "--ckpt", other, "--prompt", "ab", "--max-tokens", "4", "--threads", "1")
	if len(out) < 2 {
		t.Errorf("generate from the PPO checkpoint printed %q", out)
	}
}
