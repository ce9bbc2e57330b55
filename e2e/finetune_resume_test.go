package e2e

import (
	"math"
	"path/filepath"
	"testing"
	"time"
)

// TestFinetuneResume: for sft, dpo and rm train, 10 steps straight and
// 5 steps (--stop-after, checkpointing every 3 and at the stop) then
// --resume for the rest give bit-identical losses in the same layout:
// model, optimizer, schedule, step, data position (and DPO's reference
// log-probs, rm's head and its moments) come back from the newest
// checkpoint.
func TestFinetuneResume(t *testing.T) {
	dir := t.TempDir()
	sftData := filepath.Join(dir, "reverse.jsonl")
	writeReverseTask(t, sftData, 60)
	pairs := filepath.Join(dir, "pairs.jsonl")
	writePairs(t, pairs, 60)
	common := []string{"--from-scratch", "--model", "tiny", "--steps", "10", "--val-frac", "0", "--threads", "1", "--batch", "8"}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"sft", []string{"sft", "--data", sftData, "--lr", "2e-3", "--seq", "32"}},
		{"dpo pp2", []string{"dpo", "--data", pairs, "--lr", "3e-3", "--beta", "0.5", "--seq", "16", "--microbatches", "2", "--nproc", "2", "--pp", "2"}},
		{"rm tp2 pp2", []string{"rm", "train", "--data", pairs, "--lr", "1e-3", "--seq", "16", "--microbatches", "2", "--nproc", "4", "--tp", "2", "--pp", "2"}},
	} {
		args := append(append([]string(nil), c.args...), common...)
		straight := filepath.Join(dir, c.name+" straight")
		runStrand(t, 2*time.Minute, append(args, "--out", straight)...)
		want, _ := sftMetrics(t, straight)

		resumed := filepath.Join(dir, c.name+" resumed")
		runStrand(t, 2*time.Minute, append(args, "--out", resumed, "--stop-after", "5", "--ckpt-every", "3", "--keep", "2")...)
		runStrand(t, 2*time.Minute, append(args, "--out", resumed, "--resume")...)
		got, _ := sftMetrics(t, resumed)
		if len(want) != 10 || len(got) != 10 {
			t.Fatalf("%s: %d steps straight, %d stopped and resumed; want 10", c.name, len(want), len(got))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s step %d: loss %v stopped at 5 and resumed, %v straight", c.name, i+1, got[i], want[i])
			}
		}
		if r := lastRecord(t, resumed, "resumed_from_step"); r["resumed_from_step"].(float64) != 5 {
			t.Errorf("%s: resumed from step %v, want 5", c.name, r["resumed_from_step"])
		}
	}
}

// TestFinetuneInterleaved: sft (full and LoRA), dpo and rm train run
// interleaved 1F1B with two model chunks per stage (packed sequences,
// adapters, the DPO objective and the reward head on the last stage's last
// chunk) and give 1F1B's losses in
// the same layout within 1e-4 (the gradient norm's sums are grouped by
// the blocks a stage holds).
func TestFinetuneInterleaved(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process fine-tuning runs")
	}
	dir := t.TempDir()
	sftData := filepath.Join(dir, "reverse.jsonl")
	writeReverseTask(t, sftData, 60)
	pairs := filepath.Join(dir, "pairs.jsonl")
	writePairs(t, pairs, 60)
	common := []string{"--from-scratch", "--model", "small", "--steps", "6", "--val-frac", "0", "--threads", "1", "--batch", "8", "--microbatches", "2"}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"sft pp2", []string{"sft", "--data", sftData, "--lr", "2e-3", "--seq", "32", "--nproc", "2", "--pp", "2"}},
		{"sft lora pp2", []string{"sft", "--data", sftData, "--lr", "2e-3", "--seq", "32", "--nproc", "2", "--pp", "2", "--lora-rank", "4"}},
		{"dpo pp2", []string{"dpo", "--data", pairs, "--lr", "3e-3", "--beta", "0.5", "--seq", "16", "--nproc", "2", "--pp", "2"}},
		{"rm tp2 pp2", []string{"rm", "train", "--data", pairs, "--lr", "1e-3", "--seq", "16", "--nproc", "4", "--tp", "2", "--pp", "2"}},
	} {
		args := append(append([]string(nil), c.args...), common...)
		ref := filepath.Join(dir, c.name+" 1f1b")
		runStrand(t, 2*time.Minute, append(args, "--out", ref)...)
		want, _ := sftMetrics(t, ref)
		run := filepath.Join(dir, c.name+" interleaved")
		runStrand(t, 2*time.Minute, append(args, "--out", run, "--schedule", "interleaved", "--virtual-stages", "2")...)
		got, _ := sftMetrics(t, run)
		if len(want) != 6 || len(got) != 6 {
			t.Fatalf("%s: %d steps 1f1b, %d interleaved; want 6", c.name, len(want), len(got))
		}
		for i := range want {
			if e := math.Abs(got[i]-want[i]) / want[i]; e > 1e-4 {
				t.Errorf("%s step %d: loss %v interleaved, %v 1f1b", c.name, i+1, got[i], want[i])
			}
		}
	}
}
