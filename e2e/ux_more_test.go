package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/data"
)

// strandExit runs the binary and returns its exit code and output.
func strandExit(t *testing.T, d time.Duration, args ...string) (int, string) {
	t.Helper()
	j := start(t, nil, append([]string{"strand"}, args...)...)
	code := j.wait(t, d)
	return code, j.out.String()
}

// TestLoRARunsLoadWherever: an sft --lora-rank run loads directly in
// generate and eval (the adapters merged into the recorded base: the same
// greedy text and loss as the model lora merge writes), ckpt inspect labels
// it, and lora merge refuses a non-empty --out unless --overwrite; a PPO
// LoRA run on two pipeline stages generates too.
func TestLoRARunsLoadWherever(t *testing.T) {
	dir := t.TempDir()
	tasks := filepath.Join(dir, "reverse.jsonl")
	writeReverseTask(t, tasks, 200)
	base, lora, merged := filepath.Join(dir, "base"), filepath.Join(dir, "lora"), filepath.Join(dir, "merged")
	runStrand(t, time.Minute, "sft", "--from-scratch", "--model", "tiny", "--data", tasks, "--steps", "3", "--out", base, "--threads", "1", "--no-progress")
	runStrand(t, time.Minute, "sft", "--ckpt", base, "--data", tasks, "--steps", "5", "--lr", "1e-2", "--out", lora, "--threads", "1", "--no-progress",
		"--lora-rank", "4", "--lora-targets", "attn.c_attn,mlp.c_fc")

	inspect := runStrand(t, time.Minute, "ckpt", "inspect", lora)
	if !strings.Contains(inspect, "LoRA adapters only: rank 4") || !strings.Contains(inspect, "base checkpoint "+base) {
		t.Errorf("ckpt inspect does not label the adapters:\n%s", inspect)
	}
	if err := os.MkdirAll(merged, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(merged, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := strandExit(t, time.Minute, "lora", "merge", "--adapters", lora, "--out", merged); code != 2 || !strings.Contains(out, "is not empty (notes.txt)") {
		t.Fatalf("lora merge into a non-empty --out: exit %d\n%s", code, out)
	}
	runStrand(t, time.Minute, "lora", "merge", "--adapters", lora, "--out", merged, "--overwrite")
	if _, err := os.Stat(filepath.Join(merged, "notes.txt")); err != nil {
		t.Errorf("--overwrite removed a file that is not the merge's: %v", err)
	}

	gen := func(ckpt string) string {
		return runStrand(t, time.Minute, "generate", "--ckpt", ckpt, "--prompt", "abc=", "--max-tokens", "6", "--temperature", "0", "--threads", "1")
	}
	eval := func(ckpt string) string {
		out := runStrand(t, time.Minute, "eval", "--ckpt", ckpt, "--data", tasks, "--seq", "32", "--batch", "2", "--steps", "2", "--threads", "1")
		var r struct{ Loss float64 }
		line := out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("eval --ckpt %s: %q: %v", ckpt, line, err)
		}
		return fmt.Sprint(r.Loss)
	}
	if a, b := gen(lora), gen(merged); a != b {
		t.Errorf("generate from the LoRA run %q, from the merged model %q", a, b)
	}
	if a, b, c := eval(lora), eval(merged), eval(base); a != b || a == c {
		t.Errorf("eval loss: LoRA run %s, merged %s, base %s", a, b, c)
	}

	if testing.Short() {
		return
	}
	pairs, rm := ppoRewardModel(t, dir, 24, 2)
	ppo := filepath.Join(dir, "ppo")
	runStrand(t, 2*time.Minute, "ppo", "--ckpt", rm, "--rm", rm, "--data", pairs, "--steps", "2", "--batch", "8", "--seq", "16", "--max-new", "4",
		"--threads", "1", "--out", ppo, "--lora-rank", "4", "--nproc", "2", "--pp", "2")
	if out := gen(ppo); len(strings.TrimSpace(out)) < len("abc=") {
		t.Errorf("generate from a pp2 PPO LoRA run printed %q", out)
	}
}

// TestHelpAndDiscovery: --version, no or an unknown command (exit 2 with
// the command list), -h of a command with a positional argument (exit 0,
// naming it), ppo -h offering what ppo runs (gpipe; ZeRO since ppo shards
// its policy and value model).
func TestHelpAndDiscovery(t *testing.T) {
	if code, out := strandExit(t, 30*time.Second, "--version"); code != 0 || !strings.HasPrefix(out, "strand ") || !strings.Contains(out, "go1.") {
		t.Errorf("--version: exit %d: %q", code, out)
	}
	for _, args := range [][]string{nil, {"frobnicate"}} {
		code, out := strandExit(t, 30*time.Second, args...)
		if code != 2 || !strings.Contains(out, "Commands:") || !strings.Contains(out, "ckpt inspect") {
			t.Errorf("strand %v: exit %d:\n%s", args, code, out)
		}
	}
	for _, cmd := range [][]string{{"ckpt", "inspect"}, {"ckpt", "reshard"}, {"ckpt", "export"}, {"status"}} {
		code, out := strandExit(t, 30*time.Second, append(cmd, "-h")...)
		if code != 0 || !strings.Contains(out, "Usage: strand "+strings.Join(cmd, " ")) || !strings.Contains(out, " RUN") && !strings.Contains(out, " DIR") {
			t.Errorf("strand %v -h: exit %d:\n%s", cmd, code, out)
		}
	}
	code, out := strandExit(t, 30*time.Second, "ppo", "-h")
	if code != 0 || !strings.Contains(out, "-zero int") || !strings.Contains(out, `ppo runs gpipe only (each pass's losses need every forward before any backward) (default "gpipe")`) {
		t.Errorf("ppo -h: exit %d:\n%s", code, out)
	}
}

// TestDataFilesAndHeldOutEval: train on a directory mixing .txt, .jsonl and
// a .bin shard says which files it uses; eval --ckpt RUN without --data
// evaluates the held-out split with progress; tokenizer train takes the
// same directory and writes 0644 files; a config.json missing fields names
// them all; sft --seq 6 says it truncates every example; generate --chat
// renders the user turn with the chat template.
func TestDataFilesAndHeldOutEval(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("the quick brown fox jumps over the lazy dog. ", 400)
	for name, body := range map[string]string{"a.txt": text, "b.jsonl": `{"text": "` + text + `"}` + "\n"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := data.WriteShard(filepath.Join(src, "c.bin"), []uint16{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(dir, "run")
	out := runStrand(t, 2*time.Minute, "train", "--model", "tiny", "--data", src, "--steps", "3", "--val-frac", "0.2", "--out", run, "--threads", "1", "--no-progress")
	want := "data: 2 files: 1 .jsonl (" + filepath.Join(src, "b.jsonl") + "), 1 .txt (" + filepath.Join(src, "a.txt") + "); skipped 1 binary: " + filepath.Join(src, "c.bin")
	if !strings.Contains(out, want) {
		t.Errorf("train on a mixed directory does not say which files it uses (want %q):\n%s", want, out)
	}
	out = runStrand(t, time.Minute, "eval", "--ckpt", run, "--batch", "2", "--threads", "1")
	for _, w := range []string{"no --data: evaluating the held-out 0.2 of the run's data " + src, "eval 1/", `[validation]"`} {
		if !strings.Contains(out, w) {
			t.Errorf("eval without --data lacks %q:\n%s", w, out)
		}
	}

	tok := filepath.Join(dir, "tok")
	out = runStrand(t, time.Minute, "tokenizer", "train", "--data", src, "--vocab", "300", "--out", tok)
	if !strings.Contains(out, "data: 2 files") {
		t.Errorf("tokenizer train on a directory:\n%s", out)
	}
	for _, f := range []string{"vocab.json", "merges.txt", "tokenizer.json"} {
		if fi, err := os.Stat(filepath.Join(tok, f)); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: %v %v, want 0644", f, fi.Mode(), err)
		}
	}
	if code, out := strandExit(t, time.Minute, "tokenizer", "train", "--data", src, "--vocab", "300", "--out", tok); code != 2 || !strings.Contains(out, "is not empty") {
		t.Errorf("tokenizer train into a non-empty --out: exit %d\n%s", code, out)
	}

	ck, _, err := checkpoint.Resolve(run)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.MkdirAll(bad, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"model.safetensors", "trainer_state.json"} {
		raw, err := os.ReadFile(filepath.Join(ck, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(bad, f), raw, 0o644)
	}
	os.WriteFile(filepath.Join(bad, "config.json"), []byte(`{"n_head": 4, "n_positions": 64}`), 0o644)
	if code, out := strandExit(t, time.Minute, "eval", "--ckpt", bad, "--data", src); code != 1 || !strings.Contains(out, "lacks 3 required field(s): vocab_size, n_layer, n_embd") {
		t.Errorf("config.json without 3 fields: exit %d\n%s", code, out)
	}

	tasks := filepath.Join(dir, "reverse.jsonl")
	writeReverseTask(t, tasks, 40)
	out = runStrand(t, time.Minute, "sft", "--from-scratch", "--model", "tiny", "--data", tasks, "--seq", "6", "--steps", "1", "--out", filepath.Join(dir, "sft"), "--threads", "1", "--no-progress")
	if !strings.Contains(out, "warning: --seq 6 truncates every training example (36)") {
		t.Errorf("sft --seq 6:\n%s", out)
	}

	out = runStrand(t, time.Minute, "generate", "--ckpt", run, "--chat", "--prompt", "hi", "--json", "--max-tokens", "2", "--threads", "1")
	var g struct {
		PromptIDs []int `json:"prompt_ids"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &g); err != nil {
		t.Fatalf("generate --chat --json: %q: %v", out, err)
	}
	var rendered []byte
	for _, id := range g.PromptIDs {
		rendered = append(rendered, byte(id))
	}
	if string(rendered) != "<|user|>\nhi\n<|assistant|>\n" {
		t.Errorf("generate --chat rendered %q", rendered)
	}
}
