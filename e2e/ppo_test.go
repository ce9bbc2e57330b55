package e2e

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
)

// TestPPOLayouts: strand ppo on 2 processes (data-parallel, then
// tensor-parallel) and on 4 (DP x TP) matches the single process's
// per-step reward, KL, policy and value loss within 1e-4 relative for 4
// steps, and every layout's policy checkpoint (sharded under TP) loads
// into one process with the single run's weights.
func TestPPOLayouts(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process runs")
	}
	ppoLayoutsMatch(t, [][]string{{"--nproc", "2"}, {"--nproc", "2", "--tp", "2"}, {"--nproc", "4", "--dp", "2", "--tp", "2"}})
}

// TestPPOPipeline: strand ppo with every model split over 2 pipeline
// stages, alone and with tensor parallelism, matches the single process
// within 1e-4 and writes a checkpoint sharded by stage that loads into one
// process with the single run's weights.
func TestPPOPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process runs")
	}
	ppoLayoutsMatch(t, [][]string{{"--nproc", "2", "--pp", "2"}, {"--nproc", "4", "--tp", "2", "--pp", "2"}})
}

// ppoRewardModel writes pairs preference pairs to dir/pairs.jsonl and
// trains a tiny reward model on them for steps steps in dir/rm: briefly,
// just enough to give completions different scores. It returns both paths.
func ppoRewardModel(t *testing.T, dir string, pairs, steps int) (data, rm string) {
	t.Helper()
	data = filepath.Join(dir, "pairs.jsonl")
	writePairs(t, data, pairs)
	rm = filepath.Join(dir, "rm")
	runStrand(t, time.Minute, "rm", "train", "--from-scratch", "--model", "tiny", "--data", data, "--steps", fmt.Sprint(steps), "--lr", "1e-3", "--seq", "16",
		"--batch", "8", "--val-frac", "0", "--out", rm, "--threads", "1")
	return data, rm
}

// ppoLayoutsMatch trains a small reward model, runs strand ppo for 4 steps
// in one process and on each mesh, and compares statistics and policy
// checkpoints.
func ppoLayoutsMatch(t *testing.T, meshes [][]string) {
	dir := t.TempDir()
	data, rm := ppoRewardModel(t, dir, 64, 5)
	const steps = 4
	keys := []string{"reward", "kl", "policy_loss", "value_loss"}
	run := func(name string, mesh ...string) (map[string][]float64, string) {
		out := filepath.Join(dir, name)
		args := append([]string{"ppo", "--from-scratch", "--model", "tiny", "--rm", rm, "--data", data, "--steps", "4", "--batch", "8", "--seq", "16",
			"--max-new", "6", "--lr", "1e-4", "--kl-coef", "0.1", "--threads", "1", "--out", out}, mesh...)
		runStrand(t, 2*time.Minute, args...)
		series := map[string][]float64{}
		for _, k := range keys {
			if series[k] = readSeries(t, out, k); len(series[k]) != steps {
				t.Fatalf("%s: %d %s values, want %d", name, len(series[k]), k, steps)
			}
		}
		return series, out
	}
	want, wantRun := run("single")
	if want["kl"][0] != 0 || want["kl"][steps-1] == 0 {
		t.Fatalf("single process KL %v: want 0 at the first step (the policy is the reference), then moving", want["kl"])
	}
	wantW := loadWhole(t, wantRun)
	for _, mesh := range meshes {
		name := strings.Join(mesh, "")
		got, gotRun := run(name, mesh...)
		var worst float64
		for _, k := range keys {
			for s := range want[k] {
				// relative, with a floor for values near 0 (the KL of the
				// first step, a policy loss of whitened advantages)
				e := math.Abs(got[k][s]-want[k][s]) / max(math.Abs(want[k][s]), 1e-3)
				worst = max(worst, e)
				if e > 1e-4 {
					t.Errorf("%s step %d: %s %.7g, single process %.7g (relative %.2g)", name, s+1, k, got[k][s], want[k][s], e)
				}
			}
		}
		if strings.Contains(name, "tp") || strings.Contains(name, "pp") {
			ck, _, err := checkpoint.Resolve(gotRun)
			if err != nil {
				t.Fatal(err)
			}
			idx, err := checkpoint.ReadIndex(ck)
			if err != nil || idx == nil {
				t.Fatalf("%s: checkpoint %s is not sharded: %v", name, ck, err)
			}
			if strings.Contains(name, "--tp2") && idx.Layout.TP != 2 || strings.Contains(name, "--pp2") && idx.Layout.PP != 2 {
				t.Fatalf("%s: checkpoint %s written under %v", name, ck, idx.Layout)
			}
		}
		gotW := loadWhole(t, gotRun)
		var num, den float64
		for i, w := range wantW {
			d := float64(gotW[i] - w)
			num, den = num+d*d, den+float64(w)*float64(w)
		}
		if e := math.Sqrt(num / den); e > 1e-4 {
			t.Errorf("%s: policy checkpoint differs from the single process's by %.2g (relative L2)", name, e)
		} else {
			t.Logf("%s: statistics within %.2g relative, policy within %.2g relative L2", name, worst, e)
		}
	}
}

// loadWhole loads a run's newest checkpoint (any layout) into one
// process's model and returns its flat parameters.
func loadWhole(t *testing.T, run string) []float32 {
	t.Helper()
	dir, _, err := checkpoint.Resolve(run)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := checkpoint.ReadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.New(cfg, 1, 1, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkpoint.LoadModel(dir, m); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	return m.Params.Data
}
