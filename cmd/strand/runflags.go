package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/strand-ml/strand/launcher"
	"github.com/strand-ml/strand/progress"
	"github.com/strand-ml/strand/trainer"
)

// runFlags are the flags of the run loop that every training command
// shares (train, sft, dpo, rm train, ppo): where the run goes, how long it
// runs, and when it checkpoints. They become a trainer.RunConfig.
type runFlags struct {
	name         string // the command, e.g. "sft": the default run directory's prefix
	out          string
	steps        int
	stopAfter    int
	resume       bool
	overwrite    bool
	ckptEvery    int
	ckptInterval time.Duration
	keep         int
	asyncSave    bool
	evalEvery    int
	noProgress   bool
	restartCount int // set by the launcher on an elastic restart
}

func (r *runFlags) register(fs *flag.FlagSet, name string, steps, keep int) {
	r.name = name
	fs.StringVar(&r.out, "out", "", "run directory: metrics.jsonl, loss.png, checkpoints/ (default: a new runs/"+name+"-YYYYMMDD-HHMMSS)")
	fs.IntVar(&r.steps, "steps", steps, "optimizer steps")
	fs.IntVar(&r.stopAfter, "stop-after", 0, "stop after this step (checkpointing it), as if interrupted; the schedule still spans --steps")
	fs.BoolVar(&r.resume, "resume", false, "continue the run in --out from its newest usable checkpoint (weights, optimizer, schedule, step, data position), in any layout")
	fs.BoolVar(&r.overwrite, "overwrite", false, "start a new run in a --out that holds another run, removing its checkpoints and metrics")
	fs.IntVar(&r.ckptEvery, "ckpt-every", 0, "checkpoint every N steps (0: by --ckpt-interval), and always after the last step")
	fs.DurationVar(&r.ckptInterval, "ckpt-interval", 30*time.Minute, "also checkpoint when this much time passed since the last checkpoint (0: never by time)")
	fs.IntVar(&r.keep, "keep", keep, "checkpoints to keep (0 keeps all)")
	fs.BoolVar(&r.noProgress, "no-progress", false, "print plain progress lines instead of redrawing one")
	fs.IntVar(&r.restartCount, "restart-count", 0, "set by the launcher on an elastic restart (recorded in metrics)")
}

// check validates the flags that need no model.
func (r *runFlags) check() error {
	switch {
	case r.steps <= 0:
		return usageError{fmt.Sprintf("--steps %d must be positive", r.steps)}
	case r.stopAfter < 0 || r.ckptEvery < 0 || r.keep < 0 || r.ckptInterval < 0 || r.evalEvery < 0:
		return usageError{fmt.Sprintf("--stop-after %d, --ckpt-every %d, --ckpt-interval %v, --keep %d and --eval-every %d must not be negative",
			r.stopAfter, r.ckptEvery, r.ckptInterval, r.keep, r.evalEvery)}
	case r.stopAfter > r.steps:
		return usageError{fmt.Sprintf("--stop-after %d is beyond --steps %d: the run would end at step %d anyway", r.stopAfter, r.steps, r.steps)}
	case r.resume && r.overwrite:
		return usageError{"--resume continues the run in --out and --overwrite replaces it: give one"}
	}
	return nil
}

// prepareOut settles the run directory before any worker starts: a new
// run without --out gets a fresh runs/NAME-YYYYMMDD-HHMMSS, which is
// appended to the workers' arguments; --resume needs an explicit --out;
// an --out holding another run is refused unless --overwrite. Multi-node
// jobs and ranks started by another launcher must name --out (every rank
// has to write the same directory). It returns args for the workers.
func (r *runFlags) prepareOut(lf *launcher.Flags, args []string, stderr io.Writer) ([]string, error) {
	if r.out == "" {
		switch {
		case r.resume:
			return nil, usageError{"--resume needs --out RUN: the run directory to continue"}
		case lf != nil && lf.MultiNode():
			return nil, usageError{"a multi-node job needs --out: a run directory every node writes (shared storage)"}
		}
		r.out = filepath.Join("runs", r.name+"-"+time.Now().Format("20060102-150405"))
		fmt.Fprintf(stderr, "run directory %s\n", r.out)
		args = append(append([]string(nil), args...), "--out", r.out)
	}
	if lf == nil || !lf.MultiNode() { // other nodes see node 0's record
		if rec, err := readJobFile(r.out); err == nil {
			return nil, usageError{fmt.Sprintf("a job is running in %s (launcher pid %d on %s, coordinator %s): wait for it, stop it, or choose another --out",
				r.out, rec.PID, rec.Host, rec.Coordinator)}
		}
	}
	if lf != nil && lf.MultiNode() && lf.NodeRank != 0 {
		// node 0 checks (its rank 0 writes the run directory): on shared
		// storage another node may see node 0's job starting in it
		return args, nil
	}
	if err := trainer.CheckRunDir(r.out, r.resume, r.overwrite); err != nil {
		return nil, usageError{err.Error()}
	}
	return args, nil
}

// workerOut checks --out inside a job: the launcher always passes it; a
// foreign launcher (srun, torchrun-style variables) must too.
func (r *runFlags) workerOut() error {
	if r.out == "" {
		return usageError{"--out is required when ranks are started by srun, Kubernetes or torchrun-style variables: every rank must write the same run directory"}
	}
	return nil
}

// config is the run loop's configuration for this process.
func (r *runFlags) config(dist *distributed, logFormat string, stdout, stderr io.Writer) trainer.RunConfig {
	c := trainer.RunConfig{
		Name: r.name, Out: r.out, Steps: r.steps, StopAfter: r.stopAfter, Resume: r.resume, Overwrite: r.overwrite,
		CkptEvery: r.ckptEvery, CkptInterval: r.ckptInterval, Keep: r.keep, AsyncSave: r.asyncSave, EvalEvery: r.evalEvery,
		Stdout: stdout, Stderr: stderr,
	}
	switch {
	case logFormat == "json":
		c.Progress = progress.JSON
	case r.noProgress:
		c.Progress = progress.Plain
	}
	if r.restartCount > 0 {
		c.ResumeEvent = map[string]any{"restart": r.restartCount}
	}
	if dist != nil {
		c.Rank = dist.job.rank
		c.Interrupt = dist.interrupt
		comms := dist.comms
		c.Job = &trainer.JobHooks{Barrier: dist.job.barrier, AgreeMax: comms.MaxOverJob, Report: dist.job.report}
		c.ResumeEvent = withKey(c.ResumeEvent, "layout", comms.Mesh.String())
	}
	return c
}

func withKey(m map[string]any, k string, v any) map[string]any {
	if m == nil {
		m = map[string]any{}
	}
	m[k] = v
	return m
}

// runLoop runs s under the run loop in this process; a single process
// (dist nil) is interrupted by ctx, a worker by its job's interrupt.
func runLoop(ctx context.Context, s trainer.Stepper, c trainer.RunConfig, dist *distributed) (trainer.Summary, error) {
	if dist == nil {
		// The operator's Ctrl-C cancels ctx: let the loop checkpoint on a
		// context the signal does not cancel.
		c.Interrupt = ctx.Done()
		ctx = context.WithoutCancel(ctx)
	}
	return trainer.Run(ctx, s, c)
}
