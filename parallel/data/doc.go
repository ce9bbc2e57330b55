// Package data is data parallelism: every data-parallel rank holds a full
// replica (of its pipeline stage and tensor shard), computes gradients on
// its slice of the global batch, and the gradients are summed across the
// group before the optimizer step.
//
// The gradient buffer is laid out last-layer-first, so backward finishes it
// from the front. A Bucketer cuts it into fixed-size buckets (slices, never
// copies) and starts each bucket's all-reduce as soon as backward reports
// that the bucket is final (model.GPT.GradReady), overlapping communication
// with the rest of backward, as PyTorch DDP and Horovod do. Optionally the
// buckets travel as bfloat16 (half the bytes, float32 accumulation) or as
// fp8 with a per-bucket scale (a quarter of the bytes; all-gathered and
// summed locally in rank order, see fp8.go), and
// with ZeRO-1 each bucket is reduce-scattered instead, so each rank owns the
// reduced gradient (and optimizer state) of one chunk of every bucket, and
// updated parameters are all-gathered after the optimizer step.
//
// (Package name data as in the directory parallel/data; import it as
// dpdata next to the top-level data package.)
package data
