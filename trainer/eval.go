package trainer

import (
	"context"
	"fmt"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/model"
)

// EvalLoss is the mean next-token loss over batches batches of src (each
// RowsPerRank rows on this data-parallel rank, like a training step's), on
// any mesh: each batch is a Forward pass, the losses are summed over
// stages and data-parallel ranks. Every rank calls it together. It needs the plain language-model
// objective (no Objective or head set) and leaves the training state (the
// measured bubble included) as it was.
func (t *Trainer) EvalLoss(ctx context.Context, src Batches, batches int) (float64, error) {
	if _, packed := t.Source.(Segmented); t.Objective != nil || t.head != nil || packed {
		return 0, fmt.Errorf("evaluation: only the language-model loss of unpacked rows is evaluated here")
	}
	sums := make([]float32, 2) // loss sum, counted targets
	var loss float64
	var count int
	for i := 0; i < batches; i++ {
		if err := src.Next(t.inputs, t.targets); err != nil {
			return 0, fmt.Errorf("evaluation batch %d: %w", i+1, err)
		}
		for _, y := range t.targets {
			if y != model.IgnoreIndex {
				count++
			}
		}
		t.lossSum = 0
		if err := t.Forward(ctx, Pass{Rows: t.inputs, Targets: t.targets, T: t.Opts.Seq}); err != nil {
			return 0, fmt.Errorf("evaluation batch %d: %w", i+1, err)
		}
		loss += t.lossSum
	}
	if t.Comms.Mesh.PP == 1 && t.Comms.Mesh.DP == 1 {
		if count == 0 {
			return 0, fmt.Errorf("evaluation: no target counted")
		}
		return loss / float64(count), nil
	}
	// The loss lives on the last stage (others add 0), the counts on
	// every stage (each stage counts the same rows: take the first's).
	sums[0] = float32(loss)
	if t.Comms.Coord.PP == 0 {
		sums[1] = float32(count)
	}
	for _, g := range []*collective.Comm{t.Comms.PP, t.Comms.DP} {
		if err := allReduce(ctx, g, sums, collective.Sum); err != nil {
			return 0, fmt.Errorf("evaluation loss: %w", err)
		}
	}
	if sums[1] == 0 {
		return 0, fmt.Errorf("evaluation: no target counted")
	}
	return float64(sums[0]) / float64(sums[1]), nil
}
