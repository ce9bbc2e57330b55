package trainer

import (
	"context"
	"math"
	"testing"

	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/model"
)

// TestTrainStepAllocatesNothing checks that a single-process training step
// allocates nothing once the first step has sized every buffer: attention
// heads run on a persistent worker pool, GEMM calls are recycled, and the
// trainer reuses its scalars. Several threads and every position scheme are
// covered, because each takes a different path through attention; with 2
// threads and one micro-batch of 8x16 the forward runs in lanes (model's
// lanes.go), with two micro-batches of 4x16 it splits each layer.
func TestTrainStepAllocatesNothing(t *testing.T) {
	for _, pos := range []string{model.PosLearned, model.PosRoPE, model.PosALiBi} {
		for _, c := range []struct{ threads, micro int }{{1, 2}, {2, 2}, {2, 1}} {
			threads := c.threads
			opts := testOptions()
			opts.Model.Position = pos
			opts.Threads = threads
			opts.Micro = c.micro
			opts.Steps = 100
			loader, err := data.NewLoader(testTokens(), data.LoaderConfig{Batch: opts.Batch, Seq: opts.Seq, DPSize: 1})
			if err != nil {
				t.Fatal(err)
			}
			tr, err := New(opts, loader, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			allocs, stepErr := stepAllocs(ctx, tr)
			tr.Close()
			if stepErr != nil {
				t.Fatal(stepErr)
			}
			if allocs != 0 {
				t.Errorf("position %v, %d threads, %d micro-batches: %.1f allocations per training step, want 0", pos, threads, c.micro, allocs)
			}
		}
	}
}

// stepAllocs is the fewest allocations per TrainStep over up to three
// trials of testing.AllocsPerRun. On a loaded machine the runtime itself
// now and then allocates while goroutines park and migrate between Ps
// (sudog caches refilling); an allocation made by the step's own code
// shows up in every trial.
func stepAllocs(ctx context.Context, tr *Trainer) (float64, error) {
	var stepErr error
	best := math.Inf(1)
	for trial := 0; trial < 3 && best > 0; trial++ {
		best = min(best, testing.AllocsPerRun(5, func() {
			if _, err := tr.TrainStep(ctx); err != nil {
				stepErr = err
			}
		}))
	}
	return best, stepErr
}
