package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEvalDefaultsToHeldOutSplit: eval --ckpt RUN without --data evaluates
// the held-out tail the run recorded (the same numbers as naming --data
// and --val-frac by hand, from another directory too), says so, and
// shows progress; a checkpoint without the record asks for --data.
func TestEvalDefaultsToHeldOutSplit(t *testing.T) {
	run, text := trainSmall(t, "learned")
	type result struct {
		Loss    float64
		Tokens  int
		Batches int
		Data    string
	}
	eval := func(args ...string) (result, string) {
		code, out, errs := runCLI(t, append([]string{"eval", "--ckpt", run, "--batch", "2", "--threads", "1"}, args...)...)
		if code != 0 {
			t.Fatalf("eval %v: exit %d: %s", args, code, errs)
		}
		var r result
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		return r, errs
	}
	got, log := eval()
	want, _ := eval("--data", text, "--val-frac", "0.05") // train's default --val-frac
	whole, _ := eval("--data", text)
	if got.Loss != want.Loss || got.Tokens != want.Tokens || got.Batches != want.Batches {
		t.Fatalf("default data: %+v; --data %s --val-frac 0.05: %+v", got, text, want)
	}
	if whole.Batches <= got.Batches || !strings.Contains(got.Data, "[validation]") {
		t.Fatalf("default data %+v is not the held-out tail (whole corpus %+v)", got, whole)
	}
	for _, w := range []string{"no --data: evaluating the held-out 0.05 of the run's data " + text, "eval ", "/" + itoa(got.Batches) + " batches"} {
		if !strings.Contains(log, w) {
			t.Errorf("stderr lacks %q:\n%s", w, log)
		}
	}
	// --val-frac without --data: another tail of the run's data
	tail, _ := eval("--val-frac", "0.1")
	byHand, _ := eval("--data", text, "--val-frac", "0.1")
	if tail.Loss != byHand.Loss || tail.Batches != byHand.Batches || tail.Batches <= got.Batches {
		t.Fatalf("--val-frac 0.1 without --data: %+v; by hand %+v", tail, byHand)
	}

	// a checkpoint without the record (here a fine-tuning run's)
	dir := t.TempDir()
	jsonl := filepath.Join(dir, "sft.jsonl")
	if err := os.WriteFile(jsonl, []byte(strings.Repeat(`{"prompt":"ab","response":"ba"}`+"\n", 8)), 0o644); err != nil {
		t.Fatal(err)
	}
	sft := filepath.Join(dir, "sft")
	if code, _, errs := runCLI(t, "sft", "--from-scratch", "--model", "tiny", "--n-layer", "1", "--n-embd", "32", "--n-head", "2",
		"--data", jsonl, "--steps", "1", "--batch", "2", "--seq", "16", "--out", sft, "--threads", "1", "--no-progress"); code != 0 {
		t.Fatalf("sft: exit %d: %s", code, errs)
	}
	code, _, errs := runCLI(t, "eval", "--ckpt", sft)
	if code != 2 || !strings.Contains(errs, "--data is required") {
		t.Errorf("no record: exit %d: %s", code, errs)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
