package model

import "github.com/strand-ml/strand/gemm"

// LoRA (low-rank adaptation) adds a trainable low-rank update to a frozen
// linear layer:
//
//	out (N, OC) = inp (N, C) @ W (C, OC) + b + scale * (inp @ A (C, r)) @ B (r, OC)
//
// with scale = alpha / r. W and b stay frozen; only A and B learn. B starts
// at zero, so an adapted model starts equal to its base. Merging folds the
// update into the base weight: W' = W + scale * A @ B.
//
// Under tensor parallelism an adapter follows its base layer's split: for a
// column-parallel layer (c_attn, c_fc; W split on OC) B is split on OC and
// A is replicated; for a row-parallel layer (c_proj; W split on C) A is
// split on C and B replicated, and since (sum_k inp_k A_k) B = sum_k
// (inp_k A_k) B each rank adds its term to the partial sums the layer
// already all-reduces — no extra communication.

// LoRAForward adds the adapter's term to out, which already holds the base
// layer's output. h (N, r) receives inp @ A, kept for the backward.
func LoRAForward(e *gemm.Engine, out, h, inp, A, B []float32, N, C, OC, r int, scale float32) {
	e.Sgemm(false, false, N, r, C, 1, inp, C, A, r, 0, h, r)
	e.Sgemm(false, false, N, OC, r, scale, h, r, B, OC, 1, out, OC)
}

// LoRABackward accumulates dA (C, r) and dB (r, OC) and adds the adapter's
// share of the input gradient to dinp (N, C) when it is not nil. dh (N, r)
// is scratch.
func LoRABackward(e *gemm.Engine, dinp, dA, dB, dh, dout, inp, h, A, B []float32, N, C, OC, r int, scale float32) {
	// dh = scale * dout @ B^T ; dB += scale * h^T @ dout ; dA += inp^T @ dh
	e.Sgemm(false, true, N, r, OC, scale, dout, OC, B, OC, 0, dh, r)
	e.Sgemm(true, false, r, OC, N, scale, h, r, dout, OC, 1, dB, OC)
	e.Sgemm(true, false, C, r, N, 1, inp, C, dh, r, 1, dA, r)
	if dinp != nil {
		e.Sgemm(false, true, N, C, r, 1, dh, r, A, r, 1, dinp, C)
	}
}

// MergeLoRA folds an adapter into its base weight: W (C, OC) += scale * A @ B.
func MergeLoRA(e *gemm.Engine, W, A, B []float32, C, OC, r int, scale float32) {
	e.Sgemm(false, false, C, OC, r, scale, A, r, B, OC, 1, W, OC)
}
