package trainer

import (
	"context"
	"testing"

	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/internal/alloctest"
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
			if allocs >= alloctest.Tolerance {
				t.Errorf("position %v, %d threads, %d micro-batches: %.2f allocations per training step, want 0", pos, threads, c.micro, allocs)
			}
		}
	}
}

// stepAllocs is the allocations per TrainStep measured by alloctest (warm
// steps, the collector off, the best of twelve windows of 8 steps): on a
// loaded machine the runtime itself now and then allocates while
// goroutines park and migrate between Ps; an allocation made by the
// step's own code shows in every window.
func stepAllocs(ctx context.Context, tr *Trainer) (float64, error) {
	var stepErr error
	allocs := alloctest.PerCall(2, 8, 12, func() {
		if _, err := tr.TrainStep(ctx); err != nil {
			stepErr = err
		}
	})
	return allocs, stepErr
}
