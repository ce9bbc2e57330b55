package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestJobFileRoundTripAndStaleness(t *testing.T) {
	run := t.TempDir() + "/run"
	if _, err := readJobFile(run); err == nil || !strings.Contains(err.Error(), "run directory") {
		t.Fatalf("no run directory: %v", err)
	}
	var warned error
	started, remove := jobFileHook(run, func() int64 { return 2 }, func(err error) { warned = err })
	started("127.0.0.1:4242", "s3cret")
	if warned != nil {
		t.Fatal(warned)
	}
	fi, err := os.Stat(jobFilePath(run))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("job.json: %v %v, want 0600", fi.Mode(), err)
	}
	r, err := readJobFile(run)
	if err != nil || r.Coordinator != "127.0.0.1:4242" || r.Token != "s3cret" || r.Epoch != 2 || r.PID != os.Getpid() {
		t.Fatalf("read back %+v, %v", r, err)
	}
	// a launcher killed before removing it: the pid is gone
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skip(err)
	}
	r.PID = dead.Process.Pid
	if err := writeJobFile(run, r); err != nil {
		t.Fatal(err)
	}
	if _, err := readJobFile(run); err == nil || !strings.Contains(err.Error(), "which is gone") {
		t.Fatalf("stale job.json: %v", err)
	}
	remove()
	if _, err := readJobFile(run); err == nil || !strings.Contains(err.Error(), "no job is running") {
		t.Fatalf("after remove: %v", err)
	}
}
