package finetune

import (
	"context"

	"github.com/strand-ml/strand/collective"
)

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
