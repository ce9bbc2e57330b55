package trainer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/metrics"
)

// The run directory's rules: a new run never writes into a directory
// that holds another run's files unless told to (--overwrite), --resume
// never silently starts over when checkpoints exist but none is usable,
// and no existing step directory is ever written over.

// JobFile is the run directory's record of a running job's coordinator
// (address and token), written by the launcher; it is not a run's output.
const JobFile = "job.json"

// runOutputs are the entries a run writes into its directory: what
// --overwrite removes. Anything else is left alone.
var runOutputs = []string{"checkpoints", "metrics.jsonl", "loss.png", "adapter_config.json", "trace.json", JobFile}

// CheckRunDir reports whether out may receive a run: without resume it
// must be absent or empty (a launcher's job.json aside) unless overwrite
// is set. It changes nothing; commands call it before launching workers.
func CheckRunDir(out string, resume, overwrite bool) error {
	if out == "" {
		return errors.New("no run directory (--out) given")
	}
	if resume || overwrite {
		return nil
	}
	entries, err := os.ReadDir(out)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("run directory %s: %w", out, err)
	}
	var held []string
	for _, e := range entries {
		// the launcher's job.json (and the temporary file it is written
		// through) belong to the job starting, not to another run
		if name := e.Name(); name != JobFile && !strings.HasPrefix(name, "."+JobFile+".tmp") {
			held = append(held, name)
		}
	}
	if len(held) == 0 {
		return nil
	}
	if len(held) > 4 {
		held = append(held[:4], "...")
	}
	return fmt.Errorf("run directory %s is not empty (%s): continue that run with --resume, replace it with --overwrite, or choose another --out",
		out, strings.Join(held, ", "))
}

// prepareDir applies the run directory's rules on the lead rank, creates
// the directory, and checks on every rank that it can be written, so a
// run does not fail at its first checkpoint after hours of training.
func (l *loop) prepareDir(ctx context.Context) error {
	out := l.c.Out
	if l.lead {
		if err := CheckRunDir(out, l.c.Resume, l.c.Overwrite); err != nil {
			return err
		}
		if l.c.Overwrite && !l.c.Resume {
			for _, name := range runOutputs {
				if name == JobFile {
					continue // the launcher's, for this very job
				}
				if err := os.RemoveAll(filepath.Join(out, name)); err != nil {
					return fmt.Errorf("--overwrite: %w", err)
				}
			}
		}
		if err := os.MkdirAll(out, 0o755); err != nil {
			return fmt.Errorf("run directory: %w", err)
		}
	}
	if err := l.barrier(ctx); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	f, err := os.CreateTemp(out, ".write-check-*")
	if err != nil {
		return fmt.Errorf("run directory %s is not writable: %w", out, err)
	}
	name := f.Name()
	_, werr := f.Write([]byte("strand\n"))
	cerr := f.Close()
	os.Remove(name)
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("run directory %s is not writable: %w", out, err)
	}
	if !l.lead {
		return nil
	}
	open := metrics.NewJSONL
	if l.c.Resume {
		open = metrics.AppendJSONL
		l.records, _ = metrics.ReadJSONL(filepath.Join(out, "metrics.jsonl"))
	}
	l.mw, err = open(filepath.Join(out, "metrics.jsonl"))
	return err
}

// ResumePoint is the checkpoint --resume continues from: the newest step
// directory of run that is committed and verifies. It returns "" when the
// run has no step directories at all (a first run with --resume starts at
// step 0), and an error naming every step directory and why it was
// rejected when some exist but none is usable. rejectedNewer are the
// unusable step directories newer than the chosen one.
func ResumePoint(run string) (dir string, step int, rejectedNewer []checkpoint.StepDir, err error) {
	steps, err := checkpoint.Steps(run)
	if err != nil {
		return "", 0, nil, fmt.Errorf("--resume: %w", err)
	}
	var why []string
	for i := len(steps) - 1; i >= 0; i-- {
		s := steps[i]
		var reason error
		if !s.Committed {
			reason = fmt.Errorf("not committed (no %s: its save did not finish)", checkpoint.CommitFile)
		} else {
			reason = checkpoint.Verify(s.Path)
		}
		if reason == nil {
			return s.Path, s.Step, steps[i+1:], nil
		}
		why = append(why, fmt.Sprintf("%s: %v", filepath.Base(s.Path), reason))
	}
	if len(steps) == 0 {
		return "", 0, nil, nil
	}
	return "", 0, nil, fmt.Errorf("--resume: none of the %d checkpoints in %s is usable, so the run cannot continue (nothing was changed; move them away or start a new run with another --out):\n  %s",
		len(steps), filepath.Join(run, "checkpoints"), strings.Join(why, "\n  "))
}

// resume restores the Stepper from the run's newest usable checkpoint
// under --resume, moving unusable newer step directories aside (never
// deleting or overwriting them), and records the resume in the metrics.
func (l *loop) resume(ctx context.Context) error {
	if !l.c.Resume {
		return nil
	}
	dir, step, newer, err := ResumePoint(l.c.Out)
	if err != nil {
		return err
	}
	if dir == "" {
		l.notef("resume: no checkpoint in %s yet; starting from step 0\n", l.c.Out)
		return nil
	}
	if err := l.barrier(ctx); err != nil { // every rank chose before any moves one
		return fmt.Errorf("resume: %w", err)
	}
	if l.lead {
		for _, s := range newer {
			aside := filepath.Join(filepath.Dir(s.Path), fmt.Sprintf("rejected-%s-%d", filepath.Base(s.Path), time.Now().Unix()))
			if err := os.Rename(s.Path, aside); err != nil {
				return fmt.Errorf("resume: moving the unusable %s aside: %w", s.Path, err)
			}
			l.notef("resume: %s is unusable; moved to %s\n", s.Path, aside)
		}
	}
	if err := l.s.Restore(ctx, dir); err != nil {
		return err
	}
	l.notef("resumed from %s (step %d)\n", dir, step)
	if !l.lead {
		return nil
	}
	lastLogged := 0
	for _, r := range l.records {
		if s, ok := r["step"].(float64); ok && r["event"] == nil {
			lastLogged = max(lastLogged, int(s))
		}
	}
	ev := map[string]any{"event": "resume", "resumed_from_step": step, "lost_steps": max(0, lastLogged-step)}
	for k, v := range l.c.ResumeEvent {
		ev[k] = v
	}
	return l.mw.Write(ev)
}

// checkpointStep is the step of a checkpoints/step_N directory (-1 if
// the name is not one).
func checkpointStep(dir string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(dir), "step_"))
	if err != nil {
		return -1
	}
	return n
}

// lossSeries turns metric records into the train and validation curves;
// a step logged twice (redone after a restart) keeps its latest value.
func lossSeries(records []map[string]any) (xs, ys, vxs, vys []float64) {
	train, val := map[int]float64{}, map[int]float64{}
	for _, r := range records {
		var step int
		switch s := r["step"].(type) {
		case float64:
			step = int(s)
		case int:
			step = s
		default:
			continue // an event record
		}
		if l, ok := r["loss"].(float64); ok {
			train[step] = l
		}
		if v, ok := r["val_loss"].(float64); ok {
			val[step] = v
		}
	}
	xs, ys = sortedSeries(train)
	vxs, vys = sortedSeries(val)
	return xs, ys, vxs, vys
}

func sortedSeries(m map[int]float64) (x, y []float64) {
	steps := make([]int, 0, len(m))
	for s := range m {
		steps = append(steps, s)
	}
	sort.Ints(steps)
	for _, s := range steps {
		x, y = append(x, float64(s)), append(y, m[s])
	}
	return x, y
}
