// Package zero shards a model's training state over the data-parallel
// ranks beyond ZeRO-1's optimizer moments (parallel/data): ZeRO-2 shards
// the gradients too, ZeRO-3 the parameters as well (PyTorch FSDP,
// DeepSpeed ZeRO-3).
//
// The unit of work is a model.Unit: a quarter of a transformer block
// (model.BlockParts), a row chunk of a vocabulary weight (model.VocabCuts),
// the position embedding, ln_f. A unit of n elements is cut
// over the shard group's G ranks with collective.Chunk, so rank r owns
// elements Chunk(n, G, r) of every unit — the piece ReduceScatter leaves
// on it and AllGather takes from it.
//
// Memory. The model keeps its flat Params.Data and Params.Grad at full
// length (every view, offset and checkpoint name stays as it is), but in
// pages that are handed back to the kernel (internal/pages): only the
// units in use are resident. The sharder keeps, in buffers of the same
// length whose only resident pages are its owned chunks, the reduced
// gradient and (ZeRO-3) the float32 master weights; the optimizer's
// moments are packed to the owned elements (optim.Restrict).
//
// A step under ZeRO-3, as the model asks for units (model.Residency):
//
//	forward, unit u:  Need: wait for u's all-gather (started as a
//	                  prefetch while the previous unit computed), start
//	                  the next unit's; Done: hand u's pages back (unless
//	                  KeepGathered, --reshard-after-forward=false)
//	backward, unit u: Need: gather again, prefetch the next; Done:
//	                  reduce-scatter u's gradient (overlapped with the
//	                  next unit's backward), add the owned piece to the
//	                  sharded gradient, hand the unit's parameter and
//	                  gradient pages back
//	embedding rows:   the token embedding's gradient arrives as the rows
//	                  of the batch's tokens (AddRows): all-gathered, each
//	                  owner adds its part (no whole-table gradient)
//	after backward:   Finish waits for the last reduce-scatters
//	optimizer:        AdamW over the owned elements only
//
// Under bf16/fp16 the units' large weights are gathered in the compute
// precision (lowgather.go). The bookkeeping counts gathered bytes
// (GatherBytes), which memory planning shares.
//
// ZeRO-2 keeps every parameter resident and runs only the gradient half;
// after the update each unit's parameters are all-gathered, as ZeRO-1 does.
//
// Hybrid sharding (--shard-group N) shards within groups of N data-parallel
// ranks and replicates across groups: gathers and reduce-scatters run in
// the shard group, and each owned gradient piece is then all-reduced over
// the replica group (the ranks holding the same piece in other groups).
package zero
