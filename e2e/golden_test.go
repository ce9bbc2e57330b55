package e2e

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// goldenPath holds the per-step metrics of fixed-seed runs of every
// objective, recorded before a behaviour-neutral change. Regenerate it
// only for a change that is meant to alter the numbers:
//
//	STRAND_GOLDEN_UPDATE=1 go test ./e2e -run TestGoldenMetrics
const goldenPath = "testdata/golden_metrics.json"

// goldenKeys are the metrics that must not move by a single bit: losses,
// gradient norms, rewards and the other statistics a step computes (never
// timings, which a busy machine changes).
var goldenKeys = map[string]bool{
	"loss": true, "val_loss": true, "grad_norm": true, "lr": true, "tokens": true,
	"accuracy": true, "reward_accuracy": true, "reward_chosen": true, "reward_rejected": true, "reward_margin": true,
	"reward": true, "kl": true, "policy_loss": true, "value_loss": true, "clip_frac": true, "length": true,
}

// goldenRun is one fixed-seed run: a command line without --out.
type goldenRun struct {
	name string
	args []string
}

func goldenRuns(text, sft, pairs, rm string) []goldenRun {
	tiny := []string{"--model", "tiny", "--threads", "1", "--seed", "7"}
	ft := append([]string{"--steps", "4", "--val-frac", "0", "--batch", "8", "--from-scratch"}, tiny...)
	train := append([]string{"train", "--data", text, "--steps", "5", "--batch", "8", "--seq", "32", "--no-progress"}, tiny...)
	return []goldenRun{
		{"train", train},
		{"train dp2 tp2 pp2", append(append([]string(nil), train...), "--nproc", "8", "--dp", "2", "--tp", "2", "--pp", "2", "--microbatches", "2")},
		{"sft", append([]string{"sft", "--data", sft, "--lr", "2e-3", "--seq", "32"}, ft...)},
		{"sft dp2 zero1", append([]string{"sft", "--data", sft, "--lr", "2e-3", "--seq", "32", "--nproc", "2", "--zero1"}, ft...)},
		{"dpo", append([]string{"dpo", "--data", pairs, "--lr", "3e-3", "--beta", "0.5", "--seq", "16"}, ft...)},
		{"dpo pp2", append([]string{"dpo", "--data", pairs, "--lr", "3e-3", "--beta", "0.5", "--seq", "16", "--nproc", "2", "--pp", "2", "--microbatches", "2"}, ft...)},
		{"rm train", append([]string{"rm", "train", "--data", pairs, "--lr", "1e-3", "--seq", "16"}, ft...)},
		{"rm train tp2 pp2", append([]string{"rm", "train", "--data", pairs, "--lr", "1e-3", "--seq", "16", "--nproc", "4", "--tp", "2", "--pp", "2", "--microbatches", "2"}, ft...)},
		{"ppo", append([]string{"ppo", "--rm", rm, "--data", pairs, "--steps", "3", "--batch", "8", "--seq", "16", "--max-new", "6", "--lr", "1e-4", "--kl-coef", "0.1", "--from-scratch"}, tiny...)},
		{"ppo dp2 pp2", append([]string{"ppo", "--rm", rm, "--data", pairs, "--steps", "3", "--batch", "8", "--seq", "16", "--max-new", "6", "--lr", "1e-4", "--kl-coef", "0.1", "--from-scratch",
			"--nproc", "4", "--dp", "2", "--pp", "2", "--microbatches", "2"}, tiny...)},
		{"ppo lora", []string{"ppo", "--rm", rm, "--data", pairs, "--steps", "3", "--batch", "8", "--seq", "16", "--max-new", "6", "--lr", "1e-3", "--kl-coef", "0.1",
			"--ckpt", rm, "--lora-rank", "4", "--threads", "1", "--seed", "7"}},
	}
}

// TestGoldenMetrics: fixed-seed runs of train (one process and dp2 x tp2 x
// pp2), sft, dpo, rm train and ppo, some on meshes, give per-step metrics
// bit-identical to the recorded ones. It pins the numbers across
// refactors of the run loop and the trainer.
func TestGoldenMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process runs")
	}
	dir := t.TempDir()
	text := filepath.Join(dir, "text.txt")
	writeGoldenText(t, text)
	sft := filepath.Join(dir, "sft.jsonl")
	writeReverseTask(t, sft, 60)
	pairs := filepath.Join(dir, "pairs.jsonl")
	writePairs(t, pairs, 60)
	rm := filepath.Join(dir, "rm")
	runStrand(t, time.Minute, "rm", "train", "--model", "tiny", "--data", pairs, "--steps", "3", "--lr", "1e-3", "--seq", "16",
		"--batch", "8", "--val-frac", "0", "--out", rm, "--threads", "1", "--seed", "7", "--from-scratch")

	got := map[string][]map[string]float64{}
	for i, r := range goldenRuns(text, sft, pairs, rm) {
		out := filepath.Join(dir, "run", string(rune('a'+i)))
		log := runStrand(t, 2*time.Minute, append(r.args, "--out", out)...)
		if os.Getenv("STRAND_GOLDEN_VERBOSE") != "" {
			t.Logf("%s: %q\n%s", r.name, r.args, log)
		}
		got[r.name] = goldenMetrics(t, out)
	}
	if os.Getenv("STRAND_GOLDEN_UPDATE") != "" {
		raw, err := json.MarshalIndent(got, "", " ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath, append(raw, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", goldenPath)
		return
	}
	raw, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	var want map[string][]map[string]float64
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatalf("%s: %v", goldenPath, err)
	}
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		w, g := want[name], got[name]
		if len(g) != len(w) {
			t.Errorf("%s: %d steps, recorded %d", name, len(g), len(w))
			continue
		}
		for s := range w {
			for k, v := range w[s] {
				if gv, ok := g[s][k]; !ok || gv != v {
					t.Errorf("%s step %d: %s = %v, recorded %v", name, s+1, k, gv, v)
				}
			}
			for k := range g[s] {
				if _, ok := w[s][k]; !ok {
					t.Errorf("%s step %d: %s is new; record it with STRAND_GOLDEN_UPDATE=1 if intended", name, s+1, k)
				}
			}
		}
	}
}

// goldenMetrics reads a run's per-step records (those with a "step"),
// keeping the goldenKeys.
func goldenMetrics(t *testing.T, run string) []map[string]float64 {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var steps []map[string]float64
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if _, ok := r["step"]; !ok || r["event"] != nil {
			continue
		}
		m := map[string]float64{}
		for k, v := range r {
			if f, ok := v.(float64); ok && goldenKeys[k] {
				m[k] = f
			}
		}
		steps = append(steps, m)
	}
	return steps
}

// writeGoldenText writes a deterministic text corpus of words drawn from
// a small alphabet: enough bytes for a few steps at any data-parallel
// slicing.
func writeGoldenText(t *testing.T, path string) {
	t.Helper()
	r := rand.New(rand.NewPCG(5, 6))
	var b strings.Builder
	for b.Len() < 64<<10 {
		n := 2 + r.IntN(7)
		for j := 0; j < n; j++ {
			b.WriteByte("etaoinshrdlucmfw"[r.IntN(16)])
		}
		if r.IntN(12) == 0 {
			b.WriteString(".\n")
		} else {
			b.WriteByte(' ')
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
