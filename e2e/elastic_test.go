package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNodeLossShrinksDataParallel: a 2-node x 2-worker job (tp 2, so dp 2)
// with --max-restarts 1 --min-nodes 1 loses node 1 (its launcher and
// workers, kill -9) after the first checkpoint. Node 0 regroups alone,
// continues as dp 1 x tp 2 from the last checkpoint and finishes every
// step; its losses after the restart match a run that trained to the same
// checkpoint on 2 nodes and was resumed with `strand train --resume` on
// the smaller mesh.
func TestNodeLossShrinksDataParallel(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process training runs")
	}
	// Long enough that the kill lands mid-run on a fast machine.
	dir := t.TempDir()

	run := filepath.Join(dir, "elastic")
	coord := "127.0.0.1:" + strconv.Itoa(freePort(t))
	elastic := []string{"--max-restarts", "1", "--min-nodes", "1", "--rejoin-timeout", "3s"}
	node0 := start(t, nil, nodeArgs(run, coord, 0, elastic...)...)
	node1 := start(t, nil, nodeArgs(run, coord, 1, elastic...)...)
	waitForCheckpoint(t, run, 10, node0, node1)
	// Node loss: the launcher and its workers all go at once.
	if err := syscall.Kill(-node1.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := node0.wait(t, 4*time.Minute); code != 0 {
		t.Fatalf("node 0 exit %d:\n%s", code, node0.out)
	}
	out0 := node0.out.String()
	for _, want := range []string{"restart 1 of 1", "continuing on 1 of 2 node(s) (missing [1])", "mesh dp=1 tp=2 pp=1, epoch 1"} {
		if !strings.Contains(out0, want) {
			t.Fatalf("node 0's output lacks %q:\n%s", want, out0)
		}
	}
	got := lossesByStep(t, run)
	ev := resumeRecord(t, run)
	if ev.Restart != 1 || ev.Layout == "" || !strings.Contains(ev.Layout, "dp=1") || ev.ResumedFromStep < 10 || ev.ResumedFromStep%10 != 0 {
		t.Fatalf("resume record %+v: want restart 1 on a dp=1 layout from a checkpoint", ev)
	}
	if ev.LostSteps > 10 {
		t.Fatalf("resume record %+v: lost more than one checkpoint interval", ev)
	}
	if len(got) != steps {
		t.Fatalf("%d steps logged, want %d", len(got), steps)
	}

	// The reference switches layout at the same checkpoint, on purpose.
	ref := filepath.Join(dir, "reference")
	coord = "127.0.0.1:" + strconv.Itoa(freePort(t))
	stop := "--stop-after=" + strconv.Itoa(ev.ResumedFromStep)
	r0 := start(t, nil, nodeArgs(ref, coord, 0, stop)...)
	r1 := start(t, nil, nodeArgs(ref, coord, 1, stop)...)
	if c0, c1 := r0.wait(t, 3*time.Minute), r1.wait(t, 3*time.Minute); c0 != 0 || c1 != 0 {
		t.Fatalf("reference exits %d %d:\n%s\n%s", c0, c1, r0.out, r1.out)
	}
	runStrand(t, 3*time.Minute, append([]string{"train", "--out", ref, "--resume", "--nproc", "2"}, train...)...)
	want := lossesByStep(t, ref)
	for s := 1; s <= steps; s++ {
		if _, ok := want[s]; !ok {
			t.Fatalf("reference has no loss for step %d", s)
		}
		if e := math.Abs(got[s]-want[s]) / want[s]; e > 1e-4 {
			t.Errorf("step %d: %v after losing node 1, %v in the reference (relative %.2g)", s, got[s], want[s], e)
		}
	}
}

// Long enough that a kill after the first checkpoint lands mid-run.
const steps = 60

// train are the training flags of the elastic tests: tiny model, tp 2.
var train = []string{"--model", "tiny", "--batch", "8", "--microbatches", "2", "--max-data-bytes", "200000", "--no-progress",
	"--threads", "1", "--steps", strconv.Itoa(steps), "--ckpt-every", "10", "--tp", "2"}

// nodeArgs is the command line of one node of a 2-node x 2-worker job.
func nodeArgs(out, coord string, rank int, extra ...string) []string {
	a := append([]string{"strand", "train", "--out", out, "--nnodes", "2", "--node-rank", strconv.Itoa(rank),
		"--coordinator", coord, "--nproc-per-node", "2", "--token", "elastic-token"}, train...)
	return append(a, extra...)
}

// waitForCheckpoint waits until the run has committed the checkpoint of step.
func waitForCheckpoint(t *testing.T, run string, step int, nodes ...*job) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(run, "checkpoints", fmt.Sprintf("step_%06d", step), "commit.json")); err == nil {
			return
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for i, n := range nodes {
				fmt.Fprintf(&b, "node %d:\n%s\n", i, n.out)
			}
			t.Fatalf("no checkpoint of step %d after 3 minutes:\n%s", step, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWorkerLossKeepsAllNodes: one worker of node 1 is killed; both
// launchers survive, regroup at epoch 1 with every node back, keep the
// full mesh, and the run matches an uninterrupted one bit for bit (same
// layout, exact resume).
func TestWorkerLossKeepsAllNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process training runs")
	}
	dir := t.TempDir()
	clean := filepath.Join(dir, "clean")
	coord := "127.0.0.1:" + strconv.Itoa(freePort(t))
	c0 := start(t, nil, nodeArgs(clean, coord, 0)...)
	c1 := start(t, nil, nodeArgs(clean, coord, 1)...)
	if a, b := c0.wait(t, 3*time.Minute), c1.wait(t, 3*time.Minute); a != 0 || b != 0 {
		t.Fatalf("clean run exits %d %d:\n%s\n%s", a, b, c0.out, c1.out)
	}
	want := lossesByStep(t, clean)

	run := filepath.Join(dir, "restarted")
	coord = "127.0.0.1:" + strconv.Itoa(freePort(t))
	elastic := []string{"--max-restarts", "1", "--min-nodes", "1", "--rejoin-timeout", "20s"}
	node0 := start(t, nil, nodeArgs(run, coord, 0, elastic...)...)
	node1 := start(t, nil, nodeArgs(run, coord, 1, elastic...)...)
	waitForCheckpoint(t, run, 10, node0, node1)
	victim := childWithRank(t, node1.cmd.Process.Pid, 3)
	if victim == 0 {
		t.Fatalf("no rank 3 among node 1's workers:\n%s", node1.out)
	}
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	a, b := node0.wait(t, 4*time.Minute), node1.wait(t, 4*time.Minute)
	if a != 0 || b != 0 {
		t.Fatalf("exits %d %d:\nnode 0:\n%s\nnode 1:\n%s", a, b, node0.out, node1.out)
	}
	for i, n := range []*job{node0, node1} {
		if out := n.out.String(); !strings.Contains(out, fmt.Sprintf("launching 2 of the job's 4 workers on node %d of 2, mesh dp=2 tp=2 pp=1, epoch 1", i)) || !strings.Contains(out, "regrouped for epoch 1: 2 of 2 node(s)") {
			t.Fatalf("node %d did not relaunch the full mesh at epoch 1:\n%s", i, out)
		}
	}
	// Every node came back: node 0 must not have waited out the timeout.
	if d := time.Since(start); d > 90*time.Second {
		t.Errorf("restart with every node back took %v", d)
	}
	got := lossesByStep(t, run)
	for s := 1; s <= steps; s++ {
		if math.Float64bits(got[s]) != math.Float64bits(want[s]) {
			t.Fatalf("step %d: %v after the restart, %v uninterrupted", s, got[s], want[s])
		}
	}
	if ev := resumeRecord(t, run); ev.Restart != 1 || ev.LostSteps > 10 {
		t.Fatalf("resume record %+v", ev)
	}
}

// TestNodeLossBelowMinNodes: without --min-nodes (all nodes required),
// losing node 1 ends the job after the rejoin timeout with an error naming
// the missing node, instead of hanging or shrinking.
func TestNodeLossBelowMinNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process training runs")
	}
	run := filepath.Join(t.TempDir(), "run")
	coord := "127.0.0.1:" + strconv.Itoa(freePort(t))
	elastic := []string{"--max-restarts", "1", "--rejoin-timeout", "2s"}
	node0 := start(t, nil, nodeArgs(run, coord, 0, elastic...)...)
	node1 := start(t, nil, nodeArgs(run, coord, 1, elastic...)...)
	waitForCheckpoint(t, run, 10, node0, node1)
	if err := syscall.Kill(-node1.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := node0.wait(t, 2*time.Minute); code == 0 {
		t.Fatalf("node 0 exited 0 with too few nodes:\n%s", node0.out)
	}
	out := node0.out.String()
	t.Logf("node 0 ended with: %s", out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
	if !strings.Contains(out, "only 1 of 2 nodes came back within 2s, fewer than --min-nodes 2; missing node(s) 1") {
		t.Fatalf("node 0's error does not name the missing node:\n%s", out)
	}
	if strings.Contains(out, ", epoch 1\n") {
		t.Fatalf("node 0 launched workers for epoch 1 without enough nodes:\n%s", out)
	}
}

type resumeEvent struct {
	Event           string
	Restart         int
	Layout          string
	ResumedFromStep int `json:"resumed_from_step"`
	LostSteps       int `json:"lost_steps"`
}

// resumeRecord returns the last resume record of a run's metrics.
func resumeRecord(t *testing.T, run string) resumeEvent {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var ev resumeEvent
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.Contains(line, `"event":"resume"`) || strings.Contains(line, `"event": "resume"`) {
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("resume record %q: %v", line, err)
			}
		}
	}
	if ev.Event != "resume" {
		t.Fatalf("no resume record in %s/metrics.jsonl", run)
	}
	return ev
}
