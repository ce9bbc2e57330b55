package pipeline

import (
	"context"
	"fmt"
)

// Stage performs one pipeline stage's actions; the executor decides nothing,
// it only walks the schedule.
type Stage interface {
	Do(ctx context.Context, a Action) error
}

// Run executes stage's program of s in order, stopping at the first error,
// which it wraps with the stage and action.
func Run(ctx context.Context, s *Schedule, stage int, st Stage) error {
	for i, a := range s.Steps[stage] {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("pipeline stage %d, action %d (%s): %w", stage, i, a, err)
		}
		if err := st.Do(ctx, a); err != nil {
			return fmt.Errorf("pipeline stage %d, action %d (%s): %w", stage, i, a, err)
		}
	}
	return nil
}
