package e2e

import (
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWatchdogNamesTheStoppedRank: SIGSTOP one rank of a 3-rank job
// running collectives back to back. Before memberlist's verdict ends the
// job (or at it), the coordinator prints who waits on whom from the ranks'
// heartbeats: the others wait on rank 1, which sends no heartbeats, and
// the chain of waits ends there.
func TestWatchdogNamesTheStoppedRank(t *testing.T) {
	j := start(t, nil, "strand", "check", "--nproc", "3", "--duration", "120s")
	var pid int
	deadline := time.Now().Add(60 * time.Second)
	for pid == 0 && time.Now().Before(deadline) {
		if strings.Count(j.out.String(), "barrier ok") >= 3*4 {
			pid = childWithRank(t, j.cmd.Process.Pid, 1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if pid == 0 {
		t.Fatalf("rank 1 never came up:\n%s", j.out)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	time.Sleep(1500 * time.Millisecond) // heartbeats from inside the loop
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	code := j.wait(t, 30*time.Second)
	out := j.out.String()
	if code == 0 {
		t.Fatalf("job survived a stopped rank:\n%s", out)
	}
	// "step watchdog: " or "at rank 1's death: ", then the report
	waits := regexp.MustCompile(`(?m)(step watchdog|at rank 1's death): rank (0|2) waits on rank 1 in \w+ group \w+ seq \d+ for \d+\.\ds`)
	if !waits.MatchString(out) {
		t.Errorf("no report line saying a rank waits on the stopped rank 1:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)(step watchdog|at rank 1's death): rank 1: no heartbeat for \d+\.\ds`).MatchString(out) ||
		!regexp.MustCompile(`(?m)(step watchdog|at rank 1's death): the waits end at rank 1\s`).MatchString(out) {
		t.Errorf("the report does not end the waits at the stopped rank 1:\n%s", out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "waits end at") {
			t.Log(l)
		}
	}
}
