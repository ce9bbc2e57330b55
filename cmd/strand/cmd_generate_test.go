package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// trainSmall trains a 1-layer model with the given position encoding for a
// few steps on a small text file and returns its run directory and data.
func trainSmall(t *testing.T, pos string) (run, text string) {
	t.Helper()
	dir := t.TempDir()
	text = writeText(t, dir)
	run = filepath.Join(dir, "run_"+pos)
	code, _, errs := runCLI(t, "train", "--model", "tiny", "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--pos", pos,
		"--steps", "3", "--batch", "2", "--seq", "32", "--n-positions", "32", "--data", text, "--out", run, "--no-progress", "--threads", "1")
	if code != 0 {
		t.Fatalf("train --pos %s: exit %d: %s", pos, code, errs)
	}
	return run, text
}

func TestGenerateCommand(t *testing.T) {
	for _, pos := range []string{"rope", "alibi", "learned"} {
		run, _ := trainSmall(t, pos)
		gen := func(args ...string) (int, string, string) {
			return runCLI(t, append([]string{"generate", "--ckpt", run, "--threads", "1"}, args...)...)
		}
		code, out, errs := gen("--prompt", "func ", "--max-tokens", "20", "--temperature", "0")
		if code != 0 || !strings.HasPrefix(out, "func ") || len(out) < len("func ")+1 {
			t.Fatalf("%s greedy: exit %d, out %q, %s", pos, code, out, errs)
		}
		_, again, _ := gen("--prompt", "func ", "--max-tokens", "20", "--temperature", "0")
		if again != out {
			t.Fatalf("%s greedy twice: %q vs %q", pos, out, again)
		}
		s1, s2 := "", ""
		_, s1, _ = gen("--prompt", "the ", "--max-tokens", "20", "--temperature", "1.2", "--top-k", "50", "--top-p", "0.95", "--seed", "4")
		_, s2, _ = gen("--prompt", "the ", "--max-tokens", "20", "--temperature", "1.2", "--top-k", "50", "--top-p", "0.95", "--seed", "4")
		if s1 != s2 {
			t.Fatalf("%s: same seed, different text %q %q", pos, s1, s2)
		}
		for _, bad := range [][]string{{"--prompt", ""}, {"--prompt", "x", "--top-p", "0"}, {"--prompt", "x", "--top-p", "1.01"}, {"--prompt", "x", "--temperature", "-1"}, {"--prompt", "x", "--context", "-3"}, {"--prompt", "x", "--stop", ""}} {
			if code, _, errs := gen(bad...); code != 2 || errs == "" {
				t.Errorf("%s %v: exit %d (%s), want a usage error", pos, bad, code, errs)
			}
		}
		code, _, errs = gen("--prompt", strings.Repeat("a", 40))
		if code != 1 || !strings.Contains(errs, "prompt has 40 tokens") {
			t.Errorf("%s: prompt longer than the context: exit %d: %s", pos, code, errs)
		}
	}
}

func TestEvalByPosition(t *testing.T) {
	for _, pos := range []string{"alibi", "rope", "learned"} {
		run, text := trainSmall(t, pos)
		args := []string{"eval", "--ckpt", run, "--data", text, "--seq", "64", "--batch", "2", "--steps", "2", "--by-position", "--bucket", "16", "--val-frac", "0.1", "--threads", "1"}
		if pos == "rope" {
			args = append(args, "--rope-scaling", "yarn", "--rope-factor", "2")
		}
		code, out, errs := runCLI(t, args...)
		if pos == "learned" {
			if code != 2 || !strings.Contains(errs, "learned positions") {
				t.Fatalf("learned model at 2x: exit %d: %s", code, errs)
			}
			continue
		}
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", pos, code, errs)
		}
		var res struct {
			Loss       float64
			Tokens     int
			ByPosition []struct {
				From, To, Tokens int
				Loss             float64
			} `json:"by_position"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		if len(res.ByPosition) != 4 || res.ByPosition[3].From != 48 || res.ByPosition[3].To != 64 {
			t.Fatalf("%s buckets %+v", pos, res.ByPosition)
		}
		var sum float64
		var n int
		for _, b := range res.ByPosition {
			sum += b.Loss * float64(b.Tokens)
			n += b.Tokens
		}
		if n != res.Tokens || n != 2*2*64 || sum/float64(n)-res.Loss > 1e-9 || res.Loss-sum/float64(n) > 1e-9 {
			t.Fatalf("%s: buckets sum to %d tokens, mean %g; total %d, %g", pos, n, sum/float64(n), res.Tokens, res.Loss)
		}
	}
}

// A Hugging Face Llama directory without a tokenizer: --prompt-ids in,
// --json out, greedy ids as the PyTorch oracle's (hf/testdata). (Stopping
// at eos ids is tested in package generate.)
func TestGenerateHuggingFaceLlamaIDs(t *testing.T) {
	dir := filepath.Join("..", "..", "hf", "testdata", "llama")
	code, out, errs := runCLI(t, "generate", "--ckpt", dir, "--prompt-ids", "54,55,0,37,23", "--temperature", "0", "--max-tokens", "8", "--json", "--threads", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var res struct {
		PromptIDs []int `json:"prompt_ids"`
		IDs       []int `json:"ids"`
		Reason    string
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	want := []int{25, 16, 36, 32, 24, 41, 21, 36} // gen_hf_fixtures.py's greedy continuation
	if len(res.IDs) != len(want) || res.Reason != "max_tokens" || len(res.PromptIDs) != 5 {
		t.Fatalf("got %+v, want ids %v", res, want)
	}
	for i := range want {
		if res.IDs[i] != want[i] {
			t.Fatalf("ids %v, PyTorch %v", res.IDs, want)
		}
	}
	code, _, errs = runCLI(t, "generate", "--ckpt", dir, "--prompt", "hello")
	if code == 0 || !strings.Contains(errs, "has no tokenizer") {
		t.Fatalf("a text prompt for a model without a tokenizer: exit %d: %s", code, errs)
	}
	code, _, errs = runCLI(t, "generate", "--ckpt", dir, "--prompt-ids", "1,x")
	if code == 0 || !strings.Contains(errs, `"x" is not a token id`) {
		t.Fatalf("bad --prompt-ids: exit %d: %s", code, errs)
	}
}
