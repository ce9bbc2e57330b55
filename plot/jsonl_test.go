package plot

import (
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strand-ml/strand/metrics"
)

func TestLossCurveFromJSONL(t *testing.T) {
	dir := t.TempDir()
	jp := filepath.Join(dir, "metrics.jsonl")
	j, err := metrics.NewJSONL(jp)
	if err != nil {
		t.Fatal(err)
	}
	for s := 1; s <= 100; s++ {
		if err := j.Write(map[string]any{"step": s, "loss": 5 * math.Exp(-float64(s)/30), "lr": 1e-3}); err != nil {
			t.Fatal(err)
		}
		if s%25 == 0 {
			j.Write(map[string]any{"step": s, "val_loss": 5.2 * math.Exp(-float64(s)/30)})
		}
	}
	j.Close()
	pp := filepath.Join(dir, "loss.png")
	if err := LossCurveFromJSONL(pp, jp, "run"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(pp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Fatalf("not a PNG: %v", err)
	}

	empty := filepath.Join(dir, "empty.jsonl")
	os.WriteFile(empty, []byte("{\"step\":1}\n"), 0o644)
	if err := LossCurveFromJSONL(pp, empty, "run"); err == nil || !strings.Contains(err.Error(), "no records") {
		t.Fatalf("empty metrics: %v", err)
	}
	if err := LossCurveFromJSONL(pp, filepath.Join(dir, "missing.jsonl"), "run"); err == nil {
		t.Fatal("missing metrics file accepted")
	}
}
