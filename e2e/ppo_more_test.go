package e2e

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPPOReshardResume: `strand ckpt reshard` of a PPO checkpoint (step 2
// of a single-process run) to two pipeline stages writes the policy and
// value/ in that layout; `strand ppo --resume` on two stages continues
// from it with the statistics of the un-resharded checkpoint resumed in
// one process, within 1e-4; `strand rm score` loads the resharded value/.
func TestPPOReshardResume(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process runs")
	}
	dir := t.TempDir()
	data, rm := ppoRewardModel(t, dir, 48, 3)
	args := func(out string, extra ...string) []string {
		return append([]string{"ppo", "--from-scratch", "--model", "tiny", "--rm", rm, "--data", data, "--steps", "4", "--batch", "8", "--seq", "16",
			"--max-new", "6", "--lr", "1e-4", "--kl-coef", "0.1", "--threads", "1", "--out", out}, extra...)
	}
	orig := filepath.Join(dir, "orig")
	runStrand(t, time.Minute, args(orig, "--stop-after", "2")...)
	resharded := filepath.Join(dir, "resharded")
	ck := filepath.Join(resharded, "checkpoints", "step_000002")
	out := runStrand(t, time.Minute, "ckpt", "reshard", filepath.Join(orig, "checkpoints", "step_000002"), "--pp", "2", "--out", ck)
	if !strings.Contains(out, "value model") {
		t.Errorf("ckpt reshard printed %q, want it to name the value model", out)
	}
	for _, f := range []string{"model-pp1-tp0.safetensors", "value/model-pp1-tp0.safetensors", "value/optim-pp1-tp0.safetensors"} {
		if _, err := os.Stat(filepath.Join(ck, f)); err != nil {
			t.Fatalf("resharded PPO checkpoint: %v", err)
		}
	}
	scored := runStrand(t, time.Minute, "rm", "score", "--ckpt", filepath.Join(ck, "value"), "--data", data, "--seq", "16")
	if !strings.Contains(scored, "pairwise accuracy") {
		t.Errorf("rm score on the resharded value model printed %q", scored)
	}

	runStrand(t, time.Minute, args(orig, "--resume")...)
	runStrand(t, 2*time.Minute, args(resharded, "--resume", "--nproc", "2", "--pp", "2")...)
	if r := lastRecord(t, resharded, "resumed_from_step"); r["resumed_from_step"].(float64) != 2 {
		t.Fatalf("resumed from step %v, want 2", r["resumed_from_step"])
	}
	var worst float64
	for _, k := range []string{"reward", "kl", "policy_loss", "value_loss"} {
		want, got := readSeries(t, orig, k), readSeries(t, resharded, k)
		if len(want) != 4 || len(got) != 2 {
			t.Fatalf("%s: %d values straight, %d resumed; want 4 and 2", k, len(want), len(got))
		}
		for s := range got {
			w := want[2+s]
			e := math.Abs(got[s]-w) / max(math.Abs(w), 1e-3)
			worst = max(worst, e)
			if e > 1e-4 {
				t.Errorf("step %d %s: %.7g from the resharded checkpoint on pp2, %.7g from the original (relative %.2g)", s+3, k, got[s], w, e)
			}
		}
	}
	t.Logf("resumed on pp2 from the resharded checkpoint: within %.2g relative", worst)
}

// TestPPOMicroBatches: strand ppo with --microbatches (each pass's rows
// pipelined over two stages in micro-batches, and split in one process)
// matches the one-micro-batch single process within 1e-4 (statistics and
// policy checkpoint); a count that does not divide the prompts per rank,
// or a schedule other than GPipe, is refused before any work.
func TestPPOMicroBatches(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process runs")
	}
	ppoLayoutsMatch(t, [][]string{{"--microbatches", "2"}, {"--nproc", "2", "--pp", "2", "--microbatches", "4"}})
	dir := t.TempDir()
	data, rm := ppoRewardModel(t, dir, 16, 1)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--microbatches", "3"}, "micro-batches"},
		{[]string{"--nproc", "2", "--microbatches", "8"}, "micro-batches"},
		{[]string{"--microbatches", "2", "--schedule", "1f1b"}, "gpipe"},
	} {
		args := append([]string{"strand", "ppo", "--from-scratch", "--model", "tiny", "--rm", rm, "--data", data, "--batch", "8", "--seq", "16",
			"--out", filepath.Join(dir, "refused")}, c.args...)
		j := start(t, nil, args...)
		if code := j.wait(t, time.Minute); code != 2 || !strings.Contains(j.out.String(), c.want) {
			t.Errorf("strand ppo %v: exit %d, output %q; want exit 2 naming %q", c.args, code, j.out.String(), c.want)
		}
	}
}
