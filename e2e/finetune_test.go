package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strand-ml/strand/checkpoint"
)

// writeReverseTask writes n {"prompt": "abc=", "response": "cba"} records
// over a 6-letter alphabet (3-5 letters): the synthetic SFT task.
func writeReverseTask(t *testing.T, path string, n int) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	for i := 0; i < n; i++ {
		s, rev := reverseWord(r, 3+r.IntN(3))
		line, _ := json.Marshal(map[string]string{"prompt": string(s) + "=", "response": string(rev)})
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// reverseWord draws a word of n letters from "abcdef" and returns it with
// its reversal: the synthetic task of the fine-tuning tests.
func reverseWord(r *rand.Rand, n int) (word, reversed []byte) {
	word = make([]byte, n)
	for j := range word {
		word[j] = "abcdef"[r.IntN(6)]
	}
	reversed = make([]byte, n)
	for j := range word {
		reversed[j] = word[n-1-j]
	}
	return word, reversed
}

// sftMetrics returns a run's per-step losses and its final exact match
// (NaN when not reported).
func sftMetrics(t *testing.T, run string) (losses []float64, exact float64) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	exact = math.NaN()
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if l, ok := r["loss"].(float64); ok {
			losses = append(losses, l)
		}
		if e, ok := r["exact_match"].(float64); ok {
			exact = e
		}
	}
	return losses, exact
}

// TestSFTLearnsReverse: SFT of a fresh tiny model on the reverse task
// reaches > 90% exact match (greedy answer == reversed prompt, then EOS)
// on held-out prompts, and its checkpoint is a starting point for another
// SFT run.
func TestSFTLearnsReverse(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "reverse.jsonl")
	writeReverseTask(t, data, 1200)
	run := filepath.Join(dir, "sft")
	out := runStrand(t, 3*time.Minute, "sft", "--from-scratch", "--model", "tiny", "--data", data, "--steps", "120", "--lr", "2e-3",
		"--val-frac", "0.1", "--out", run, "--threads", "2")
	losses, exact := sftMetrics(t, run)
	if len(losses) != 120 {
		t.Fatalf("%d losses, want 120\n%s", len(losses), out)
	}
	if !(exact > 0.9) {
		t.Fatalf("held-out exact match %.3f, want > 0.9\n%s", exact, out)
	}
	t.Logf("exact match %.3f, loss %.4f -> %.4f", exact, losses[0], losses[len(losses)-1])

	// multiple choice: the reversed prompt against the copy and a shuffle
	r := rand.New(rand.NewPCG(7, 8))
	var mc strings.Builder
	for n := 0; n < 100; {
		s, rev := reverseWord(r, 3+r.IntN(3))
		if string(rev) == string(s) {
			continue
		}
		opts := []string{string(rev), string(s), string(s[1:]) + string(s[:1]) + "a"}
		label := r.IntN(3)
		opts[0], opts[label] = opts[label], opts[0]
		line, _ := json.Marshal(map[string]any{"ctx": string(s) + "=", "endings": opts, "label": label})
		mc.Write(line)
		mc.WriteByte('\n')
		n++
	}
	mcPath := filepath.Join(dir, "mc.jsonl")
	if err := os.WriteFile(mcPath, []byte(mc.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	var res struct {
		Questions int
		Accuracy  float64
	}
	scored := runStrand(t, time.Minute, "eval", "choice", "--ckpt", run, "--data", mcPath)
	if err := json.Unmarshal([]byte(scored[strings.Index(scored, "{"):strings.Index(scored, "}")+1]), &res); err != nil || res.Questions != 100 || !(res.Accuracy > 0.9) {
		t.Fatalf("eval choice after SFT: %q (%v), want accuracy > 0.9 on 100 questions", scored, err)
	}
	again := filepath.Join(dir, "again")
	runStrand(t, time.Minute, "sft", "--ckpt", run, "--data", data, "--steps", "2", "--out", again)
	l2, e2 := sftMetrics(t, again)
	if l2[0] > 3*losses[len(losses)-1]+0.05 || !(e2 > 0.9) {
		t.Fatalf("continuing from the SFT checkpoint: first loss %.4f (end of SFT %.4f), exact match %.3f", l2[0], losses[len(losses)-1], e2)
	}
}

// TestSFTLayouts: SFT on 4 processes (DP x PP, TP x PP, DP x TP) matches
// the single process's loss within 1e-4 relative for 10 steps.
func TestSFTLayouts(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process runs")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "reverse.jsonl")
	writeReverseTask(t, data, 300)
	run := func(name string, mesh ...string) []float64 {
		out := filepath.Join(dir, name)
		args := append([]string{"sft", "--from-scratch", "--model", "tiny", "--data", data, "--steps", "10", "--lr", "2e-3", "--batch", "8",
			"--microbatches", "2", "--val-frac", "0", "--threads", "1", "--out", out}, mesh...)
		runStrand(t, 2*time.Minute, args...)
		l, _ := sftMetrics(t, out)
		return l
	}
	matchesSingleProcessOnFourRanks(t, run)
}

// matchesSingleProcessOnFourRanks runs a fine-tuning command (run(name,
// mesh flags...) returns its per-step losses) on one process and on three
// 4-process DP x TP x PP meshes, and wants the losses within 1e-4.
func matchesSingleProcessOnFourRanks(t *testing.T, run func(name string, mesh ...string) []float64) {
	t.Helper()
	want := run("single")
	for _, mesh := range [][]string{{"--dp", "2", "--pp", "2"}, {"--tp", "2", "--pp", "2"}, {"--dp", "2", "--tp", "2"}} {
		name := strings.Join(mesh, "")
		got := run(name, append([]string{"--nproc", "4"}, mesh...)...)
		if len(got) != len(want) {
			t.Fatalf("%s: %d steps, want %d", name, len(got), len(want))
		}
		for i := range want {
			if e := math.Abs(got[i]-want[i]) / want[i]; e > 1e-4 {
				t.Errorf("%s step %d: loss %.7f, single process %.7f (relative %.2g)", name, i+1, got[i], want[i], e)
			}
		}
	}
}

// TestSFTBadRecords: malformed lines fail the run naming their line, or
// with --on-bad-record skip are reported and counted.
func TestSFTBadRecords(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.jsonl")
	writeReverseTask(t, good, 20)
	raw, _ := os.ReadFile(good)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	bad := append(append(append([]string{}, lines[:3]...), `{"prompt": 1}`, "", `not json`, `{"prompt": "x"}`), lines[3:]...)
	data := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(data, []byte(strings.Join(bad, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	j := start(t, nil, "strand", "sft", "--from-scratch", "--model", "tiny", "--data", data, "--steps", "1", "--out", filepath.Join(dir, "fail"))
	if code := j.wait(t, time.Minute); code == 0 || !strings.Contains(j.out.String(), "line 4:") {
		t.Fatalf("fail policy: exit %d\n%s", code, j.out.String())
	}
	out := runStrand(t, time.Minute, "sft", "--from-scratch", "--model", "tiny", "--data", data, "--steps", "1", "--on-bad-record", "skip", "--out", filepath.Join(dir, "skip"))
	for _, want := range []string{"skipped line 4:", "skipped line 6:", "skipped line 7:", fmt.Sprintf("%d lines, 20 records, 3 skipped as malformed, 1 blank", 24)} {
		if !strings.Contains(out, want) {
			t.Errorf("skip policy output lacks %q\n%s", want, out)
		}
	}
}

// writePairs writes n preference pairs over the reverse task: chosen is the
// reversed prompt, rejected the prompt copied.
func writePairs(t *testing.T, path string, n int) {
	t.Helper()
	r := rand.New(rand.NewPCG(3, 4))
	var b strings.Builder
	for i := 0; i < n; i++ {
		s, rev := reverseWord(r, 3+r.IntN(3))
		line, _ := json.Marshal(map[string]string{"prompt": string(s) + "=", "chosen": string(rev), "rejected": string(s)})
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// lastRecord returns the last metrics.jsonl record that has key.
func lastRecord(t *testing.T, run, key string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var found map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if _, ok := r[key]; ok {
			found = r
		}
	}
	if found == nil {
		t.Fatalf("%s: no record with %q", run, key)
	}
	return found
}

// TestDPORaisesHeldOutMargin: DPO on tiny raises the chosen-over-rejected
// log-prob margin on held-out pairs well above the reference's.
func TestDPORaisesHeldOutMargin(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "pairs.jsonl")
	writePairs(t, data, 400)
	run := filepath.Join(dir, "dpo")
	out := runStrand(t, 3*time.Minute, "dpo", "--from-scratch", "--model", "tiny", "--data", data, "--steps", "100", "--lr", "3e-3", "--beta", "0.5",
		"--seq", "16", "--val-frac", "0.1", "--out", run, "--threads", "2")
	r := lastRecord(t, run, "held_margin")
	before, after := r["held_margin_ref"].(float64), r["held_margin"].(float64)
	t.Logf("held-out margin %.3f -> %.3f, accuracy %.2f -> %.2f", before, after, r["held_accuracy_ref"], r["held_accuracy"])
	if !(after > before+1) {
		t.Fatalf("held-out margin %.3f -> %.3f: not raised by more than 1 nat\n%s", before, after, out)
	}
}

// TestDPOLayouts: DPO on 4 processes matches the single process's loss
// within 1e-4 relative for 10 steps.
func TestDPOLayouts(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process runs")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "pairs.jsonl")
	writePairs(t, data, 100)
	run := func(name string, mesh ...string) []float64 {
		out := filepath.Join(dir, name)
		args := append([]string{"dpo", "--from-scratch", "--model", "tiny", "--data", data, "--steps", "10", "--lr", "3e-3", "--beta", "0.5", "--seq", "16",
			"--batch", "8", "--microbatches", "2", "--val-frac", "0", "--threads", "1", "--out", out}, mesh...)
		runStrand(t, 2*time.Minute, args...)
		l, _ := sftMetrics(t, out)
		return l
	}
	matchesSingleProcessOnFourRanks(t, run)
}

// writeReversePairs writes the reward-model tests' preference data to dir:
// pairs.jsonl, 1200 pairs preferring the reversed 3-5 letter prompt over
// the copied one (palindromes skipped), and held.jsonl, its last 120 (the
// held-out tail of --val-frac 0.1).
func writeReversePairs(t *testing.T, dir string) (data, held string) {
	t.Helper()
	r := rand.New(rand.NewPCG(5, 6))
	var lines []string
	for len(lines) < 1200 {
		s, rev := reverseWord(r, 3+r.IntN(3))
		if string(rev) == string(s) {
			continue // a palindrome makes both completions equal
		}
		line, _ := json.Marshal(map[string]string{"prompt": string(s) + "=", "chosen": string(rev), "rejected": string(s)})
		lines = append(lines, string(line))
	}
	data, held = filepath.Join(dir, "pairs.jsonl"), filepath.Join(dir, "held.jsonl")
	for _, f := range []struct {
		path  string
		lines []string
	}{{data, lines}, {held, lines[1080:]}} {
		if err := os.WriteFile(f.path, []byte(strings.Join(f.lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return data, held
}

// TestRewardModelSeparatesPairs: a reward model on tiny, started from an
// SFT base, learns to prefer the reversed prompt over the copied one
// (> 90% on held-out pairs), rm score reproduces the figure from the checkpoint, and PPO against it
// raises the mean reward of a policy's samples.
func TestRewardModelSeparatesPairs(t *testing.T) {
	dir := t.TempDir()
	data, held := writeReversePairs(t, dir)
	// As in InstructGPT, the reward model starts from the SFT policy: a
	// base briefly fine-tuned on the reverse task already represents
	// reversal, so the head learns to read it (from a fresh model the
	// held-out accuracy after 150 steps ranged 72-92% across seeds; from
	// the SFT base 90-97.5% over 16 seeds after 200 steps, 95.8-97.5% on
	// the 5 seeds tried at these 400).
	sftData := filepath.Join(dir, "reverse.jsonl")
	writeReverseTask(t, sftData, 600)
	base := filepath.Join(dir, "base")
	runStrand(t, time.Minute, "sft", "--from-scratch", "--model", "tiny", "--data", sftData, "--steps", "30", "--lr", "2e-3", "--out", base, "--threads", "2")
	run := filepath.Join(dir, "rm")
	out := runStrand(t, 3*time.Minute, "rm", "train", "--ckpt", base, "--data", data, "--steps", "400", "--lr", "3e-4",
		"--seq", "16", "--batch", "16", "--val-frac", "0.1", "--out", run, "--threads", "2")
	acc := lastRecord(t, run, "held_accuracy")["held_accuracy"].(float64)
	if !(acc > 0.9) {
		t.Fatalf("held-out pairwise accuracy %.3f, want > 0.9\n%s", acc, out)
	}
	scored := runStrand(t, time.Minute, "rm", "score", "--ckpt", run, "--data", held)
	if want := fmt.Sprintf("pairwise accuracy %.1f%% on 120 pairs", 100*acc); !strings.Contains(scored, want) {
		t.Fatalf("rm score output lacks %q\n%s", want, scored)
	}
	if n := strings.Count(scored, `"chosen":`); n != 120 {
		t.Fatalf("rm score printed %d pairs, want 120", n)
	}

	// PPO: the briefly fine-tuned policy sampled on the pairs' prompts
	// raises the reward model's mean score of its completions.
	ppo := filepath.Join(dir, "ppo")
	out = runStrand(t, 2*time.Minute, "ppo", "--ckpt", base, "--rm", run, "--data", data, "--steps", "60", "--batch", "16",
		"--seq", "16", "--max-new", "6", "--lr", "1e-4", "--out", ppo, "--threads", "2")
	rewards := readSeries(t, ppo, "reward")
	if len(rewards) != 60 {
		t.Fatalf("%d PPO steps logged, want 60\n%s", len(rewards), out)
	}
	first, last := mean(rewards[:10]), mean(rewards[50:])
	t.Logf("PPO mean reward: first 10 steps %.3f, last 10 %.3f", first, last)
	if !(last > first+0.5) {
		t.Fatalf("PPO did not raise the reward: first 10 steps %.3f, last 10 %.3f\n%s", first, last, out)
	}
}

// readSeries returns key from every metrics.jsonl record that has it.
func readSeries(t *testing.T, run, key string) []float64 {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if v, ok := r[key].(float64); ok {
			out = append(out, v)
		}
	}
	return out
}

func mean(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// TestLoRA: LoRA SFT from a briefly trained base improves held-out exact
// match with the base frozen; its checkpoint holds only adapters; the run on
// 4 processes (TP x PP) matches the single process within 1e-4; merging
// gives a plain checkpoint with the adapted model's exact match.
func TestLoRA(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "reverse.jsonl")
	writeReverseTask(t, data, 1200)
	base := filepath.Join(dir, "base")
	runStrand(t, 2*time.Minute, "sft", "--from-scratch", "--model", "tiny", "--data", data, "--steps", "30", "--lr", "2e-3", "--out", base, "--threads", "2")
	_, baseExact := sftMetrics(t, base)
	lora := []string{"--lora-rank", "8", "--lora-alpha", "16", "--lora-targets", "attn.c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj"}
	run := filepath.Join(dir, "lora")
	runStrand(t, 2*time.Minute, append([]string{"sft", "--ckpt", base, "--data", data, "--steps", "150", "--lr", "3e-3",
		"--out", run, "--threads", "2"}, lora...)...)
	_, exact := sftMetrics(t, run)
	t.Logf("exact match: base %.3f, after LoRA %.3f", baseExact, exact)
	if !(exact > baseExact+0.3) {
		t.Fatalf("LoRA exact match %.3f from the base's %.3f", exact, baseExact)
	}
	tensors, err := checkpoint.Tensors(filepath.Join(run, "checkpoints", "step_000150"))
	if err != nil {
		t.Fatal(err)
	}
	for name := range tensors {
		if !strings.Contains(name, ".lora_") {
			t.Errorf("adapter checkpoint holds %s", name)
		}
	}
	if len(tensors) != 2*4*2 { // A and B x 4 targets x 2 layers
		t.Errorf("adapter checkpoint holds %d tensors, want 16", len(tensors))
	}

	merged := filepath.Join(dir, "merged")
	runStrand(t, time.Minute, "lora", "merge", "--adapters", run, "--out", merged)
	again := filepath.Join(dir, "again")
	runStrand(t, time.Minute, "sft", "--ckpt", merged, "--data", data, "--steps", "1", "--lr", "1e-9", "--out", again)
	if _, e := sftMetrics(t, again); math.Abs(e-exact) > 0.01 {
		t.Fatalf("merged checkpoint's exact match %.3f, adapted model's %.3f", e, exact)
	}

	if testing.Short() {
		return
	}
	layout := func(name string, mesh ...string) []float64 {
		out := filepath.Join(dir, name)
		args := append([]string{"sft", "--ckpt", base, "--data", data, "--steps", "10", "--lr", "3e-3", "--microbatches", "2",
			"--val-frac", "0", "--threads", "1", "--out", out}, lora...)
		runStrand(t, 2*time.Minute, append(args, mesh...)...)
		l, _ := sftMetrics(t, out)
		return l
	}
	want := layout("l1")
	got := layout("l4", "--nproc", "4", "--tp", "2", "--pp", "2")
	for i := range want {
		if e := math.Abs(got[i]-want[i]) / want[i]; e > 1e-4 {
			t.Errorf("LoRA tp2 pp2 step %d: loss %.7f, single process %.7f", i+1, got[i], want[i])
		}
	}
}

// TestRewardModelDataParallel: rm train on 2 data-parallel processes
// matches the single process's loss within 1e-4 for 10 steps.
func TestRewardModelDataParallel(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process runs")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "pairs.jsonl")
	writePairs(t, data, 200)
	run := func(name string, extra ...string) []float64 {
		out := filepath.Join(dir, name)
		args := append([]string{"rm", "train", "--from-scratch", "--model", "tiny", "--data", data, "--steps", "10", "--lr", "1e-3", "--seq", "16",
			"--batch", "16", "--val-frac", "0", "--threads", "1", "--out", out}, extra...)
		runStrand(t, 2*time.Minute, args...)
		l, _ := sftMetrics(t, out)
		return l
	}
	want, got := run("single"), run("dp2", "--nproc", "2")
	if len(got) != 10 || len(want) != 10 {
		t.Fatalf("%d and %d steps logged, want 10", len(want), len(got))
	}
	for i := range want {
		if e := math.Abs(got[i]-want[i]) / want[i]; e > 1e-4 {
			t.Errorf("step %d: loss %.7f on 2 processes, single process %.7f", i+1, got[i], want[i])
		}
	}
}
