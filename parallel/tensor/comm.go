package tensor

import (
	"context"

	"github.com/strand-ml/strand/collective"
)

// FromComm adapts a collective communicator (nil: a group of one) to Group.
func FromComm(c *collective.Comm) Group {
	if c.Size() == 1 { // a nil communicator is a group of one too
		return Solo{}
	}
	return commGroup{c}
}

type commGroup struct{ c *collective.Comm }

func (g commGroup) Size() int { return g.c.Size() }
func (g commGroup) Rank() int { return g.c.Rank() }
func (g commGroup) AllReduceSum(ctx context.Context, buf []float32) error {
	return g.c.AllReduce(ctx, collective.F32(buf), collective.Sum)
}
func (g commGroup) AllReduceMax(ctx context.Context, buf []float32) error {
	return g.c.AllReduce(ctx, collective.F32(buf), collective.Max)
}
