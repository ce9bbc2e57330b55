package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLlamaFromHuggingFaceOnFourRanks: a Llama trained from scratch
// (llama-tiny: grouped-query attention, untied head) is exported as a
// sharded bf16 Hugging Face directory; LoRA fine-tuning of that directory
// with Hugging Face target names on 4 processes (DP x PP, TP x PP, DP x
// TP) matches the single process's loss within 1e-4, and the adapters
// export in PEFT's layout.
func TestLlamaFromHuggingFaceOnFourRanks(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process runs")
	}
	dir := t.TempDir()
	text := filepath.Join(dir, "text.txt")
	if err := os.WriteFile(text, []byte(strings.Repeat("func main() { fmt.Println(\"hello, llama\") }\n", 400)), 0o644); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "base")
	runStrand(t, 2*time.Minute, "train", "--model", "llama-tiny", "--steps", "3", "--data", text, "--out", base, "--threads", "1", "--no-progress")
	hfDir := filepath.Join(dir, "hf")
	runStrand(t, time.Minute, "ckpt", "export", base, "--out", hfDir, "--dtype", "bf16", "--max-shard-size", "100KB")
	if _, err := os.Stat(filepath.Join(hfDir, "model.safetensors.index.json")); err != nil {
		t.Fatalf("sharded export: %v", err)
	}
	data := filepath.Join(dir, "reverse.jsonl")
	writeReverseTask(t, data, 200)
	run := func(name string, mesh ...string) []float64 {
		out := filepath.Join(dir, name)
		args := append([]string{"sft", "--ckpt", hfDir, "--data", data, "--steps", "6", "--lr", "2e-3", "--batch", "8",
			"--microbatches", "2", "--val-frac", "0", "--threads", "1", "--out", out,
			"--lora-rank", "4", "--lora-targets", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"}, mesh...)
		runStrand(t, 2*time.Minute, args...)
		l, _ := sftMetrics(t, out)
		if len(l) != 6 {
			t.Fatalf("%s: %d step losses in metrics.jsonl, want 6", name, len(l))
		}
		return l
	}
	matchesSingleProcessOnFourRanks(t, run)
	peft := filepath.Join(dir, "peft")
	runStrand(t, time.Minute, "ckpt", "export", filepath.Join(dir, "single"), "--format", "peft", "--out", peft)
	raw, err := os.ReadFile(filepath.Join(peft, "adapter_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ac struct {
		PeftType      string   `json:"peft_type"`
		TargetModules []string `json:"target_modules"`
	}
	if err := json.Unmarshal(raw, &ac); err != nil || ac.PeftType != "LORA" || len(ac.TargetModules) != 7 {
		t.Fatalf("adapter_config.json %s (%v)", raw, err)
	}
}
