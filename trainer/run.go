package trainer

import (
	"context"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"time"

	"github.com/strand-ml/strand/memplan"
	"github.com/strand-ml/strand/metrics"
	"github.com/strand-ml/strand/plot"
	"github.com/strand-ml/strand/progress"
)

// This file is the one run loop: everything around an optimizer step that
// every objective shares (pre-training, SFT, DPO, reward model, PPO). An
// objective plugs in as a Stepper; the loop owns the run directory, the
// metrics file, progress, evaluation and checkpoint cadence, --resume,
// --stop-after, the operator's interrupt and the end-of-run summary.

// Stepper is one objective's optimizer step as the run loop drives it.
// Every rank of a job calls each method together.
type Stepper interface {
	// Step takes the next optimizer step. The record's statistics are the
	// job's (reduced over ranks) on the lead rank; other ranks may return
	// partial ones.
	Step(ctx context.Context) (Record, error)
	// Done is the number of optimizer steps taken, restored ones included.
	Done() int
	// Save writes a checkpoint of the state after the last step into the
	// run directory's checkpoints/, keeping the newest keep (0: all).
	Save(ctx context.Context, run string, keep int) (string, error)
	// Restore loads the checkpoint in dir (any layout).
	Restore(ctx context.Context, dir string) error
}

// AsyncSaver is a Stepper that can snapshot its state and write the
// checkpoint while training continues (--async-save).
type AsyncSaver interface {
	SaveAsync(ctx context.Context, run string, keep int) (wait func() (string, error))
}

// Record is one step's line of metrics.jsonl.
type Record struct {
	Stats StepStats // Step is required; zero fields an objective lacks are left out
	// NoLoss says the objective has no single loss (PPO): Stats.Loss is
	// not recorded or shown.
	NoLoss bool
	// Fields are the objective's own statistics (a DPO margin, a PPO
	// reward), written to metrics.jsonl and shown in the progress line.
	Fields []progress.Field
}

// RunConfig configures Run. Zero values take the documented defaults.
type RunConfig struct {
	Name string // what runs, e.g. "train" or "sft": the progress label and the plot's title
	Out  string // run directory: metrics.jsonl, loss.png, checkpoints/

	Steps     int  // the schedule's total steps
	StopAfter int  // stop after this step (checkpointing it), as if interrupted; 0: Steps
	Resume    bool // continue from the newest usable checkpoint in Out
	Overwrite bool // a new run may replace what a finished or failed run left in Out

	CkptEvery    int           // checkpoint every N steps (0: by CkptInterval only)
	CkptInterval time.Duration // also checkpoint when this much time passed since the last one (0: never by time)
	Keep         int           // checkpoints to keep (0: all)
	AsyncSave    bool          // write checkpoints in the background (the Stepper must be an AsyncSaver)

	EvalEvery int // Hooks.Eval every N steps (0: at the last step only)

	// Rank is this process's rank in the job (0 leads: it writes the run
	// directory's files and prints).
	Rank int
	// Job is the job-wide plumbing; nil for a single process.
	Job *JobHooks

	Stdout   io.Writer     // progress and summary (lead rank)
	Stderr   io.Writer     // notes (lead rank)
	Progress progress.Mode // Auto (default), Plain or JSON
	// PeakFLOPS is the job's peak for MFU (0: no MFU).
	PeakFLOPS float64
	// Interrupt is closed when the operator asks the job to stop
	// (Ctrl-C, SIGTERM): the loop checkpoints at the next step boundary
	// every rank agrees on and returns an *Interrupted error.
	Interrupt <-chan struct{}
	// ResumeEvent are extra keys of the metrics' resume record (e.g. the
	// elastic restart count).
	ResumeEvent map[string]any

	Hooks Hooks
}

// JobHooks connect the loop to the job around this process.
type JobHooks struct {
	// Barrier synchronizes every rank (checkpoint directory set-up).
	Barrier Barrier
	// AgreeMax replaces each value of buf by its maximum over every rank
	// of the job: the loop agrees on stopping and on time-based
	// checkpoints with it (see Comms.MaxOverJob).
	AgreeMax func(ctx context.Context, buf []float32) error
	// Report sends a step's headline numbers to the coordinator
	// (strand status, the step watchdog).
	Report func(step int, m map[string]float64)
}

// Hooks let an objective add what only it knows. Each runs on every rank
// together (so it may use collectives); results matter on the lead rank.
type Hooks struct {
	// Eval returns evaluation fields (e.g. "val_loss") merged into the
	// record of step; called every EvalEvery steps and after the last.
	Eval func(ctx context.Context, step int) (map[string]any, error)
	// Finish runs after the last step's checkpoint (sum.Checkpoint):
	// held-out metrics (written as one more record when non-empty) and
	// lines for the summary.
	Finish func(ctx context.Context, sum Summary) (rec map[string]any, summary []string, err error)
	// Saved runs on the lead rank after each committed checkpoint
	// (e.g. writing adapter_config.json beside a LoRA run's checkpoints).
	Saved func(dir string) error
}

// Summary is what a finished Run reports.
type Summary struct {
	Steps      int     // steps taken in this run (resumed steps excluded)
	LastStep   int     // the last step done
	Tokens     int64   // tokens trained on in this run
	FinalLoss  float64 // NaN when the objective has no loss
	Checkpoint string  // the last checkpoint written ("" if none)
	Elapsed    time.Duration
	// Memory is the largest rank's memory by category (each category's
	// maximum over the job's ranks), when the Stepper is a
	// MemoryReporter; PeakRSS the largest peak resident set of any rank.
	Memory  memplan.Breakdown
	PeakRSS int64
}

// Interrupted is Run's error when the operator stopped the job: the step
// it stopped after and the checkpoint that holds it.
type Interrupted struct {
	Step       int
	Checkpoint string
	Out        string
}

func (e *Interrupted) Error() string {
	if e.Checkpoint == "" {
		return fmt.Sprintf("interrupted by the operator at step %d (no checkpoint written)", e.Step)
	}
	return fmt.Sprintf("interrupted by the operator at step %d; checkpoint %s (continue with --resume --out %s)", e.Step, e.Checkpoint, e.Out)
}

// ExitCode is the shell's code for a Ctrl-C (128 + SIGINT).
func (e *Interrupted) ExitCode() int { return 130 }

// Run drives s until its last step (StopAfter or Steps), writing the run
// directory on the lead rank. Every rank of the job calls it.
func Run(ctx context.Context, s Stepper, c RunConfig) (Summary, error) {
	l, err := newLoop(ctx, s, c)
	if err != nil {
		return Summary{}, err
	}
	defer l.close()
	return l.run(ctx)
}

// loop is one Run's state.
type loop struct {
	s       Stepper
	c       RunConfig
	lead    bool
	stop    int
	start   time.Time
	first   int // Done() when the run started (after a resume)
	mw      *metrics.JSONL
	bar     *progress.Bar
	records []map[string]any // the curve so far, for loss.png (lead)
	tokens  int64
	pending func() (string, error) // a background checkpoint write
	ckpt    string                 // the newest checkpoint written
	saved   time.Time              // when the newest checkpoint was started
	flags   [2]float32             // agreement buffer: interrupt, time-based save due
}

func newLoop(ctx context.Context, s Stepper, c RunConfig) (*loop, error) {
	if c.Stdout == nil {
		c.Stdout = io.Discard
	}
	if c.Stderr == nil {
		c.Stderr = io.Discard
	}
	if c.Job == nil {
		c.Job = &JobHooks{}
	}
	if c.AsyncSave {
		if _, ok := s.(AsyncSaver); !ok {
			return nil, fmt.Errorf("%s: --async-save is not supported by this objective", c.Name)
		}
	}
	l := &loop{s: s, c: c, lead: c.Rank == 0, stop: c.Steps, start: time.Now()}
	if c.StopAfter > 0 {
		l.stop = min(l.stop, c.StopAfter)
	}
	if err := l.prepareDir(ctx); err != nil {
		return nil, err
	}
	if err := l.resume(ctx); err != nil {
		return nil, err
	}
	l.first, l.saved = s.Done(), time.Now()
	if !l.lead {
		return l, nil
	}
	mode := c.Progress
	l.bar = progress.New(c.Stdout, c.Steps, progress.Options{Desc: c.Name, Mode: mode, Start: l.first})
	return l, nil
}

// notef prints a note on the lead rank.
func (l *loop) notef(format string, a ...any) {
	if l.lead {
		fmt.Fprintf(l.c.Stderr, format, a...)
	}
}

func (l *loop) close() {
	if l.pending != nil {
		_, _ = l.pending()
	}
	if l.mw != nil {
		l.mw.Close()
	}
}

// barrier waits for every rank (no-op for one process).
func (l *loop) barrier(ctx context.Context) error {
	if l.c.Job.Barrier == nil {
		return nil
	}
	return l.c.Job.Barrier(ctx)
}

func (l *loop) run(ctx context.Context) (Summary, error) {
	sum := Summary{FinalLoss: math.NaN()}
	for l.s.Done() < l.stop {
		stopNow, saveNow, err := l.agree(ctx)
		if err != nil {
			return sum, l.fail(err)
		}
		if stopNow {
			return sum, l.interrupted(ctx)
		}
		rec, err := l.s.Step(ctx)
		if err != nil {
			return sum, l.fail(err)
		}
		step := rec.Stats.Step
		l.tokens += int64(rec.Stats.Tokens)
		if !rec.NoLoss {
			sum.FinalLoss = rec.Stats.Loss
		}
		if err := l.record(ctx, rec); err != nil {
			return sum, l.fail(err)
		}
		if last := step == l.stop; last || saveNow || (l.c.CkptEvery > 0 && step%l.c.CkptEvery == 0) {
			if err := l.save(ctx, last && !l.c.AsyncSave); err != nil {
				return sum, l.fail(err)
			}
		}
	}
	if err := l.waitSave(); err != nil {
		return sum, l.fail(err)
	}
	if l.bar != nil {
		l.bar.Finish()
	}
	sum.Steps, sum.LastStep, sum.Tokens = l.s.Done()-l.first, l.s.Done(), l.tokens
	sum.Checkpoint, sum.Elapsed = l.ckpt, time.Since(l.start)
	err := l.finish(ctx, &sum) // fills in the memory
	return sum, err
}

// fail ends the progress line before an error is printed.
func (l *loop) fail(err error) error {
	if l.bar != nil {
		l.bar.Finish()
	}
	return err
}

// agree decides, identically on every rank, whether to stop now (the
// operator interrupted some rank) and whether a time-based checkpoint is
// due after this step (by the lead rank's clock).
func (l *loop) agree(ctx context.Context) (stop, save bool, err error) {
	l.flags = [2]float32{}
	select {
	case <-l.c.Interrupt:
		l.flags[0] = 1
	default:
	}
	if l.lead && l.c.CkptInterval > 0 && time.Since(l.saved) >= l.c.CkptInterval {
		l.flags[1] = 1
	}
	if l.c.Job.AgreeMax != nil {
		if err := l.c.Job.AgreeMax(ctx, l.flags[:]); err != nil {
			return false, false, fmt.Errorf("step %d: agreeing on the run's control flags: %w", l.s.Done()+1, err)
		}
	}
	return l.flags[0] != 0, l.flags[1] != 0, nil
}

// interrupted checkpoints the last step taken (unless it just was) and
// returns the *Interrupted error.
func (l *loop) interrupted(ctx context.Context) error {
	if err := l.waitSave(); err != nil {
		return l.fail(err)
	}
	step := l.s.Done()
	if step > l.first && (l.ckpt == "" || checkpointStep(l.ckpt) != step) {
		l.notef("interrupted: writing a checkpoint of step %d\n", step)
		if err := l.save(ctx, true); err != nil {
			return l.fail(fmt.Errorf("interrupted at step %d; the checkpoint failed: %w", step, err))
		}
	}
	l.fail(nil)
	return &Interrupted{Step: step, Checkpoint: l.ckpt, Out: l.c.Out}
}

// record writes the step's metrics line, runs the evaluation when due,
// updates the progress line and reports to the coordinator.
func (l *loop) record(ctx context.Context, rec Record) error {
	st := rec.Stats
	line := map[string]any{"step": st.Step}
	if !rec.NoLoss {
		line["loss"] = st.Loss
	}
	elapsed := time.Since(l.start).Seconds()
	for k, v := range map[string]float64{"lr": st.LR, "grad_norm": st.GradNorm, "step_seconds": st.Seconds, "tokens_per_s": st.TokensPS, "loss_scale": st.LossScale} {
		if v != 0 {
			line[k] = v
		}
	}
	var mfu float64
	if l.c.PeakFLOPS > 0 && st.FLOPsPS > 0 {
		mfu = st.FLOPsPS / l.c.PeakFLOPS
		line["mfu"] = mfu
	}
	if st.Tokens > 0 {
		line["tokens"] = st.Step * st.Tokens
		line["elapsed_s"] = elapsed
	}
	if st.Skipped {
		line["skipped"] = true
	}
	for _, f := range rec.Fields {
		line[f.Name] = f.Value
	}
	if st.Step == l.first+2 || st.Step == l.first+1 && st.Step >= l.stop {
		// the second step of the run (or its only one): the first touched
		// the buffers, and only from the second on are the optimizer's
		// moments resident while backward runs (ZeRO-3's peak). Record the
		// memory once; every rank takes part in the maximum.
		if err := l.memory(ctx, line, nil); err != nil {
			return err
		}
	}
	if h := l.c.Hooks.Eval; h != nil && (st.Step == l.stop || l.c.EvalEvery > 0 && st.Step%l.c.EvalEvery == 0) {
		ev, err := h(ctx, st.Step)
		if err != nil {
			return fmt.Errorf("evaluation after step %d: %w", st.Step, err)
		}
		for k, v := range ev {
			line[k] = v
		}
	}
	if r := l.c.Job.Report; r != nil {
		m := map[string]float64{"step_seconds": st.Seconds}
		if !rec.NoLoss {
			m["loss"] = st.Loss
		}
		if st.TokensPS > 0 {
			m["tokens_per_s"] = st.TokensPS
		}
		for _, f := range rec.Fields {
			m[f.Name] = f.Value
		}
		r(st.Step, m)
	}
	if !l.lead {
		return nil
	}
	if err := l.mw.Write(line); err != nil {
		return err
	}
	l.records = append(l.records, line)
	ps := progress.Stats{TokensPerSec: st.TokensPS, MFU: mfu, LR: st.LR, GradNorm: st.GradNorm, Extra: rec.Fields}
	if !rec.NoLoss {
		ps.Loss = st.Loss
	}
	l.bar.Update(st.Step, ps)
	if v, ok := line["val_loss"].(float64); ok {
		l.bar.Println(fmt.Sprintf("step %d: validation loss %.4f", st.Step, v))
	}
	return nil
}

// save writes a checkpoint of the last step: in the background under
// AsyncSave unless wait says the caller needs it committed now.
func (l *loop) save(ctx context.Context, wait bool) error {
	if err := l.waitSave(); err != nil {
		return err
	}
	l.saved = time.Now()
	if a, ok := l.s.(AsyncSaver); ok && l.c.AsyncSave && !wait {
		l.pending = a.SaveAsync(ctx, l.c.Out, l.c.Keep)
		return nil
	}
	dir, err := l.s.Save(ctx, l.c.Out, l.c.Keep)
	if err != nil {
		return err
	}
	return l.committed(dir)
}

// waitSave waits for a background checkpoint write, if any.
func (l *loop) waitSave() error {
	if l.pending == nil {
		return nil
	}
	dir, err := l.pending()
	l.pending = nil
	if err != nil {
		return err
	}
	return l.committed(dir)
}

func (l *loop) committed(dir string) error {
	if dir != "" {
		l.ckpt = dir
	}
	if l.lead && l.c.Hooks.Saved != nil && dir != "" {
		return l.c.Hooks.Saved(dir)
	}
	return nil
}

// finish runs the Finish hook, draws loss.png and prints the summary.
func (l *loop) finish(ctx context.Context, sum *Summary) error {
	var lines []string
	if h := l.c.Hooks.Finish; h != nil {
		rec, more, err := h(ctx, *sum)
		if err != nil {
			return err
		}
		if l.lead && len(rec) > 0 {
			rec["step"] = sum.LastStep
			if err := l.mw.Write(rec); err != nil {
				return err
			}
		}
		lines = more
	}
	memRec := map[string]any{"step": sum.LastStep, "event": "summary"}
	if err := l.memory(ctx, memRec, sum); err != nil {
		return err
	}
	if !l.lead {
		return nil
	}
	if sum.PeakRSS > 0 || sum.Memory.Total > 0 {
		if err := l.mw.Write(memRec); err != nil {
			return err
		}
		lines = append([]string{memoryLine(*sum)}, lines...)
	}
	xs, ys, vxs, vys := lossSeries(l.records)
	if len(xs) > 0 {
		series := []plot.Series{{Name: "train", X: xs, Y: ys}}
		if len(vxs) > 0 {
			series = append(series, plot.Series{Name: "validation", X: vxs, Y: vys})
		}
		if err := plot.LossCurve(filepath.Join(l.c.Out, "loss.png"), "strand "+l.c.Name, series); err != nil {
			return err
		}
	}
	msg := fmt.Sprintf("done: step %d of %d (%d this run)", sum.LastStep, l.c.Steps, sum.Steps)
	if sum.LastStep < l.c.Steps {
		msg += fmt.Sprintf(", stopped by --stop-after %d", l.c.StopAfter)
	}
	if sum.Tokens > 0 {
		msg += fmt.Sprintf(", %s tokens", progress.Count(float64(sum.Tokens)))
	}
	msg += " in " + sum.Elapsed.Round(time.Millisecond).String()
	if len(ys) > 0 {
		msg += fmt.Sprintf(", final loss %.4f", ys[len(ys)-1])
	}
	if len(vys) > 0 {
		msg += fmt.Sprintf(", validation loss %.4f", vys[len(vys)-1])
	}
	fmt.Fprintln(l.c.Stdout, msg)
	for _, s := range lines {
		fmt.Fprintln(l.c.Stdout, s)
	}
	what := "metrics.jsonl"
	if len(xs) > 0 {
		what += ", loss.png"
	}
	if sum.Checkpoint != "" {
		what += ", checkpoint " + sum.Checkpoint
	}
	fmt.Fprintf(l.c.Stdout, "run directory %s (%s)\n", l.c.Out, what)
	return nil
}

// memory adds this job's memory to rec (every rank calls it together):
// the Stepper's categories (a MemoryReporter's) and the peak RSS, each the
// maximum over the job's ranks, as mem_params, mem_grads, mem_optimizer,
// mem_activations, mem_comm, mem_total and peak_rss. With sum it also
// fills sum.Memory and sum.PeakRSS.
func (l *loop) memory(ctx context.Context, rec map[string]any, sum *Summary) error {
	var b memplan.Breakdown
	r, ok := l.s.(MemoryReporter)
	if ok {
		b = r.Memory()
	}
	// float32 keeps 24 bits: byte counts come back within 1e-7
	buf := []float32{float32(b.Params), float32(b.Grads), float32(b.Optimizer), float32(b.Activations), float32(b.Comm), float32(b.Total), float32(PeakRSS())}
	if l.c.Job.AgreeMax != nil {
		if err := l.c.Job.AgreeMax(ctx, buf); err != nil {
			return fmt.Errorf("memory report: maximum over the job: %w", err)
		}
	}
	b = memplan.Breakdown{Params: int64(buf[0]), Grads: int64(buf[1]), Optimizer: int64(buf[2]), Activations: int64(buf[3]), Comm: int64(buf[4]), Total: int64(buf[5])}
	peak := int64(buf[6])
	if ok {
		for _, c := range b.Categories()[:5] {
			rec["mem_"+c.Name] = c.Bytes
		}
		rec["mem_total"] = b.Total
	}
	if peak > 0 {
		rec["peak_rss"] = peak
	}
	if sum != nil {
		sum.Memory, sum.PeakRSS = b, peak
	}
	return nil
}

// memoryLine is the summary's memory line.
func memoryLine(sum Summary) string {
	b := sum.Memory
	msg := "memory per rank (largest):"
	if b.Total > 0 {
		msg += fmt.Sprintf(" parameters %s, gradients %s, optimizer %s, activations %s, communication %s (buffers %s);",
			memplan.Bytes(b.Params), memplan.Bytes(b.Grads), memplan.Bytes(b.Optimizer), memplan.Bytes(b.Activations), memplan.Bytes(b.Comm), memplan.Bytes(b.Total))
	}
	if sum.PeakRSS > 0 {
		msg += " peak RSS " + memplan.Bytes(sum.PeakRSS)
	}
	return msg
}
