package trainer

import (
	"context"
	"fmt"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/progress"
)

// Steps adapts a Trainer to the run loop (Stepper and AsyncSaver): each
// Step is one TrainStep, each Save one checkpoint of the trainer.
type Steps struct {
	T       *Trainer
	Rank    int     // this process's rank in the job (0 writes the checkpoint's commit)
	Barrier Barrier // every rank of the job; nil for one process
	Seed    uint64  // recorded in trainer_state.json
	// Extra adds top-level keys to every checkpoint's trainer_state.json
	// (State.Extra); nil adds none.
	Extra func() map[string]any
	// Fields, when set, returns the objective's own statistics after each
	// step. Every rank calls it, so it may reduce over the job's groups.
	Fields func(ctx context.Context, st StepStats) ([]progress.Field, error)
}

// Step implements Stepper.
func (s *Steps) Step(ctx context.Context) (Record, error) {
	st, err := s.T.TrainStep(ctx)
	if err != nil {
		return Record{}, err
	}
	rec := Record{Stats: st}
	if s.Fields != nil {
		if rec.Fields, err = s.Fields(ctx, st); err != nil {
			return rec, fmt.Errorf("step %d statistics: %w", st.Step, err)
		}
	}
	return rec, nil
}

// Done implements Stepper.
func (s *Steps) Done() int { return s.T.Step }

func (s *Steps) state() State {
	st := State{Seed: s.Seed}
	if s.Extra != nil {
		st.Extra = s.Extra()
	}
	return st
}

// Save implements Stepper.
func (s *Steps) Save(ctx context.Context, run string, keep int) (string, error) {
	return s.T.Save(ctx, run, keep, s.Rank, s.Barrier, s.state())
}

// SaveAsync implements AsyncSaver.
func (s *Steps) SaveAsync(ctx context.Context, run string, keep int) func() (string, error) {
	return s.T.SaveAsync(ctx, run, keep, s.Rank, s.Barrier, s.state())
}

// Restore implements Stepper.
func (s *Steps) Restore(_ context.Context, dir string) error {
	_, err := s.T.Restore(dir)
	return err
}

// MaxOverJob replaces each value of buf by its maximum over every rank of
// the mesh: a maximum over the tensor-, data- and pipeline-parallel
// groups in turn covers the whole DP x TP x PP grid. Nil communicators
// are groups of one. Every rank calls it together.
func (c *Comms) MaxOverJob(ctx context.Context, buf []float32) error {
	if c == nil {
		return nil
	}
	for _, g := range []*collective.Comm{c.TP, c.DP, c.PP} {
		if err := allReduce(ctx, g, buf, collective.Max); err != nil {
			return err
		}
	}
	return nil
}

// SumOver sums buf over each of the given groups in turn (nil: a group of
// one): the objectives' statistics live on some ranks (the last pipeline
// stage) and are added over stages and data-parallel ranks.
func SumOver(ctx context.Context, buf []float32, groups ...*collective.Comm) error {
	for _, g := range groups {
		if err := allReduce(ctx, g, buf, collective.Sum); err != nil {
			return err
		}
	}
	return nil
}
