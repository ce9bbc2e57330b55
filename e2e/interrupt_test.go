package e2e

import (
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// interruptNode SIGTERMs node's launcher (not its process group: the
// launcher forwards the stop to its workers) and waits for both nodes,
// returning their exit codes and how long they took after the signal.
func interruptNode(t *testing.T, node *job, nodes ...*job) (codes []int, took time.Duration) {
	t.Helper()
	t0 := time.Now()
	if err := syscall.Kill(node.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		codes = append(codes, n.wait(t, 60*time.Second))
	}
	return codes, time.Since(t0)
}

// noRankBlamed fails the test when out says some rank failed or died.
func noRankBlamed(t *testing.T, name, out string) {
	t.Helper()
	for r := 0; r < 4; r++ {
		for _, bad := range []string{"rank " + strconv.Itoa(r) + " failed", "rank " + strconv.Itoa(r) + " (host", "rank " + strconv.Itoa(r) + " exited"} {
			if strings.Contains(out, bad) {
				t.Errorf("%s: output after the operator's stop blames a rank (%q):\n%s", name, bad, out)
			}
		}
	}
}

// TestInterruptOtherNodeCheck: SIGTERM to node 1's launcher of a 2-node
// `strand check` (collectives running back to back, no run loop to agree
// on a stop). The stopped rank tells the coordinator at once instead of
// waiting to be named the culprit: both nodes exit promptly with 130
// saying "interrupted by the operator", and no rank is blamed.
func TestInterruptOtherNodeCheck(t *testing.T) {
	node0, node1, _ := twoNodes(t, "interrupt-token", "--duration", "300s")
	waitRounds(t, node0, node1)
	codes, took := interruptNode(t, node1, node0, node1)
	for i, n := range []*job{node0, node1} {
		out := n.out.String()
		if codes[i] != 130 || !strings.Contains(out, "interrupted by the operator") {
			t.Errorf("node %d exit %d, want 130 saying the operator interrupted:\n%s", i, codes[i], out)
		}
		noRankBlamed(t, "node "+strconv.Itoa(i), out)
		if strings.Contains(out, "flight recorder") {
			t.Errorf("node %d diagnoses a stuck collective after the operator's stop:\n%s", i, out)
		}
	}
	// Generous: the point is "not a timeout", on a busy machine.
	t.Logf("both nodes ended %v after the SIGTERM", took.Round(time.Millisecond))
	if took > 20*time.Second {
		t.Errorf("the job took %v to end after the operator's stop", took)
	}
}

// TestInterruptOtherNodeTrain: SIGTERM to node 1's launcher of a 2-node
// training job with restarts allowed. Every rank agrees to stop at the
// same step and checkpoints; node 0, whose launcher was not signalled,
// ends as interrupted too (exit 130, naming the checkpoint) instead of
// taking its workers' exits for a failure and trying to restart.
func TestInterruptOtherNodeTrain(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process training runs")
	}
	run := filepath.Join(t.TempDir(), "run")
	coord := "127.0.0.1:" + strconv.Itoa(freePort(t))
	long := []string{"--steps", "100000", "--ckpt-every", "100000", "--max-restarts", "1"}
	node0 := start(t, nil, nodeArgs(run, coord, 0, long...)...)
	node1 := start(t, nil, nodeArgs(run, coord, 1, long...)...)
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(node0.out.String(), "compute:") {
		if time.Now().After(deadline) {
			t.Fatalf("job never started training:\nnode 0:\n%s\nnode 1:\n%s", node0.out, node1.out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // a few steps
	codes, took := interruptNode(t, node1, node0, node1)
	for i, n := range []*job{node0, node1} {
		out := n.out.String()
		if codes[i] != 130 || !strings.Contains(out, "strand train: interrupted by the operator at step ") {
			t.Errorf("node %d exit %d, want 130 naming the checkpoint:\n%s", i, codes[i], out)
		}
		if strings.Contains(out, "restart 1 of 1") {
			t.Errorf("node %d restarted an interrupted job:\n%s", i, out)
		}
		noRankBlamed(t, "node "+strconv.Itoa(i), out)
	}
	t.Logf("both nodes ended %v after the SIGTERM", took.Round(time.Millisecond))
	if took > 20*time.Second {
		t.Errorf("the job took %v to end after the operator's stop", took)
	}
}
