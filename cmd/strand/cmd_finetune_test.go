package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFinetuneBadInput: the fine-tuning commands reject bad flags and
// files with a usage error (exit 2) or a clear runtime error (exit 1),
// never a panic.
func TestFinetuneBadInput(t *testing.T) {
	dir := t.TempDir()
	pairs := filepath.Join(dir, "pairs.jsonl")
	sft := filepath.Join(dir, "sft.jsonl")
	os.WriteFile(pairs, []byte(`{"prompt": "ab=", "chosen": "ba", "rejected": "ab"}`+"\n"), 0o644)
	os.WriteFile(sft, []byte(`{"prompt": "ab=", "response": "ba"}`+"\n"+`{"prompt": "c=", "response": "c"}`+"\n"), 0o644)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"sft"}, 2, "--data FILE.jsonl is required"},
		{[]string{"sft", "--from-scratch", "--data", sft, "--on-bad-record", "ignore"}, 2, "want skip or fail"},
		{[]string{"sft", "--from-scratch", "--data", sft, "--lora-rank", "2", "--lora-targets", "lm_head"}, 2, `lora target "lm_head"`},
		{[]string{"sft", "--from-scratch", "--data", sft, "--lora-rank", "-1"}, 2, "lora rank -1"},
		{[]string{"sft", "--from-scratch", "--data", sft, "--seq", "100"}, 2, "exceeds the model's 64 learned positions"},
		{[]string{"sft", "--from-scratch", "--data", pairs, "--steps", "1"}, 1, "line 1: bad record"},
		{[]string{"sft", "--from-scratch", "--data", filepath.Join(dir, "missing.jsonl"), "--steps", "1"}, 1, "no such file"},
		{[]string{"dpo", "--from-scratch", "--data", pairs, "--beta", "0"}, 2, "--beta 0 must be positive"},
		{[]string{"dpo", "--from-scratch", "--data", pairs, "--batch", "3", "--nproc", "2", "--steps", "1"}, 2, "does not split"},
		{[]string{"dpo", "--from-scratch", "--data", sft, "--steps", "1"}, 1, "line 1: bad record"},
		{[]string{"rm", "train", "--from-scratch", "--data", pairs, "--batch", "3", "--nproc", "2", "--steps", "1"}, 2, "does not split"},
		{[]string{"rm", "train", "--from-scratch", "--data", pairs, "--ckpt-every", "-1"}, 2, "--ckpt-every -1"},
		{[]string{"rm", "train", "--data", pairs, "--lora-rank", "2"}, 2, "--lora-rank needs --ckpt"},
		{[]string{"rm", "score", "--ckpt", dir}, 2, "--ckpt and --data are required"},
		{[]string{"lora", "merge", "--adapters", dir}, 2, "--adapters and --out are required"},
		{[]string{"lora", "merge", "--adapters", dir, "--out", filepath.Join(dir, "m")}, 1, "no adapter_config.json"},
		{[]string{"eval", "choice", "--data", pairs}, 2, "--ckpt and --data are required"},
		{[]string{"ppo", "--from-scratch", "--data", pairs}, 2, "--rm REWARD_CHECKPOINT is required"},
		{[]string{"sft", "--data", sft}, 2, "--ckpt BASE is required"},
		{[]string{"ppo", "--data", pairs, "--rm", dir}, 2, "--ckpt BASE is required"},
		{[]string{"dpo", "--from-scratch", "--ckpt", dir, "--data", pairs}, 2, "exclude each other"},
		{[]string{"sft", "--from-scratch", "--data", sft, "--lr", "0"}, 2, "--lr 0 would not change the model"},
		{[]string{"sft", "--from-scratch", "--data", sft, "--steps", "6", "--stop-after", "8"}, 2, "--stop-after 8 is beyond --steps 6"},
		{[]string{"sft", "--from-scratch", "--data", sft, "--resume"}, 2, "--resume needs --out"},
	}
	for _, c := range cases {
		code, _, errs := runCLI(t, c.args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("strand %s: exit %d, stderr %q; want exit %d mentioning %q", strings.Join(c.args, " "), code, errs, c.code, c.want)
		}
	}
}
