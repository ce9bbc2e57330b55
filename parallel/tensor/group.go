package tensor

import "context"

// Group is the tensor-parallel communicator a sharded model reduces over.
// collective.Comm satisfies it through an adapter in package worker; Solo
// is the group of one.
type Group interface {
	Size() int
	Rank() int
	// AllReduceSum replaces buf on every rank with the elementwise sum over
	// the group, bit-identically on every rank.
	AllReduceSum(ctx context.Context, buf []float32) error
	// AllReduceMax is the same with the elementwise maximum.
	AllReduceMax(ctx context.Context, buf []float32) error
}

// Solo is a group of size 1: every reduction is the identity.
type Solo struct{}

func (Solo) Size() int                                     { return 1 }
func (Solo) Rank() int                                     { return 0 }
func (Solo) AllReduceSum(context.Context, []float32) error { return nil }
func (Solo) AllReduceMax(context.Context, []float32) error { return nil }
