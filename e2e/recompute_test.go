package e2e

import (
	"math"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestRecomputeKeepsLossesBitIdentical: training with selective and full
// activation recomputation on tp2 x pp2 gives the per-step losses of
// keeping every activation, bit for bit, with fewer activation bytes per
// stage.
func TestRecomputeKeepsLossesBitIdentical(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process runs")
	}
	dir := t.TempDir()
	text := filepath.Join(dir, "text.txt")
	writeGoldenText(t, text)
	stageMB := regexp.MustCompile(`stage 0: .*, ([0-9.]+) MB of activations`)
	run := func(mode string) ([]float64, float64) {
		out := runStrand(t, 2*time.Minute, "train", "--model", "tiny", "--n-layer", "8", "--data", text, "--steps", "4", "--batch", "8", "--seq", "64",
			"--microbatches", "2", "--nproc", "4", "--tp", "2", "--pp", "2", "--recompute", mode, "--threads", "1", "--no-progress",
			"--out", filepath.Join(dir, mode))
		m := stageMB.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("%s: no activation line:\n%s", mode, out)
		}
		mb, _ := strconv.ParseFloat(m[1], 64)
		return readLosses(t, filepath.Join(dir, mode)), mb
	}
	want, mbNone := run("none")
	prev := mbNone
	for _, mode := range []string{"selective", "full"} {
		got, mb := run(mode)
		for i := range want {
			if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
				t.Errorf("%s step %d: loss %v, without recomputation %v", mode, i+1, got[i], want[i])
			}
		}
		if mb >= prev {
			t.Errorf("%s: %.1f MB of activations on stage 0, not below %.1f", mode, mb, prev)
		}
		t.Logf("%s: %.1f MB of activations on stage 0 (none: %.1f)", mode, mb, mbNone)
		prev = mb
	}
}
