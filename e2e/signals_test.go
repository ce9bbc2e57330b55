package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitRounds waits until a `strand check --duration` job's workers have
// run a few rounds of collectives.
func waitRounds(t *testing.T, jobs ...*job) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out := ""
		for _, j := range jobs {
			out += j.out.String()
		}
		if strings.Count(out, "pp group") >= 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job never ran:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func alive(pid int) bool {
	if pid == 0 {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	// a zombie (state Z) waits for a reaper that is gone: it has exited
	return err == nil && !strings.Contains(string(stat), ") Z ")
}

// TestOperatorInterruptBlamesNoRank: Ctrl-C (SIGINT to the launcher)
// stops every worker with "interrupted by the operator"; no rank is said
// to have failed and no line gives a bare "context canceled" as a reason.
func TestOperatorInterruptBlamesNoRank(t *testing.T) {
	j := start(t, nil, "strand", "check", "--nproc", "2", "--duration", "120s")
	waitRounds(t, j)
	if err := j.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	code := j.wait(t, 30*time.Second)
	out := j.out.String()
	if code == 0 || !strings.Contains(out, "interrupted by the operator") {
		t.Fatalf("exit %d after Ctrl-C, want a failure saying the operator interrupted:\n%s", code, out)
	}
	for _, bad := range []string{"rank 0 failed", "rank 1 failed", "rank 0 (host", "rank 1 (host"} {
		if strings.Contains(out, bad) {
			t.Errorf("output after Ctrl-C contains %q:\n%s", bad, out)
		}
	}
	// A worker's own cancelled call may show as detail ("(after: ...
	// context canceled)"), never as the reason.
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "context canceled") && !strings.Contains(l, "interrupted by the operator") {
			t.Errorf("a line blames a cancelled context, not the operator: %s", l)
		}
	}
}

// TestKilledLauncherTakesItsWorkers: a launcher killed with -9 leaves no
// worker behind; on a 2-node job the workers of the killed node tell the
// coordinator (on the other node) that their launcher is gone, and the
// surviving node prints it.
func TestKilledLauncherTakesItsWorkers(t *testing.T) {
	coord := "127.0.0.1:" + strconv.Itoa(freePort(t))
	args := func(rank int) []string {
		return []string{"strand", "check", "--nnodes", "2", "--node-rank", strconv.Itoa(rank), "--coordinator", coord,
			"--nproc-per-node", "2", "--token", "signals-token", "--duration", "120s"}
	}
	n0 := start(t, nil, args(0)...)
	n1 := start(t, nil, args(1)...)
	waitRounds(t, n0, n1)
	launcher := n1.cmd.Process.Pid
	workers := []int{childWithRank(t, launcher, 2), childWithRank(t, launcher, 3)}
	if workers[0] == 0 || workers[1] == 0 {
		t.Fatalf("node 1's workers not found: %v", workers)
	}
	if err := syscall.Kill(launcher, syscall.SIGKILL); err != nil { // the launcher only, not its group
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for alive(workers[0]) || alive(workers[1]) {
		if time.Now().After(deadline) {
			t.Fatalf("node 1's workers %v still run 15 s after their launcher was killed", workers)
		}
		time.Sleep(100 * time.Millisecond)
	}
	code := n0.wait(t, 30*time.Second)
	out := n0.out.String()
	if code == 0 || !strings.Contains(out, "launcher (pid "+strconv.Itoa(launcher)+") is gone") {
		t.Fatalf("node 0 exit %d, want the job to fail naming node 1's lost launcher:\n%s", code, out)
	}
}

// TestRestartsUsedUpIsSaid: a job with --max-restarts 1 whose worker is
// killed again after the restart fails saying the restarts are used up.
func TestRestartsUsedUpIsSaid(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process training runs")
	}
	run := filepath.Join(t.TempDir(), "run")
	// many steps: the job must still run when each kill lands
	args := append([]string{"strand", "train", "--out", run, "--nproc", "2", "--max-restarts", "1"}, train...)
	j := start(t, nil, append(args, "--steps", "100000", "--ckpt-every", "20")...)
	for epoch := 0; epoch < 2; epoch++ {
		victim := 0
		deadline := time.Now().Add(2 * time.Minute)
		for victim == 0 || !strings.Contains(j.out.String(), "epoch "+strconv.Itoa(epoch)) ||
			(epoch == 1 && !strings.Contains(j.out.String(), "[rank 1]")) {
			if time.Now().After(deadline) {
				t.Fatalf("no worker of epoch %d:\n%s", epoch, j.out)
			}
			time.Sleep(200 * time.Millisecond)
			victim = childWithRank(t, j.cmd.Process.Pid, 1)
		}
		time.Sleep(time.Second) // let it train a little
		if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
			t.Fatalf("kill rank 1 of epoch %d: %v\n%s", epoch, err, j.out)
		}
		if epoch == 0 {
			// wait for the relaunch to replace the victim
			for end := time.Now().Add(time.Minute); alive(victim) || childWithRank(t, j.cmd.Process.Pid, 1) == 0; {
				if time.Now().After(end) {
					t.Fatalf("no restart:\n%s", j.out)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	}
	code := j.wait(t, time.Minute)
	out := j.out.String()
	if code == 0 || !strings.Contains(out, "restart 1 of 1") || !strings.Contains(out, "all 1 restarts are used up") {
		t.Fatalf("exit %d, want a failure saying the restarts are used up:\n%s", code, out)
	}
}
