// Package memplan predicts a training rank's memory before anything is
// allocated: parameters, gradients, optimizer state, activations,
// communication buffers and the process around them, per pipeline stage,
// for a model, a DP x TP x PP mesh, a ZeRO stage, a recomputation mode, a
// batch and a precision. `strand train --plan` prints it and
// --max-mem-per-rank refuses a job that would not fit; a training run
// reports the same categories measured (trainer.Trainer.Memory) next to
// its peak RSS.
//
// The prediction is analytic, from the parameter shapes (model.ParamShapes,
// which allocates nothing) and the buffer sizes the model, the trainer and
// the data-parallel buckets allocate; tests compare it with a built
// model's real buffers. Per rank, with P this rank's parameter elements
// (its stage's tensors, TP-sharded) and G the shard group (the
// data-parallel ranks, or --shard-group):
//
//   - parameters: 4P float32 bytes; ZeRO-3 4·Σ⌈unit/G⌉ (the master shard)
//     plus the gathered working set 4W, W the largest pair of consecutive
//     units in forward order (the unit running and the one prefetched), or
//     P without resharding after the forward. bf16 adds 2 bytes per
//     resident element, fp16 4 (its rounded copy is float32), plus two
//     operand scratch slots of micro-batch x widest-width elements: the
//     precision copies are counted here.
//   - gradients: 4P; ZeRO-2/3 the shard plus the largest pair of
//     consecutive units in backward order.
//   - optimizer: AdamW's two moments of what this rank updates: 8P; ZeRO-1
//     this rank's chunk of every gradient bucket; ZeRO-2/3 the shard.
//   - activations: the activation slots the pipeline schedule keeps in
//     flight on the stage (pipeline.Schedule.InFlight) under the
//     recomputation mode (and, under the zero-bubble schedules, the
//     output-gradient copies their deferred weight gradients keep), plus
//     the model's backward scratch.
//   - communication: bf16/fp8 bucket copies, pipeline receive and send
//     buffers, a ZeRO-3 gather's staging.
//   - other: the Go runtime, binary, GEMM packing and transport (a
//     measured constant, Config.Runtime) and the training data.
//
// A ZeRO unit is what ZeRO-2/3 gather and free together: each transformer
// block, the first stage's embeddings, the last stage's head (ln_f and an
// untied lm_head), and a last stage's tied copy of wte.
package memplan
