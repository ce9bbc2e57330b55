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
// (2, 2, 1) and (1, 2, 2) matches the single process's loss within 1e-4
// relative for 10 steps, and rm score reads the pipeline-and-tensor
// parallel checkpoint (head and sharded transformer) to the same rewards
// as the single process's.
func TestRewardModelLayouts(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process runs")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "pairs.jsonl")
	writePairs(t, data, 100)
	run := func(name string, mesh ...string) []float64 {
		out := filepath.Join(dir, name)
		args := append([]string{"rm", "train", "--model", "tiny", "--data", data, "--steps", "10", "--lr", "1e-3", "--seq", "16",
			"--batch", "8", "--microbatches", "2", "--val-frac", "0", "--threads", "1", "--out", out}, mesh...)
		runStrand(t, 2*time.Minute, args...)
		l, _ := sftMetrics(t, out)
		return l
	}
	want := run("single")
	for _, mesh := range [][]string{{"--dp", "2", "--tp", "2"}, {"--tp", "2", "--pp", "2"}} {
		name := strings.Join(mesh, "")
		got := run(name, append([]string{"--nproc", "4"}, mesh...)...)
		if len(got) != 10 || len(want) != 10 {
			t.Fatalf("%s: %d and %d steps logged, want 10", name, len(got), len(want))
		}
		for i := range want {
			if e := math.Abs(got[i]-want[i]) / want[i]; e > 1e-4 {
				t.Errorf("%s step %d: loss %.7f, single process %.7f (relative %.2g)", name, i+1, got[i], want[i], e)
			}
		}
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
	a, b := score("single"), score("--tp2--pp2")
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-3*(1+math.Abs(a[i])) {
			t.Fatalf("reward %d: %.6f from the tp2 pp2 checkpoint, %.6f from the single process's", i, b[i], a[i])
		}
	}
}
