package e2e

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSlurmSrun runs the smoke test as 4 Slurm tasks of one srun step: no
// strand launcher, each task reads SLURM_* and task 0 hosts the
// coordinator. e2e/ci_slurm.sh starts the one-node cluster it needs.
func TestSlurmSrun(t *testing.T) {
	srun, err := exec.LookPath("srun")
	if err != nil {
		t.Skip("skipping: srun not found (run e2e/ci_slurm.sh as root to install and start a one-node Slurm cluster)")
	}
	if out, err := exec.Command("sinfo", "-h", "-o", "%t").Output(); err != nil || !strings.Contains(string(out), "idle") && !strings.Contains(string(out), "mix") {
		t.Skipf("skipping: no idle Slurm node (sinfo: %q, %v); run e2e/ci_slurm.sh", out, err)
	}
	port := freePort(t)
	// STRAND_BIND keeps every socket on loopback: the node's name may
	// resolve to loopback, and then workers would advertise the first
	// interface address instead (right on a real cluster, not wanted here).
	j := start(t, []string{"STRAND_TOKEN=slurm-e2e", "STRAND_COORDINATOR_PORT=" + strconv.Itoa(port), "STRAND_BIND=127.0.0.1"},
		srun, "-n", "4", "--overcommit", "--label", "--kill-on-bad-exit=1", "-t", "5",
		strandBin, "check", "--tp", "2")
	if code := j.wait(t, 3*time.Minute); code != 0 {
		t.Fatalf("srun exited %d:\n%s", code, j.out)
	}
	out := j.out.String()
	for r := 0; r < 4; r++ {
		if !strings.Contains(out, fmt.Sprintf("rank %d (dp=%d,tp=%d,pp=0): every group verified", r, r/2, r%2)) {
			t.Errorf("task %d did not verify its groups:\n%s", r, out)
		}
	}
	if !strings.Contains(out, `"source": "slurm"`) {
		t.Errorf("workers did not read the Slurm environment:\n%s", out)
	}
}
