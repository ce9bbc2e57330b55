package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPipelineLoopRuns builds the example and runs it as a local job of 4
// processes (DP 2 x PP 2, 2 micro-batches by GPipe): the loss falls and the
// final checkpoint is committed. A mesh that does not fit is refused
// before any process starts.
func TestPipelineLoopRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 4-process job")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "pipeline_loop")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, bin, "-launch", "4", "-pp", "2", "-micro", "2", "-schedule", "gpipe",
		"-steps", "10", "-out", filepath.Join(dir, "run")).CombinedOutput()
	if err != nil {
		t.Fatalf("job: %v\n%s", err, out)
	}
	loss := map[int]float64{}
	for _, m := range regexp.MustCompile(`step +(\d+)  loss (\S+)`).FindAllStringSubmatch(string(out), -1) {
		step, _ := strconv.Atoi(m[1])
		loss[step], _ = strconv.ParseFloat(m[2], 64)
	}
	if len(loss) != 2 || loss[10] <= 0 || loss[10] >= loss[1] {
		t.Fatalf("want the loss of steps 1 and 10, falling; got %v\n%s", loss, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "run", "checkpoints", "step_000010", "commit.json")); err != nil {
		t.Fatalf("no committed checkpoint: %v\n%s", err, out)
	}

	out, err = exec.CommandContext(ctx, bin, "-launch", "3", "-pp", "2").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "does not divide world size 3") {
		t.Fatalf("a 3-process job over 2 stages: err %v\n%s", err, out)
	}
}
