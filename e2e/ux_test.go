package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
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

	if code, out := strandExit(t, 30*time.Second, "train", "--model", "tiny", "--steps", "5", "--out", run, "--resume"); code != 2 || !strings.Contains(out, "a job is running in "+run) {
		t.Errorf("a second job into the running job's --out: exit %d\n%s", code, out)
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
	// reported once to the user: the coordinator's own log lines (why it
	// tears the workers down) are not reports
	reports := 0
	for _, l := range strings.Split(tail, "\n") {
		if !strings.HasPrefix(l, "[coordinator]") && strings.Contains(l, "interrupted by the operator") {
			reports++
		}
	}
	if reports != 1 {
		t.Errorf("the interrupt is reported %d times:\n%s", reports, tail)
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

// TestJSONLogFormat: --log-format json gives one JSON object per line on
// stdout and stderr of a local --nproc 2 job: no "[rank N]" prefix, the
// ranks' lines carry "rank", and progress is JSON too.
func TestJSONLogFormat(t *testing.T) {
	run := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(strandBin, "train", "--model", "tiny", "--nproc", "2", "--steps", "6", "--threads", "1",
		"--out", run, "--log-format", "json")
	cmd.Env = cleanEnv()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\n%s%s", err, stdout.String(), stderr.String())
	}
	steps := map[float64]bool{}
	ranks := map[float64]bool{}
	for name, out := range map[string]string{"stdout": stdout.String(), "stderr": stderr.String()} {
		for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("%s line %q is not JSON: %v", name, line, err)
			}
			if r, ok := m["rank"].(float64); ok {
				ranks[r] = true
			}
			if m["progress"] == "train" {
				steps[m["step"].(float64)] = true
			}
		}
	}
	if len(steps) != 6 || !ranks[0] || !ranks[1] {
		t.Fatalf("progress steps %v, ranks %v:\n%s%s", steps, ranks, stdout.String(), stderr.String())
	}

	// the final error is a JSON line too
	bad := exec.Command(strandBin, "train", "--model", "tiny", "--nproc", "2", "--out", run+"-bad", "--data", run+"-missing", "--log-format", "json")
	bad.Env = cleanEnv()
	out, err := bad.CombinedOutput()
	var m map[string]any
	if err == nil || json.Unmarshal(out, &m) != nil || m["level"] != "error" || !strings.Contains(fmt.Sprint(m["msg"]), "-missing") {
		t.Fatalf("bad --data under --log-format json: %v\n%s", err, out)
	}
}

// TestErrorEveryRankHitsPrintedOnce: bad --data is refused before any
// worker starts, and an error every rank hits inside the job (too little
// data) is printed once, without an empty flight-recorder header.
func TestErrorEveryRankHitsPrintedOnce(t *testing.T) {
	dir := t.TempDir()
	j := start(t, nil, "strand", "train", "--model", "tiny", "--nproc", "2", "--steps", "5", "--out", filepath.Join(dir, "a"),
		"--data", filepath.Join(dir, "missing.txt"))
	if code := j.wait(t, 30*time.Second); code != 1 {
		t.Fatalf("exit %d:\n%s", code, j.out)
	}
	if out := j.out.String(); strings.Contains(out, "launching") || strings.Count(out, "missing.txt") != 1 {
		t.Errorf("bad --data: want one error before launching:\n%s", out)
	}
	tiny := filepath.Join(dir, "tiny.txt")
	if err := os.WriteFile(tiny, []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	j = start(t, nil, "strand", "train", "--model", "tiny", "--nproc", "2", "--steps", "5", "--out", filepath.Join(dir, "b"), "--data", tiny)
	if code := j.wait(t, 60*time.Second); code != 1 {
		t.Fatalf("exit %d:\n%s", code, j.out)
	}
	// the coordinator's own log ("[coordinator] ... job failed") aside,
	// the error appears once: not once per rank
	out := j.out.String()
	var ranks []string
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "[coordinator] ") {
			ranks = append(ranks, line)
		}
	}
	workers := strings.Join(ranks, "\n")
	if n := strings.Count(workers, "fewer than one global batch"); n != 1 {
		t.Errorf("the error is printed %d times:\n%s", n, out)
	}
	for _, bad := range []string{"flight recorder", "ERROR"} {
		if strings.Contains(workers, bad) {
			t.Errorf("output holds %q:\n%s", bad, out)
		}
	}
}

// TestSingleProcessInterrupt: SIGINT to a one-process run checkpoints and
// ends with exit 130 and the one line, as a launched job does.
func TestSingleProcessInterrupt(t *testing.T) {
	run := filepath.Join(t.TempDir(), "run")
	j := start(t, nil, "strand", "train", "--model", "tiny", "--steps", "20000", "--threads", "1", "--out", run, "--no-progress", "--ckpt-interval", "0")
	waitFor(t, 90*time.Second, "step 1", j, func() bool { return strings.Contains(j.out.String(), " 1/20000 ") })
	if err := j.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := j.wait(t, 60*time.Second); code != 130 {
		t.Fatalf("exit %d after SIGINT, want 130:\n%s", code, j.out.String())
	}
	out := j.out.String()
	if n := strings.Count(out, "strand train: interrupted by the operator at step "); n != 1 || !strings.Contains(out, "(continue with --resume --out "+run+")") {
		t.Fatalf("want one line naming the step, checkpoint and resume:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(run, "job.json")); !os.IsNotExist(err) {
		t.Errorf("a single process writes no job.json: %v", err)
	}
}
