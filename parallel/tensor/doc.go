// Package tensor holds the pieces of Megatron-style tensor parallelism that
// are independent of any one model: how a logical parameter is cut into
// per-rank shards (ShardSpec), the communication group the sharded layers
// reduce over (Group), and the vocabulary-parallel cross-entropy, which
// computes the loss without any rank holding the full logits.
//
// Column-parallel linears split their output features (each rank computes
// a slice of the columns; backward all-reduces the input gradient);
// row-parallel linears split their input features (forward all-reduces the
// partial outputs). A group of size 1 makes every reduction a no-op, so the
// same model code serves a single process.
package tensor
