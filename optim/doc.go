// Package optim updates parameters from gradients: AdamW with decoupled
// weight decay, global-norm gradient clipping, and the learning-rate
// schedule (linear warm-up then cosine decay).
//
// Everything works on flat float32 slices so the same code serves a whole
// model, one tensor-parallel shard of it, or a ZeRO-1 partition.
package optim
