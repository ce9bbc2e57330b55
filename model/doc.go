// Package model is a GPT-style decoder-only transformer with explicit
// forward and backward passes over preallocated buffers, in the manner of
// llm.c: every layer is a pair of functions (XxxForward, XxxBackward) over
// flat float32 slices whose shapes are given in comments as (B, T, C) —
// batch, time (sequence position) and channels.
//
// Parameters are registered once by their Hugging Face GPT-2 name with their
// full logical shape (see Params), stored in one flat buffer; gradients live
// in a second flat buffer with the same layout. The layout puts the last
// layer first, so the gradients that backward finishes first are contiguous
// at the start — data-parallel buckets are slices of it, never copies.
//
// Linear weights are stored [in, out] like Hugging Face's Conv1D, so a
// checkpoint is a direct copy of the buffers. Every matrix product goes
// through gemm.Engine.
//
// Llama-family models (Llama 2/3, Mistral, Qwen2, SmolLM) are the same
// blocks with other config values, not a second model: RMSNorm, SwiGLU
// with any n_inner, RoPE (rope_theta, rope_scaling linear / ntk / yarn /
// llama3), grouped-query attention (n_kv_head: c_attn is (C, C+2*Ckv)
// and the KV cache keeps only the kv heads), no biases or only the q/k/v
// ones (no_bias, qkv_bias), and an untied lm_head (untied_head; with
// pipeline stages nothing then ties the first and last stage). Query heads
// are stored group-major (Config.KVGroup) so tensor parallelism splits
// kv heads over the ranks when TP divides n_kv_head, and replicates them
// (as Megatron-LM does) when TP is a multiple of n_kv_head (kvrep.go). Package hf maps Hugging Face's Llama tensors and
// config.json onto these; the presets llama-tiny, llama-small and
// llama-gpt2s train one from scratch. LoRA targets may be named as
// Hugging Face's projections: q_proj, k_proj, v_proj and gate_proj,
// up_proj adapt column ranges of the fused c_attn and c_fc.
//
// Positions (Config.Position, see position.go): "learned" adds wpe rows to
// the embedding and cannot run past n_positions; "rope" rotates q and k
// inside attention (pairs i, i+HS/2 as in GPT-NeoX / HF LLaMA; rope_theta
// and rope_scaling linear / ntk / yarn as in Hugging Face's config.json);
// "alibi" adds -slope_h*(i-j) to the attention scores with the paper's
// slopes, each TP rank using its heads' global indices. RoPE and ALiBi
// models have no wpe and run at any length.
//
// Attention in training is FlashAttention (flash.go): blocks of 128 query
// rows against blocks of 128 keys with an online softmax, saving one
// log-sum-exp per row instead of a (T, T) matrix per head, heads spread
// over a persistent worker pool so a step allocates nothing.
// ReferenceAttention (reference_attention.go) is the plain reference that
// keeps the matrix, used only as the tests' oracle. Element-wise layers (tanh GELU, LayerNorm, the softmax
// exponentials) run on package vec's AVX-512 kernels where the CPU has them.
// With more than one compute thread the layers that are not matrix
// products (norms, activations, bias and residual adds, bias gradients)
// and Params.ZeroGrad / NormSumSquares are split over the same pool
// (split.go): one contiguous range of rows, columns or parameters per
// goroutine, each element computed exactly as the serial loop does, so the
// bits do not depend on the thread count. With exactly two threads a
// linear layer's backward (and the head's) runs its two equal-sized
// products, the input and the weight gradient, at once, one per goroutine,
// instead of splitting each (pair.go). The forward of the blocks instead
// runs in lanes (lanes.go): with tensor parallelism 1, each
// compute goroutine takes whole sequences of the batch through every
// block with one-thread GEMMs, since every layer works row by row or
// sequence by sequence; one join per forward, the serial forward's bits.
// The pool's workers and the caller spin briefly before they block
// (internal/spin), as gemm's team does.
//
// Gradients accumulate (micro-batches add up), but a step need not clear
// them first: after Params.ResetGrad the backward overwrites each weight
// gradient with its first contribution (GEMM beta=0) and clears the rest
// when first touched or when reported ready, with ZeroGrad's bits. The
// tanh GELU takes the fc bias in the same pass (forward) and sums its
// gradient while computing dfch (backward).
//
// Mixed precision (bf16.go, fp16.go): SetBF16 makes the linear layers and
// the head multiply bfloat16 operands with float32 accumulation, keeping
// float32 master weights, activations and gradients; SetFP16 emulates fp16
// operands the same way, for training with dynamic loss scaling.
//
// Generation uses KVCache (kvcache.go): a single sequence, forwarded a few
// tokens at a time, with every layer's keys and values kept, so each new
// token costs one row per layer instead of the whole prefix.
package model
