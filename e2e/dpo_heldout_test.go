package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDPOHeldOutOnTensorParallel: DPO with held-out pairs on two
// tensor-parallel ranks reports the held-out margin and ends (rank 0 used
// to evaluate the sharded policy alone and wait for its peer forever).
func TestDPOHeldOutOnTensorParallel(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process run")
	}
	dir := t.TempDir()
	pairs := filepath.Join(dir, "pairs.jsonl")
	writePairs(t, pairs, 40)
	out := runStrand(t, 2*time.Minute, "dpo", "--from-scratch", "--model", "tiny", "--data", pairs, "--steps", "2", "--batch", "8",
		"--seq", "16", "--val-frac", "0.2", "--nproc", "2", "--tp", "2", "--threads", "1", "--out", filepath.Join(dir, "run"))
	if !strings.Contains(out, "held-out chosen-over-rejected log-prob margin") {
		t.Fatalf("no held-out margin reported:\n%s", out)
	}
}
