package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/safetensors"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestEvalMatchesPyTorchOnItsCheckpoint: a checkpoint written by PyTorch in
// the Hugging Face GPT-2 layout evaluates to PyTorch's loss.
func TestEvalMatchesPyTorchOnItsCheckpoint(t *testing.T) {
	for _, name := range []string{"torch_gelu_new", "torch_gelu"} {
		dir := filepath.Join("..", "..", "model", "testdata", name)
		code, out, errs := runCLI(t, "eval", "--ckpt", dir, "--data", filepath.Join(dir, "eval.bin"), "--batch", "2", "--seq", "32", "--threads", "1")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		var res struct {
			Loss, Perplexity float64
			Tokens           int
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		ref, err := safetensors.Read(filepath.Join(dir, "reference.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		want, _, _ := ref.Float32("eval_loss")
		if e := math.Abs(res.Loss-float64(want[0])) / float64(want[0]); e > 1e-5 {
			t.Fatalf("%s: strand eval loss %.7f, PyTorch %.7f (relative error %.2g)", name, res.Loss, want[0], e)
		}
		if res.Tokens != 128 || math.Abs(res.Perplexity-math.Exp(res.Loss)) > 1e-9*res.Perplexity {
			t.Fatalf("tokens %d perplexity %g", res.Tokens, res.Perplexity)
		}
	}
}

func writeText(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "corpus.txt")
	var b strings.Builder
	for i := 0; b.Len() < 64<<10; i++ {
		b.WriteString("the quick brown fox jumps over the lazy dog; func main() { return }\n")
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTrainThenEvalAndInitFrom(t *testing.T) {
	dir := t.TempDir()
	corpus := writeText(t, dir)
	run1 := filepath.Join(dir, "run1")
	code, out, errs := runCLI(t, "train", "--model", "tiny", "--steps", "6", "--batch", "2", "--seq", "32", "--data", corpus, "--out", run1, "--no-progress", "--threads", "1")
	if code != 0 {
		t.Fatalf("train exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "done: step 6 of 6") {
		t.Fatalf("train output: %s", out)
	}
	for _, f := range []string{"metrics.jsonl", "loss.png", "checkpoints/step_000006/model.safetensors", "checkpoints/step_000006/commit.json"} {
		if _, err := os.Stat(filepath.Join(run1, f)); err != nil {
			t.Fatalf("missing %s: %v", f, err)
		}
	}
	raw, _ := os.ReadFile(filepath.Join(run1, "metrics.jsonl"))
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != 7 || !strings.Contains(lines[6], `"event":"summary"`) || !strings.Contains(lines[6], `"peak_rss"`) {
		t.Fatalf("%d metric lines, want 6 steps and the summary's memory record:\n%s", len(lines), raw)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[5]), &rec); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"step", "loss", "lr", "grad_norm", "tokens_per_s", "mfu"} {
		if _, ok := rec[k]; !ok {
			t.Errorf("metrics line lacks %q: %s", k, lines[5])
		}
	}
	// eval accepts the run directory (its latest checkpoint)
	code, out, errs = runCLI(t, "eval", "--ckpt", run1, "--data", corpus, "--batch", "2", "--seq", "32", "--steps", "2")
	if code != 0 || !strings.Contains(out, "\"loss\"") {
		t.Fatalf("eval exit %d: %s %s", code, out, errs)
	}
	// --init-from continues from the weights
	code, _, errs = runCLI(t, "train", "--init-from", run1, "--steps", "2", "--batch", "2", "--seq", "32", "--data", corpus, "--out", filepath.Join(dir, "run2"), "--no-progress")
	if code != 0 || !strings.Contains(errs, "initialized from") {
		t.Fatalf("init-from exit %d: %s", code, errs)
	}
}

func TestTrainIsDeterministic(t *testing.T) {
	dir := t.TempDir()
	corpus := writeText(t, dir)
	losses := func(run string) string {
		code, _, errs := runCLI(t, "train", "--steps", "4", "--batch", "2", "--seq", "16", "--data", corpus, "--out", filepath.Join(dir, run), "--no-progress", "--shuffle", "--seed", "5")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		recs, err := os.ReadFile(filepath.Join(dir, run, "metrics.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range strings.Split(strings.TrimSpace(string(recs)), "\n") {
			var r struct{ Loss float64 }
			json.Unmarshal([]byte(l), &r)
			out = append(out, formatBits(r.Loss))
		}
		return strings.Join(out, ",")
	}
	a, b := losses("a"), losses("b")
	if a != b {
		t.Fatalf("same seed, different losses:\n%s\n%s", a, b)
	}
}

func formatBits(x float64) string {
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], math.Float64bits(x))
	return string(buf[:])
}

// TestBadInputGivesOneClearError: each case exits non-zero with a one-line
// message naming the problem, never a panic.
func TestBadInputGivesOneClearError(t *testing.T) {
	dir := t.TempDir()
	corpus := writeText(t, dir)
	// a real checkpoint to damage
	run1 := filepath.Join(dir, "run")
	if code, _, errs := runCLI(t, "train", "--steps", "1", "--batch", "1", "--seq", "16", "--data", corpus, "--out", run1, "--no-progress"); code != 0 {
		t.Fatal(errs)
	}
	ckpt := filepath.Join(run1, "checkpoints", "step_000001")
	truncated := filepath.Join(dir, "truncated")
	os.MkdirAll(truncated, 0o755)
	for _, f := range []string{"config.json", "model.safetensors"} {
		raw, _ := os.ReadFile(filepath.Join(ckpt, f))
		if f == "model.safetensors" {
			raw = raw[:len(raw)/2]
		}
		os.WriteFile(filepath.Join(truncated, f), raw, 0o644)
	}
	badMagic := filepath.Join(dir, "bad.bin")
	hdr := make([]byte, 1024+20)
	binary.LittleEndian.PutUint32(hdr[0:], 12345)
	binary.LittleEndian.PutUint32(hdr[4:], 1)
	binary.LittleEndian.PutUint32(hdr[8:], 10)
	os.WriteFile(badMagic, hdr, 0o644)
	bigToken := filepath.Join(dir, "big.bin")
	toks := make([]uint16, 200)
	toks[50] = 300
	if err := data.WriteShard(bigToken, toks); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing checkpoint", []string{"eval", "--ckpt", filepath.Join(dir, "nope"), "--data", corpus}, "nope"},
		{"truncated checkpoint", []string{"eval", "--ckpt", truncated, "--data", corpus, "--seq", "16"}, "model.safetensors"},
		{"wrong shard magic", []string{"train", "--data", badMagic, "--steps", "1", "--out", filepath.Join(dir, "x")}, "magic"},
		{"token id >= vocab", []string{"train", "--data", bigToken, "--steps", "1", "--batch", "1", "--seq", "16", "--out", filepath.Join(dir, "y")}, "300"},
		{"heads do not divide d_model", []string{"train", "--n-head", "3", "--steps", "1", "--out", filepath.Join(dir, "z")}, "n_head 3"},
		{"unknown preset", []string{"train", "--model", "huge"}, "huge"},
		{"bad flag value", []string{"train", "--steps", "-1"}, "steps"},
		{"zero learning rate", []string{"train", "--lr", "0", "--out", filepath.Join(dir, "lr0")}, "--lr 0 would not change the model"},
		{"stop after the end", []string{"train", "--steps", "6", "--stop-after", "8", "--out", filepath.Join(dir, "sa")}, "--stop-after 8 is beyond --steps 6"},
		{"architecture beside --init-from", []string{"train", "--init-from", run1, "--n-layer", "4", "--out", filepath.Join(dir, "if")}, "--n-layer would be ignored"},
		{"run directory holds a run", []string{"train", "--steps", "1", "--data", corpus, "--out", run1}, "is not empty"},
		{"resume without --out", []string{"train", "--resume"}, "--resume needs --out"},
		{"plan over the memory limit", []string{"train", "--max-mem-per-rank", "20MB", "--data", corpus, "--out", filepath.Join(dir, "mem")}, "over --max-mem-per-rank 19 MiB; the biggest part is other"},
		{"bad memory size", []string{"train", "--max-mem-per-rank", "lots"}, "--max-mem-per-rank: memory size \"lots\""},
		{"plan of virtual stages", []string{"train", "--model", "small", "--nproc", "2", "--pp", "2", "--microbatches", "2", "--schedule", "interleaved", "--virtual-stages", "2", "--plan"}, "do not model --virtual-stages 2"},
		{"virtual stages on 1f1b", []string{"train", "--model", "small", "--nproc", "2", "--pp", "2", "--microbatches", "2", "--virtual-stages", "2", "--out", filepath.Join(dir, "v2")}, "virtual stages need --schedule interleaved"},
		{"interleaved micro-batches", []string{"train", "--model", "small", "--nproc", "2", "--pp", "2", "--microbatches", "3", "--batch", "6", "--schedule", "interleaved", "--virtual-stages", "2", "--out", filepath.Join(dir, "v3")}, "multiple of the stages"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, errs := runCLI(t, c.args...)
			if code == 0 {
				t.Fatalf("exit 0")
			}
			lines := strings.Split(strings.TrimSpace(errs), "\n")
			last := lines[len(lines)-1]
			if !strings.Contains(last, c.want) || strings.Contains(errs, "panic") || strings.Contains(errs, "goroutine") {
				t.Fatalf("error %q does not name %q", errs, c.want)
			}
		})
	}
}

func TestTrainPlanPrintsAndExits(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "run")
	code, stdout, errs := runCLI(t, "train", "--model", "small", "--nproc", "4", "--pp", "2", "--microbatches", "2", "--plan", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"memory plan per rank: mesh dp2 x tp1 x pp2", "stage 0 (blocks 0-1)", "stage 1 (blocks 2-3)", "activations", "largest rank:"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("--plan output lacks %q:\n%s", want, stdout)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("--plan created the run directory (%v)", err)
	}
}
