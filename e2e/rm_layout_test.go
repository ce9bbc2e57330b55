package e2e

import (
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRewardModelLayouts: rm train on 4 local processes as (dp, tp, pp) =
// (2, 2, 1), (1, 2, 2) and (2, 1, 2) with ZeRO-1 matches the single process's loss within 1e-4
// relative for 10 steps, and rm score reads the pipeline-and-tensor
// parallel checkpoint (head and sharded transformer) to the single
// process's rewards (within 1% of their spread).
func TestRewardModelLayouts(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process runs")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "pairs.jsonl")
	writePairs(t, data, 100)
	// 16 pairs per step: with 8, a few MLP weights get gradients near
	// float rounding, and Adam's early sign-like steps on them move the
	// tensor-parallel loss by up to 5e-4 relative (same on dp=1 as on dp=2;
	// data-parallel and pipeline layouts stay within 2e-5).
	run := func(name string, mesh ...string) []float64 {
		out := filepath.Join(dir, name)
		args := append([]string{"rm", "train", "--from-scratch", "--model", "tiny", "--data", data, "--steps", "10", "--lr", "1e-3", "--seq", "16",
			"--batch", "16", "--microbatches", "2", "--val-frac", "0", "--threads", "1", "--out", out}, mesh...)
		runStrand(t, 2*time.Minute, args...)
		l, _ := sftMetrics(t, out)
		return l
	}
	want := run("single")
	for _, mesh := range [][]string{{"--dp", "2", "--tp", "2"}, {"--tp", "2", "--pp", "2"}, {"--dp", "2", "--pp", "2", "--zero1"}} {
		name := strings.Join(mesh, "")
		got := run(name, append([]string{"--nproc", "4"}, mesh...)...)
		if len(got) != 10 || len(want) != 10 {
			t.Fatalf("%s: %d and %d steps logged, want 10", name, len(got), len(want))
		}
		worst := 0.0
		for i := range want {
			e := math.Abs(got[i]-want[i]) / want[i]
			worst = max(worst, e)
			if e > 1e-4 {
				t.Errorf("%s step %d: loss %.7f, single process %.7f (relative %.2g)", name, i+1, got[i], want[i], e)
			}
		}
		t.Logf("%s: losses within relative %.2g of the single process's", name, worst)
	}
	score := func(name string) []float64 {
		out := runStrand(t, time.Minute, "rm", "score", "--ckpt", filepath.Join(dir, name), "--data", data, "--seq", "16")
		var r []float64
		for _, line := range strings.Split(out, "\n") {
			var p struct{ Chosen, Rejected *float64 }
			if json.Unmarshal([]byte(line), &p) == nil && p.Chosen != nil {
				r = append(r, *p.Chosen, *p.Rejected)
			}
		}
		if len(r) != 200 {
			t.Fatalf("rm score of %s printed %d rewards, want 200\n%s", name, len(r), out)
		}
		return r
	}
	// The layouts' weights drift apart by float rounding that Adam
	// amplifies (relative 1e-3 after 10 steps); a shard or head loaded
	// wrongly would move the rewards by their whole spread.
	a, b := score("single"), score("--tp2--pp2")
	var rms float64
	for _, x := range a {
		rms += x * x / float64(len(a))
	}
	rms = math.Sqrt(rms)
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-2*rms {
			t.Fatalf("reward %d: %.6f from the tp2 pp2 checkpoint, %.6f from the single process's (rms %.3f)", i, b[i], a[i], rms)
		}
	}
}
