package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAlpacaLoRAOnHuggingFaceLlama is issue 16's worked example: a
// Hugging Face Llama directory (a llama-tiny exported as one) fine-tuned
// on Alpaca records with LoRA over tp2 x pp2, then its adapters exported
// as PEFT and merged into the base, the merged model evaluating and
// generating.
func TestAlpacaLoRAOnHuggingFaceLlama(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process runs")
	}
	dir := t.TempDir()
	text := filepath.Join(dir, "text.txt")
	if err := os.WriteFile(text, []byte(strings.Repeat("Below is an instruction. ### Response: done\n", 300)), 0o644); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "base")
	runStrand(t, 2*time.Minute, "train", "--model", "llama-tiny", "--steps", "2", "--data", text, "--out", base, "--threads", "1", "--no-progress")
	hfDir := filepath.Join(dir, "llama-hf")
	runStrand(t, time.Minute, "ckpt", "export", base, "--out", hfDir)
	alpaca := filepath.Join(dir, "alpaca.jsonl")
	var b strings.Builder
	for i := 0; i < 64; i++ {
		rec := map[string]string{"instruction": "Add the numbers.", "input": fmt.Sprintf("%d+%d", i%7, i%5), "output": fmt.Sprint(i%7 + i%5)}
		if i%3 == 0 {
			rec = map[string]string{"instruction": "Say the word.", "output": "ok"}
		}
		line, _ := json.Marshal(rec)
		b.Write(append(line, '\n'))
	}
	if err := os.WriteFile(alpaca, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	sft := filepath.Join(dir, "sft")
	out := runStrand(t, 3*time.Minute, "sft", "--ckpt", hfDir, "--data", alpaca, "--nproc", "4", "--tp", "2", "--pp", "2",
		"--lora-rank", "8", "--lora-targets", "q_proj,v_proj", "--steps", "4", "--batch", "4", "--seq", "256", "--lr", "1e-3",
		"--val-frac", "0", "--threads", "1", "--out", sft)
	if !strings.Contains(out, "done: step 4 of 4") {
		t.Fatalf("sft on the Hugging Face directory:\n%s", out)
	}
	peft := filepath.Join(dir, "peft")
	runStrand(t, time.Minute, "ckpt", "export", sft, "--format", "peft", "--out", peft)
	for _, f := range []string{"adapter_config.json", "adapter_model.safetensors"} {
		if _, err := os.Stat(filepath.Join(peft, f)); err != nil {
			t.Fatalf("PEFT export lacks %s: %v", f, err)
		}
	}
	merged := filepath.Join(dir, "merged")
	runStrand(t, time.Minute, "lora", "merge", "--adapters", sft, "--out", merged)
	ev := runStrand(t, time.Minute, "eval", "--ckpt", merged, "--data", text, "--steps", "1", "--batch", "1", "--seq", "64")
	if !strings.Contains(ev, `"loss"`) {
		t.Fatalf("eval of the merged model:\n%s", ev)
	}
	gen := runStrand(t, time.Minute, "generate", "--ckpt", sft, "--prompt-ids", "1,2,3", "--max-tokens", "4", "--json", "--temperature", "0")
	if !strings.Contains(gen, `"ids"`) {
		t.Fatalf("generate from the LoRA run:\n%s", gen)
	}
}
