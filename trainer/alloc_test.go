package trainer

import (
	"context"
	"testing"

	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/model"
)

// TestTrainStepAllocatesNothing checks that a single-process training step
// allocates nothing once the first step has sized every buffer: attention
// heads run on a persistent worker pool, GEMM calls are recycled, and the
// trainer reuses its scalars. Several threads and every position scheme are
// covered, because each takes a different path through attention.
func TestTrainStepAllocatesNothing(t *testing.T) {
	for _, pos := range []string{model.PosLearned, model.PosRoPE, model.PosALiBi} {
		for _, threads := range []int{1, 2} {
			opts := testOptions()
			opts.Model.Position = pos
			opts.Threads = threads
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
			var stepErr error
			allocs := testing.AllocsPerRun(5, func() {
				if _, err := tr.TrainStep(ctx); err != nil {
					stepErr = err
				}
			})
			tr.Close()
			if stepErr != nil {
				t.Fatal(stepErr)
			}
			if allocs != 0 {
				t.Errorf("position %v, %d threads: %.1f allocations per training step, want 0", pos, threads, allocs)
			}
		}
	}
}
