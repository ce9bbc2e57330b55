package e2e

import (
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTwoNodeHierarchicalTraining trains tiny on two "hosts" (network
// namespaces) of two ranks each with DP 4: ranks of a host talk through
// shared memory, the hosts through TCP, and the DP gradient all-reduce
// runs hierarchically. The losses (and the validation loss) match one
// process within 1e-4.
func TestTwoNodeHierarchicalTraining(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process training runs")
	}
	h := twoHosts(t, "t")
	dir := t.TempDir()
	want := layoutRun(t, dir, 1, 1, 1)
	run := filepath.Join(dir, "two-nodes")
	coord := ipA + ":29519"
	node := func(ns, rank string) *job {
		return start(t, nil, h.ipBin, "netns", "exec", ns, strandBin, "train", "--model", "tiny", "--steps", "20", "--batch", "8",
			"--microbatches", "2", "--max-data-bytes", "200000", "--out", run, "--no-progress", "--threads", "1",
			"--nnodes", "2", "--node-rank", rank, "--coordinator", coord, "--nproc-per-node", "2", "--dp", "4",
			"--token", "netns-train", "--connect-timeout", "30s")
	}
	a, b := node(h.nsA, "0"), node(h.nsB, "1")
	ca, cb := a.wait(t, 3*time.Minute), b.wait(t, 3*time.Minute)
	if ca != 0 || cb != 0 {
		t.Fatalf("exit %d %d\nnode 0:\n%s\nnode 1:\n%s", ca, cb, a.out, b.out)
	}
	out := a.out.String()
	for _, w := range []string{"rank 0: shm to [1], tcp to [2 3]", "hierarchical all-reduce"} {
		if !strings.Contains(out, w) {
			t.Errorf("node 0's log lacks %q:\n%s", w, out)
		}
	}
	got := readLosses(t, run)
	if v, ok := lastRecord(t, run, "val_loss")["val_loss"].(float64); ok {
		got = append(got, v) // layoutRun's last value is the validation loss
	}
	if len(got) != len(want) {
		t.Fatalf("%d steps, want %d", len(got), len(want))
	}
	for i := range want {
		if e := math.Abs(got[i]-want[i]) / want[i]; e > 1e-4 {
			t.Errorf("step %d: loss %.7f, single process %.7f (relative %.2g)", i+1, got[i], want[i], e)
		}
	}
}
