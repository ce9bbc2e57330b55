package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/strand-ml/strand/atomicfile"
	"github.com/strand-ml/strand/trainer"
)

// jobRecord is RUN/job.json: how to reach the coordinator of the job
// running in a run directory. It holds the job's token, so it is written
// 0600; the launching process writes it when the coordinator is up and
// removes it when the job ends.
type jobRecord struct {
	Coordinator string    `json:"coordinator"` // HOST:PORT
	Token       string    `json:"token"`
	Host        string    `json:"host"`  // the launching process's machine
	PID         int       `json:"pid"`   // the launching process
	Epoch       int64     `json:"epoch"` // elastic restarts so far
	Started     time.Time `json:"started"`
}

func jobFilePath(run string) string { return filepath.Join(run, trainer.JobFile) }

// writeJobFile records the job's coordinator in run (created if needed).
func writeJobFile(run string, r jobRecord) error {
	if err := os.MkdirAll(run, 0o755); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WritePrivate(jobFilePath(run), append(raw, '\n'))
}

// readJobFile reads run's job.json.
func readJobFile(run string) (jobRecord, error) {
	var r jobRecord
	raw, err := os.ReadFile(jobFilePath(run))
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(run); serr != nil {
			return r, fmt.Errorf("run directory %s: %w", run, serr)
		}
		return r, fmt.Errorf("no job is running in %s (no %s: the job ended, or it was started by another launcher: use --coordinator)", run, trainer.JobFile)
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, fmt.Errorf("%s: %w", jobFilePath(run), err)
	}
	if r.Coordinator == "" {
		return r, fmt.Errorf("%s names no coordinator", jobFilePath(run))
	}
	if host, _ := os.Hostname(); r.Host == host && r.PID > 0 && syscall.Kill(r.PID, 0) == syscall.ESRCH {
		return r, fmt.Errorf("no job is running in %s: its %s is left from launcher pid %d, which is gone (killed before it could remove it)", run, trainer.JobFile, r.PID)
	}
	return r, nil
}

// jobFileHook returns the launcher's Started callback that records the
// job in run, and a function removing the record (at the job's end).
func jobFileHook(run string, epoch func() int64, warn func(error)) (started func(addr, token string), remove func()) {
	if run == "" {
		return nil, func() {}
	}
	started = func(addr, token string) {
		host, _ := os.Hostname()
		r := jobRecord{Coordinator: addr, Token: token, Host: host, PID: os.Getpid(), Epoch: epoch(), Started: time.Now().UTC()}
		if err := writeJobFile(run, r); err != nil {
			warn(fmt.Errorf("recording the job for strand status: %w", err))
		}
	}
	remove = func() {
		if err := os.Remove(jobFilePath(run)); err != nil && !errors.Is(err, os.ErrNotExist) {
			warn(err)
		}
	}
	return started, remove
}
