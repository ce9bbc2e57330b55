package collective

import (
	"context"
	"slices"
	"testing"
)

// TestNilCommIsAGroupOfOne: a nil *Comm has rank 0 and size 1, its
// collectives leave the buffer as a group of one would, its checks still
// apply, and point-to-point calls fail with a clear error.
func TestNilCommIsAGroupOfOne(t *testing.T) {
	var c *Comm
	ctx := context.Background()
	if c.Rank() != 0 || c.Size() != 1 {
		t.Fatalf("rank %d, size %d", c.Rank(), c.Size())
	}
	if lo, hi := c.Chunk(10); lo != 0 || hi != 10 {
		t.Fatalf("chunk [%d, %d), want the whole", lo, hi)
	}
	want := []float32{1, 2, 3}
	buf := slices.Clone(want)
	for name, err := range map[string]error{
		"allreduce":     c.AllReduce(ctx, F32(buf), Sum),
		"reducescatter": c.ReduceScatter(ctx, F32(buf), Max),
		"allgather":     c.AllGather(ctx, F32(buf)),
		"broadcast":     c.Broadcast(ctx, F32(buf), 0),
		"reduce":        c.Reduce(ctx, F32(buf), Sum, 0),
		"barrier":       c.Barrier(ctx),
		"async":         c.AllReduceAsync(ctx, F32(buf), Sum).Wait(ctx),
		"close":         c.Close(),
	} {
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if !slices.Equal(buf, want) {
		t.Fatalf("buffer %v after the collectives of a group of one, want %v", buf, want)
	}
	out := make([]float32, 3)
	if err := c.AllToAll(ctx, F32(buf), F32(out)); err != nil || !slices.Equal(out, want) {
		t.Fatalf("alltoall: %v, %v", out, err)
	}
	if err := c.Broadcast(ctx, F32(buf), 1); err == nil {
		t.Error("broadcast from root 1 of a group of one was accepted")
	}
	if err := c.AllReduce(ctx, F32(buf), Op(99)); err == nil {
		t.Error("an invalid reduction op was accepted")
	}
	if err := c.Send(ctx, F32(buf), 1); err == nil {
		t.Error("send in a group of one was accepted")
	}
}
