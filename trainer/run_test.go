package trainer

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/metrics"
	"github.com/strand-ml/strand/progress"
)

// newSteps is a one-process trainer on the test tokens, as a Stepper.
func newSteps(t *testing.T, steps int) *Steps {
	t.Helper()
	opts := testOptions()
	opts.Steps, opts.Micro = steps, 1
	loader, err := data.NewLoader(testTokens(), data.LoaderConfig{Batch: opts.Batch, Seq: opts.Seq, DPSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(opts, loader, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return &Steps{T: tr, Seed: opts.Seed}
}

func runConfig(out string, steps int) RunConfig {
	return RunConfig{Name: "test", Out: out, Steps: steps, Progress: progress.Plain}
}

func losses(t *testing.T, out string) map[int]float64 {
	t.Helper()
	recs, err := metrics.ReadJSONL(filepath.Join(out, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	l := map[int]float64{}
	for _, r := range recs {
		if s, ok := r["step"].(float64); ok && r["loss"] != nil {
			l[int(s)] = r["loss"].(float64)
		}
	}
	return l
}

func stepDirs(t *testing.T, out string) []int {
	t.Helper()
	ds, err := checkpoint.Steps(out)
	if err != nil {
		t.Fatal(err)
	}
	var n []int
	for _, d := range ds {
		n = append(n, d.Step)
	}
	return n
}

// TestRunStopAfterThenResumeIsExact: a run stopped after step 3 and
// resumed to step 6 logs the losses of a straight 6-step run, checkpoints
// at its cadence and after the last step, and says where it stopped.
func TestRunStopAfterThenResumeIsExact(t *testing.T) {
	dir := t.TempDir()
	straight := filepath.Join(dir, "straight")
	if _, err := Run(context.Background(), newSteps(t, 6), runConfig(straight, 6)); err != nil {
		t.Fatal(err)
	}
	want := losses(t, straight)

	resumed := filepath.Join(dir, "resumed")
	c := runConfig(resumed, 6)
	c.StopAfter, c.CkptEvery, c.Keep = 3, 2, 0
	var out bytes.Buffer
	c.Stdout = &out
	sum, err := Run(context.Background(), newSteps(t, 6), c)
	if err != nil {
		t.Fatal(err)
	}
	if sum.LastStep != 3 || !strings.Contains(out.String(), "stopped by --stop-after 3") {
		t.Fatalf("summary %+v, output %q", sum, out.String())
	}
	if got := stepDirs(t, resumed); len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Fatalf("checkpoints at steps %v, want [2 3] (every 2, and the last)", got)
	}
	c = runConfig(resumed, 6)
	c.Resume = true
	if _, err := Run(context.Background(), newSteps(t, 6), c); err != nil {
		t.Fatal(err)
	}
	got := losses(t, resumed)
	for s := 1; s <= 6; s++ {
		if got[s] != want[s] {
			t.Errorf("step %d: loss %v after resume, %v straight", s, got[s], want[s])
		}
	}
}

// TestRunRefusesAnotherRunsDirectory: a new run never writes into a
// directory holding another run unless Overwrite, which removes the old
// checkpoints.
func TestRunRefusesAnotherRunsDirectory(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	if _, err := Run(context.Background(), newSteps(t, 4), runConfig(out, 4)); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
	_, err := Run(context.Background(), newSteps(t, 2), runConfig(out, 2))
	if err == nil || !strings.Contains(err.Error(), "is not empty") || !strings.Contains(err.Error(), "--overwrite") {
		t.Fatalf("second run into the same directory: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
	if !bytes.Equal(before, after) {
		t.Fatal("the refused run changed metrics.jsonl")
	}
	c := runConfig(out, 2)
	c.Overwrite = true
	if _, err := Run(context.Background(), newSteps(t, 2), c); err != nil {
		t.Fatal(err)
	}
	if got := stepDirs(t, out); len(got) != 1 || got[0] != 2 {
		t.Fatalf("after --overwrite the run holds checkpoints %v, want only [2]", got)
	}
}

// TestResumeRefusesWhenNoCheckpointIsUsable: --resume with checkpoints
// that are all damaged or uncommitted fails, names each, and changes
// nothing; with no checkpoints at all it starts at step 0; an unusable
// checkpoint newer than a good one is moved aside, never written over.
func TestResumeRefusesWhenNoCheckpointIsUsable(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	c := runConfig(out, 4)
	c.CkptEvery, c.Keep = 2, 0
	if _, err := Run(context.Background(), newSteps(t, 4), c); err != nil {
		t.Fatal(err)
	}
	ck := filepath.Join(out, "checkpoints")
	if err := os.Remove(filepath.Join(ck, "step_000002", checkpoint.CommitFile)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ck, "step_000004", checkpoint.ModelFile), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	c = runConfig(out, 6)
	c.Resume = true
	_, err := Run(context.Background(), newSteps(t, 6), c)
	if err == nil || !strings.Contains(err.Error(), "none of the 2 checkpoints") ||
		!strings.Contains(err.Error(), "step_000002: not committed") || !strings.Contains(err.Error(), "step_000004:") {
		t.Fatalf("resume from damaged checkpoints: %v", err)
	}
	if got := stepDirs(t, out); len(got) != 2 {
		t.Fatalf("the refused resume changed the checkpoints: %v", got)
	}

	// Start over with a good checkpoint at 2 and a damaged one at 4.
	out2 := filepath.Join(t.TempDir(), "run2")
	c = runConfig(out2, 4)
	c.CkptEvery, c.Keep = 2, 0
	if _, err := Run(context.Background(), newSteps(t, 4), c); err != nil {
		t.Fatal(err)
	}
	damaged := filepath.Join(out2, "checkpoints", "step_000004", checkpoint.ModelFile)
	if err := os.WriteFile(damaged, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	c = runConfig(out2, 4)
	c.Resume, c.Keep = true, 0
	if _, err := Run(context.Background(), newSteps(t, 4), c); err != nil {
		t.Fatal(err)
	}
	aside, _ := filepath.Glob(filepath.Join(out2, "checkpoints", "rejected-step_000004-*", checkpoint.ModelFile))
	if len(aside) != 1 {
		t.Fatalf("the damaged step_000004 was not kept aside: %v", aside)
	}
	if raw, _ := os.ReadFile(aside[0]); string(raw) != "garbage" {
		t.Fatal("the damaged checkpoint kept aside was changed")
	}
	if err := checkpoint.Verify(filepath.Join(out2, "checkpoints", "step_000004")); err != nil {
		t.Fatalf("the redone step 4 is not a good checkpoint: %v", err)
	}

	fresh := filepath.Join(t.TempDir(), "fresh")
	c = runConfig(fresh, 2)
	c.Resume = true
	if sum, err := Run(context.Background(), newSteps(t, 2), c); err != nil || sum.Steps != 2 {
		t.Fatalf("--resume of an empty directory: %+v, %v", sum, err)
	}
}

// TestRunInterruptCheckpointsAndSaysWhere: an operator's interrupt stops
// the run at the next step boundary with a checkpoint of the last step.
func TestRunInterruptCheckpointsAndSaysWhere(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	intr := make(chan struct{})
	s := newSteps(t, 10)
	c := runConfig(out, 10)
	c.Interrupt = intr
	c.Hooks.Eval = func(_ context.Context, step int) (map[string]any, error) {
		if step == 3 {
			close(intr)
		}
		return nil, nil
	}
	c.EvalEvery = 1
	_, err := Run(context.Background(), s, c)
	var ie *Interrupted
	if !errors.As(err, &ie) || ie.Step != 3 || ie.ExitCode() != 130 {
		t.Fatalf("interrupted run returned %v", err)
	}
	if !strings.Contains(err.Error(), "--resume") || filepath.Base(ie.Checkpoint) != "step_000003" {
		t.Fatalf("message %q, checkpoint %q", err, ie.Checkpoint)
	}
	if err := checkpoint.Verify(ie.Checkpoint); err != nil {
		t.Fatal(err)
	}
}

// TestRunChecksTheDirectoryBeforeTraining: a run directory that cannot be
// created or written fails before the first step.
func TestRunChecksTheDirectoryBeforeTraining(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, []byte("x"), 0o644)
	s := newSteps(t, 2)
	_, err := Run(context.Background(), s, runConfig(filepath.Join(file, "run"), 2))
	if err == nil || s.Done() != 0 {
		t.Fatalf("run under a file: %v after %d steps", err, s.Done())
	}
}

// TestRunSavesByTime: with CkptInterval a checkpoint is written once that
// much time has passed since the last one (the lead rank's clock, agreed
// by every rank), besides the one after the last step.
func TestRunSavesByTime(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	c := runConfig(out, 3)
	c.CkptInterval, c.Keep = time.Nanosecond, 0
	if _, err := Run(context.Background(), newSteps(t, 3), c); err != nil {
		t.Fatal(err)
	}
	// due at every step boundary: a checkpoint after every step
	if got := stepDirs(t, out); len(got) != 3 || got[0] != 1 || got[2] != 3 {
		t.Fatalf("checkpoints at steps %v, want [1 2 3]", got)
	}
	out2 := filepath.Join(t.TempDir(), "run")
	c = runConfig(out2, 3)
	c.CkptInterval, c.Keep = time.Hour, 0
	if _, err := Run(context.Background(), newSteps(t, 3), c); err != nil {
		t.Fatal(err)
	}
	if got := stepDirs(t, out2); len(got) != 1 || got[0] != 3 {
		t.Fatalf("with an hour's interval, checkpoints at steps %v, want only the last", got)
	}
}

// TestCheckRunDirIgnoresTheStartingJob: the launcher's job.json (and the
// temporary file it is written through) do not make a run directory
// another run's: on shared storage a node may look while node 0 writes it.
func TestCheckRunDirIgnoresTheStartingJob(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{JobFile, "." + JobFile + ".tmp-123"} {
		os.WriteFile(filepath.Join(dir, f), []byte("{}"), 0o600)
	}
	if err := CheckRunDir(dir, false, false); err != nil {
		t.Fatalf("a directory holding only the starting job's file: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "metrics.jsonl"), nil, 0o644)
	if err := CheckRunDir(dir, false, false); err == nil {
		t.Fatal("a directory holding metrics.jsonl was accepted")
	}
}
