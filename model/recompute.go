package model

import (
	"context"
	"fmt"
)

// Activation recomputation: trade compute for activation memory.
//
//   - RecomputeNone keeps every block's activations from forward to
//     backward.
//   - RecomputeSelective keeps everything but the MLP activation (the
//     widest buffer, 4C per position for GPT-2): each block's forward
//     writes it into one buffer shared by all blocks, and the backward
//     recomputes it from the pre-activation. Attention probabilities are
//     never stored: FlashAttention recomputes them from the log-sum-exp.
//   - RecomputeFull keeps only each block's output (its successor's input,
//     C per position): the blocks run on one shared set of buffers, and the
//     backward of block i first runs block i's forward again from its
//     input.
//
// The recomputed values are the forward's, bit for bit (same inputs, same
// weights, same kernels), so gradients equal those without recomputation.
// Recomputing a block under tensor parallelism repeats its all-reduces on
// every rank of the group, as Megatron's does.
const (
	RecomputeNone      = "none"
	RecomputeSelective = "selective"
	RecomputeFull      = "full"
)

// CheckRecompute reports whether mode is a recomputation mode ("" is none).
func CheckRecompute(mode string) error {
	switch mode {
	case "", RecomputeNone, RecomputeSelective, RecomputeFull:
		return nil
	}
	return fmt.Errorf("recompute %q is not one of none, selective, full", mode)
}

// NewActsRecompute allocates activations for batches of up to B x T that
// keep what mode says (see RecomputeFull).
func (m *GPT) NewActsRecompute(B, T int, mode string) (*Acts, error) {
	if err := CheckRecompute(mode); err != nil {
		return nil, err
	}
	return m.newActs(0, B, T, mode), nil
}

// NewChunkActs is NewActsRecompute for model chunk chunk of this rank
// (0..Chunks()-1): ForwardActs and BackwardActs on them run that chunk's
// blocks, embedding tokens on the first stage's first chunk and ending
// in the head on the last stage's last chunk.
func (m *GPT) NewChunkActs(chunk, B, T int, mode string) (*Acts, error) {
	if err := CheckRecompute(mode); err != nil {
		return nil, err
	}
	if chunk < 0 || chunk >= m.Chunks() {
		return nil, fmt.Errorf("model: chunk %d of a stage holding %d", chunk, m.Chunks())
	}
	return m.newActs(chunk, B, T, mode), nil
}

// Recompute is the recomputation mode the activations were made for.
func (a *Acts) Recompute() string {
	if a.recompute == "" {
		return RecomputeNone
	}
	return a.recompute
}

// forwardBlock runs block i's forward into a's buffers for it: its own
// ones, or the shared ones under RecomputeFull.
func (m *GPT) forwardBlock(ctx context.Context, a *Acts, i int, x []float32, B, T int) error {
	ba := &a.blocks[i]
	if a.work != nil {
		a.work.res3 = ba.res3
		ba = a.work
	}
	return m.blockForward(ctx, ba, &m.w.blocks[a.lo+i], x, B, T)
}

// backwardBlock runs block i's backward, first recomputing what a did not
// keep: the block's forward (RecomputeFull) or its MLP activation
// (RecomputeSelective).
func (m *GPT) backwardBlock(ctx context.Context, a *Acts, i int, x, dres []float32, B, T int) error {
	ba, bw := &a.blocks[i], &m.w.blocks[a.lo+i]
	switch {
	case a.work != nil:
		// the recomputed forward and the backward read every part: they
		// are asked for together (and done with in reverse)
		if err := m.holdParts(ctx, bw); err != nil {
			return err
		}
		if err := m.forwardBlock(ctx, a, i, x, B, T); err != nil {
			return fmt.Errorf("recomputing the forward: %w", err)
		}
		if err := m.blockBackward(ctx, a.work, bw, x, dres, B, T); err != nil {
			return err
		}
		return m.releaseParts(ctx, bw)
	case a.recompute == RecomputeSelective:
		// the forward's fused tanh GELU added the fc bias into fch in
		// place: the activation of fch as it is now is the forward's
		m.activate(ba.fchAct, ba.fch, B*T, m.local.Hl)
	}
	return m.blockBackward(ctx, ba, bw, x, dres, B, T)
}
