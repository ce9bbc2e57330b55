package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitFor polls cond every 100 ms for up to d.
func waitFor(t *testing.T, d time.Duration, what string, j *job, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v; output:\n%s", what, d, j.out.String())
		}
		select {
		case <-j.done:
			if !cond() {
				t.Fatalf("%s: the job ended first; output:\n%s", what, j.out.String())
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestLocalJobStatusAndInterrupt: a local --nproc 2 job records its
// coordinator in RUN/job.json (0600), `strand status RUN` reaches it, and
// SIGINT to the launcher ends it with exit 130 and one line naming the
// step, the checkpoint and how to resume (no internal errors, no rank
// blamed); job.json is gone afterwards.
func TestLocalJobStatusAndInterrupt(t *testing.T) {
	run := filepath.Join(t.TempDir(), "run")
	j := start(t, nil, "strand", "train", "--model", "tiny", "--nproc", "2", "--steps", "20000", "--threads", "1",
		"--out", run, "--no-progress", "--ckpt-interval", "0")
	jobFile := filepath.Join(run, "job.json")
	waitFor(t, 90*time.Second, "job.json and step 1", j, func() bool {
		_, err := os.Stat(jobFile)
		return err == nil && strings.Contains(j.out.String(), " 1/20000 ")
	})
	fi, err := os.Stat(jobFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("job.json: %v %v, want mode 0600", fi.Mode(), err)
	}
	var rec struct{ Coordinator, Token string }
	raw, _ := os.ReadFile(jobFile)
	if err := json.Unmarshal(raw, &rec); err != nil || rec.Coordinator == "" || rec.Token == "" {
		t.Fatalf("job.json %s: %v", raw, err)
	}
	st := runStrand(t, 30*time.Second, "status", run)
	if !strings.Contains(st, "state running") || !strings.Contains(st, "ranks 2/2 joined") {
		t.Fatalf("strand status %s:\n%s", run, st)
	}

	before := len(j.out.String())
	if err := j.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := j.wait(t, 60*time.Second); code != 130 {
		t.Fatalf("exit %d after SIGINT, want 130; output:\n%s", code, j.out.String())
	}
	tail := j.out.String()[before:]
	for _, bad := range []string{"ERROR", "context canceled", "leave barrier", "failed", "flight recorder"} {
		if strings.Contains(tail, bad) {
			t.Errorf("after SIGINT the output holds %q:\n%s", bad, tail)
		}
	}
	line := regexp.MustCompile(`(?m)^strand train: interrupted by the operator at step (\d+); checkpoint (\S+) \(continue with --resume --out (\S+)\)$`)
	m := line.FindAllStringSubmatch(tail, -1)
	if len(m) != 1 {
		t.Fatalf("want one line naming the step, checkpoint and resume; after SIGINT:\n%s", tail)
	}
	if c := strings.Count(tail, "interrupted by the operator"); c != 1 {
		t.Errorf("the interrupt is reported %d times:\n%s", c, tail)
	}
	if !strings.HasSuffix(m[0][2], "step_"+strings.Repeat("0", 6-len(m[0][1]))+m[0][1]) || m[0][3] != run {
		t.Errorf("line %q: checkpoint and --out do not match step %s and %s", m[0][0], m[0][1], run)
	}
	if _, err := os.Stat(m[0][2]); err != nil {
		t.Errorf("the named checkpoint: %v", err)
	}
	if _, err := os.Stat(jobFile); !os.IsNotExist(err) {
		t.Errorf("job.json outlived the job: %v", err)
	}
	after := start(t, nil, "strand", "status", run)
	if code := after.wait(t, 30*time.Second); code != 1 || !strings.Contains(after.out.String(), "no job is running in "+run) {
		t.Errorf("strand status after the job: exit %d\n%s", code, after.out.String())
	}
}
