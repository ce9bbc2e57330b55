// Package data turns text or token shards into training batches.
//
// The path is: a source (the Go toolchain's own source tree by default, a
// text file, a directory or glob of text files, or llm.c token shards) ->
// Load, which tokenizes into one flat []uint16 Corpus -> Corpus.Split for a
// held-out validation tail -> a Loader per data-parallel rank, which cuts
// windows of Seq+1 tokens into (inputs, targets) batches.
//
// Shards use llm.c's format so files are interchangeable with llm.c and
// nanoGPT-style tools: a header of 256 little-endian int32 (magic 20240520,
// version 1, token count, rest zero) followed by the tokens as little-endian
// uint16.
//
// Data parallelism: every step has one global batch of Batch*DPSize rows;
// rank r takes rows [r*Batch, (r+1)*Batch). The union over ranks is exactly
// the batch a single process with Batch*DPSize rows would see, so changing
// the layout does not change what the model trains on. The Loader's position
// is counted in global batches, so a saved LoaderState resumes exactly, even
// under a different DP layout with the same global batch.
package data
