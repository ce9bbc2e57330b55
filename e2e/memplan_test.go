package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPlanAgreesWithMeasuredMemory: on three configurations (data
// parallel with ZeRO-1; tensor x pipeline parallel in bf16 with full
// recomputation; four data-parallel ranks of a wider model) `strand train
// --plan` predicts every memory category of the largest rank within 10%
// of what a real run holds (metrics.jsonl's first record, maxed over
// ranks), and its total within 10% of the run's peak RSS before the
// first checkpoint.
func TestPlanAgreesWithMeasuredMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process runs")
	}
	dir := t.TempDir()
	text := filepath.Join(dir, "text.txt")
	words := strings.Fields("func main return if else for range var type struct package import memory plan rank")
	var b strings.Builder
	for i := 0; b.Len() < 300<<10; i++ {
		b.WriteString(words[(i*i*7+i*3)%len(words)])
		b.WriteByte(' ')
	}
	if err := os.WriteFile(text, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	common := []string{"--model", "gpt2s", "--batch", "8", "--seq", "256", "--data", text, "--threads", "1"}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"dp2-zero1", []string{"--nproc", "2", "--zero1"}},
		{"tp2-pp2-bf16-full", []string{"--nproc", "4", "--tp", "2", "--pp", "2", "--microbatches", "4", "--precision", "bf16", "--recompute", "full"}},
		{"dp4-wide", []string{"--nproc", "4", "--n-layer", "4", "--n-embd", "512", "--n-head", "8"}},
	} {
		args := append(append([]string{"train"}, common...), c.args...)
		out := runStrand(t, time.Minute, append(args, "--plan", "--log-format", "json")...)
		var plan struct {
			Plan struct {
				Largest map[string]float64 `json:"largest"`
			} `json:"memory_plan"`
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, `{"memory_plan"`) {
				if err := json.Unmarshal([]byte(line), &plan); err != nil {
					t.Fatalf("%s: plan %q: %v", c.name, line, err)
				}
			}
		}
		want := plan.Plan.Largest
		if want["total"] == 0 {
			t.Fatalf("%s: no plan in\n%s", c.name, out)
		}
		run := filepath.Join(dir, c.name)
		runStrand(t, 4*time.Minute, append(args, "--steps", "1", "--out", run, "--no-progress")...)
		raw, err := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]float64
		first, _, _ := strings.Cut(string(raw), "\n")
		if err := json.Unmarshal([]byte(first), &got); err != nil {
			t.Fatalf("%s: first record %q: %v", c.name, first, err)
		}
		report := fmt.Sprintf("%s: predicted total %.1f MiB, peak RSS %.1f MiB", c.name, want["total"]/(1<<20), got["peak_rss"]/(1<<20))
		for _, k := range []string{"params", "grads", "optimizer", "activations", "comm"} {
			p, m := want[k], got["mem_"+k]
			report += fmt.Sprintf("; %s %.2f/%.2f MiB", k, p/(1<<20), m/(1<<20))
			if math.Abs(p-m) > 0.1*math.Max(p, m) {
				t.Errorf("%s: %s predicted %.0f bytes, measured %.0f", c.name, k, p, m)
			}
		}
		if p, m := want["total"], got["peak_rss"]; !(math.Abs(p-m) <= 0.1*m) {
			t.Errorf("%s: predicted total %.0f bytes, peak RSS %.0f", c.name, p, m)
		}
		t.Log(report)
	}
}
