package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/tokenizer"
	"github.com/strand-ml/strand/tokenizer/tokentest"
)

// TestTokenizerTravelsWithTheCheckpoint: train --tokenizer sizes the
// vocabulary from the tokenizer (padded to 64) and saves its files in every
// checkpoint; sft on that checkpoint without --tokenizer uses them, and a
// different --tokenizer is refused; eval, generate and ckpt export find
// them too.
func TestTokenizerTravelsWithTheCheckpoint(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "text.txt")
	if err := os.WriteFile(text, tokentest.Mixed(7, 120_000), 0o644); err != nil {
		t.Fatal(err)
	}
	tokA, tokB := filepath.Join(dir, "tokA"), filepath.Join(dir, "tokB")
	runStrand(t, time.Minute, "tokenizer", "train", "--data", text, "--vocab", "300", "--out", tokA)
	runStrand(t, time.Minute, "tokenizer", "train", "--data", text, "--vocab", "320", "--out", tokB)

	base := filepath.Join(dir, "base")
	runStrand(t, time.Minute, "train", "--model", "tiny", "--tokenizer", tokA, "--data", text, "--steps", "3", "--batch", "4",
		"--seq", "32", "--out", base, "--no-progress", "--threads", "1")
	ck, _, err := checkpoint.Resolve(base)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := checkpoint.ReadConfig(ck)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.VocabSize != 320 { // 300 rounded up to a multiple of 64
		t.Fatalf("model vocabulary %d, want 320 (the tokenizer's 300 padded to 64)", cfg.VocabSize)
	}
	for _, f := range []string{"tokenizer.json", "vocab.json", "merges.txt"} {
		fi, err := os.Stat(filepath.Join(ck, f))
		if err != nil {
			t.Fatalf("checkpoint lacks %s: %v", f, err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s has mode %v, want 0644", f, fi.Mode().Perm())
		}
	}
	if err := checkpoint.Verify(ck); err != nil {
		t.Fatalf("the tokenizer files broke the commit: %v", err)
	}

	// SFT on the base without --tokenizer: the base's tokenizer encodes.
	sftData := filepath.Join(dir, "sft.jsonl")
	writeReverseTask(t, sftData, 40)
	sft := filepath.Join(dir, "sft")
	out := runStrand(t, time.Minute, "sft", "--ckpt", base, "--data", sftData, "--steps", "2", "--batch", "4", "--seq", "32",
		"--val-frac", "0", "--out", sft, "--threads", "1")
	if strings.Contains(out, "outside") {
		t.Fatalf("sft on the base:\n%s", out)
	}
	sck, _, err := checkpoint.Resolve(sft)
	if err != nil {
		t.Fatal(err)
	}
	saved, err := tokenizer.LoadDir(sck)
	if err != nil {
		t.Fatalf("the SFT checkpoint lacks the tokenizer: %v", err)
	}
	want, _ := tokenizer.Load(tokA)
	if !tokenizer.Same(saved, want) {
		t.Fatal("the SFT checkpoint holds another tokenizer than the base's")
	}

	// A different --tokenizer is refused, naming both.
	j := start(t, nil, "strand", "sft", "--ckpt", base, "--tokenizer", tokB, "--data", sftData, "--steps", "1", "--out", filepath.Join(dir, "conflict"))
	if code := j.wait(t, time.Minute); code != 2 || !strings.Contains(j.out.String(), "is not the tokenizer saved with") {
		t.Fatalf("conflicting --tokenizer: exit %d\n%s", code, j.out.String())
	}

	// generate decodes with the saved tokenizer (its ids exceed bytes).
	gen := runStrand(t, time.Minute, "generate", "--ckpt", sft, "--prompt", "abc=", "--max-tokens", "8", "--json", "--threads", "1")
	var g struct {
		IDs  []int  `json:"ids"`
		Text string `json:"text"`
	}
	line := strings.TrimSpace(gen[strings.LastIndex(strings.TrimSpace(gen), "\n")+1:])
	if err := json.Unmarshal([]byte(line), &g); err != nil || len(g.IDs) == 0 {
		t.Fatalf("generate --json: %v\n%s", err, gen)
	}

	// ckpt export writes the tokenizer files beside the model.
	exp := filepath.Join(dir, "export")
	runStrand(t, time.Minute, "ckpt", "export", base, "--out", exp)
	if _, err := tokenizer.LoadDir(exp); err != nil {
		t.Fatalf("the export lacks the tokenizer: %v", err)
	}
}
