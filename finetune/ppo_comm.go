package finetune

import (
	"context"

	"github.com/strand-ml/strand/collective"
)

// PPOComms are the groups a distributed PPO step runs over; a nil member
// is a group of one (the single-process run; see collective.Comm).
type PPOComms struct {
	// DP is the data-parallel group: its ranks hold equal weights, each
	// samples and scores a contiguous share of every step's prompts, and
	// gradients and statistics are summed over it.
	DP *collective.Comm
	// TP is the tensor-parallel group the models were built on
	// (model.Layout.TP): the policy's vocabulary-split logits are gathered
	// over it for sampling and gradient norms summed over it.
	TP *collective.Comm
	// PP is the pipeline group (model.Layout of stage PP.Rank() of PP.Size()
	// for every model): activations and gradients travel over it, the last
	// stage's sampled tokens and statistics are broadcast over it and
	// gradient norms summed over it.
	PP *collective.Comm
	// Embed joins the first and last pipeline stage (nil without a
	// pipeline split): the tied embedding's gradient is summed over it.
	Embed *collective.Comm
}

// sumFloat64 replaces vals with their sums over the group, in float64: the
// collectives carry float32, so each value travels as a float32 pair
// (hi, lo) with hi+lo within about 2^-48 of it, every rank's pairs are
// all-gathered and the sums taken in rank order. Every rank gets the same
// bits, and the sums are as good as a single process's (statistics such
// as the advantage mean must not depend on the layout beyond rounding).
func sumFloat64(ctx context.Context, c *collective.Comm, vals []float64) error {
	n := c.Size()
	if n == 1 {
		return nil
	}
	k := 2 * len(vals)
	buf := make([]float32, n*k)
	mine := buf[c.Rank()*k:][:k]
	for i, v := range vals {
		hi := float32(v)
		mine[2*i], mine[2*i+1] = hi, float32(v-float64(hi))
	}
	if err := c.AllGather(ctx, collective.F32(buf)); err != nil {
		return err
	}
	for i := range vals {
		var s float64
		for r := 0; r < n; r++ {
			s += float64(buf[r*k+2*i]) + float64(buf[r*k+2*i+1])
		}
		vals[i] = s
	}
	return nil
}

// allReduceSum sums a float32 buffer over the group (gradients).
func allReduceSum(ctx context.Context, c *collective.Comm, buf []float32) error {
	return c.AllReduce(ctx, collective.F32(buf), collective.Sum)
}
