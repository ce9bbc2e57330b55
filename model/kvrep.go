package model

import (
	"context"
	"fmt"

	"github.com/strand-ml/strand/parallel/tensor"
)

// Replicated kv heads (as Megatron-LM does when tensor parallelism exceeds
// the kv heads): with TP = R * NKV, each kv head is held by R ranks, and
// each of those holds a different 1/R of the kv head's query heads.
//
// Rank r = s*NKV + k uses kv head k and, of the G query chunks (strand's
// group-major order, Config.KVGroup), chunks j*R + s for j < G/R. c_attn
// is then held whole by every rank (tensor.Replicated): each forward
// gathers this rank's columns (its G/R query heads, kv head k's key and
// value) into a compact (C, QKVl) copy. The backward computes the
// gradient of those columns, scatters it into a zeroed full-size buffer
// and all-reduces that over the TP group, so every rank adds the same
// full c_attn gradient: a query column gets its one rank's contribution,
// a key or value column the sum over the R ranks sharing it. c_proj stays
// row-parallel (tensor.Split(0, G/R) gives rank r exactly the rows of its
// query heads), and the existing all-reduce of c_attn's input gradient
// sums the partial sums as before.
type kvRep struct {
	tp    tensor.Group
	C, W  int   // c_attn's input width and full output width
	HS    int   // head width
	cols  []int // first full column of each local head-block (QKVl/HS of them)
	dW    []float32
	dB    []float32
	dFull []float32 // (C*W + W) the full gradient all-reduced: weight then bias
}

// newKVRep prepares the replication of cfg's kv heads on this rank, or
// returns nil when TP divides the kv heads.
func newKVRep(cfg Config, d localDims, tp tensor.Group, blocks []blockWeights) *kvRep {
	R := kvReplicas(cfg, tp.Size())
	if R == 1 {
		return nil
	}
	HS, NKV, G := cfg.HeadDim(), cfg.KVHeads(), cfg.KVGroup()
	Cq := cfg.NHead * HS
	r := tp.Rank()
	s, k := r/NKV, r%NKV
	x := &kvRep{tp: tp, C: d.C, W: Cq + 2*NKV*HS, HS: HS}
	for j := range G / R {
		x.cols = append(x.cols, ((j*R+s)*NKV+k)*HS)
	}
	x.cols = append(x.cols, Cq+k*HS, Cq+NKV*HS+k*HS)
	x.dW, x.dB = make([]float32, d.C*d.QKVl), make([]float32, d.QKVl)
	x.dFull = make([]float32, d.C*x.W+x.W)
	for i := range blocks {
		blocks[i].repW = make([]float32, d.C*d.QKVl)
		if blocks[i].attnB != nil {
			blocks[i].repB = make([]float32, d.QKVl)
		}
	}
	return x
}

// gather copies this rank's columns of the block's c_attn weight and bias
// into its compact copies and returns them.
func (x *kvRep) gather(bw *blockWeights) (w, b []float32) {
	HS, W := x.HS, x.W
	L := len(x.cols) * HS
	for c := range x.C {
		for i, col := range x.cols {
			copy(bw.repW[c*L+i*HS:c*L+(i+1)*HS], bw.attnW[c*W+col:c*W+col+HS])
		}
	}
	if bw.attnB != nil {
		for i, col := range x.cols {
			copy(bw.repB[i*HS:(i+1)*HS], bw.attnB[col:col+HS])
		}
	}
	return bw.repW, bw.repB
}

// backward is c_attn's backward with replicated kv heads: dln (N, C) =
// dqkv @ W_local^T (a partial sum, reduced by the caller as before), and
// the full weight and bias gradients summed over the TP group into
// dattnW and dattnB (nil: frozen).
func (x *kvRep) backward(ctx context.Context, m *GPT, bw *blockWeights, dln, dqkv, ln1 []float32, N int) error {
	C, L, HS, W := x.C, len(x.cols)*x.HS, x.HS, x.W
	m.mm(false, true, N, C, L, 1, dqkv, L, bw.repW, L, 0, dln, C)
	if bw.dattnW == nil { // frozen (LoRA)
		return nil
	}
	// this rank's columns: dW (C, L) = ln1^T @ dqkv, dB = column sums
	m.mm(true, false, C, L, N, 1, ln1, C, dqkv, L, 0, x.dW, L)
	full := x.dFull
	clear(full)
	for c := range C {
		for i, col := range x.cols {
			copy(full[c*W+col:c*W+col+HS], x.dW[c*L+i*HS:c*L+(i+1)*HS])
		}
	}
	if bw.dattnB != nil {
		clear(x.dB)
		m.biasGrad(x.dB, dqkv, N, L)
		for i, col := range x.cols {
			copy(full[C*W+col:C*W+col+HS], x.dB[i*HS:(i+1)*HS])
		}
	}
	if err := x.tp.AllReduceSum(ctx, full); err != nil {
		return fmt.Errorf("replicated kv heads: c_attn gradient all-reduce: %w", err)
	}
	add := func(g, v []float32) {
		if m.Params.claim(g) { // stale after ResetGrad: overwrite
			copy(g, v)
			return
		}
		ResidualAdd(g, v)
	}
	add(bw.dattnW, full[:C*W])
	if bw.dattnB != nil {
		add(bw.dattnB, full[C*W:])
	}
	return nil
}
