// Package pipeline splits a model into stages and runs micro-batches
// through them on a schedule.
//
// A schedule is data: for each stage an ordered list of actions (forward or
// backward of micro-batch m on model chunk c, send or receive of an
// activation or a gradient). Generators build the lists before the run;
// Check runs every stage's list together in memory, with sends that never
// block and receives that wait, and proves that every send meets its
// receive in the order the transport delivers it, every micro-batch is
// forwarded and backwarded exactly once per chunk, and the program ends, so
// a schedule that could deadlock is rejected before any worker starts. The
// executor only walks a list (Run).
//
// # Generators
//
//   - gpipe: all forwards, then all backwards. Bubble (p-1)/(m+p-1), m
//     micro-batches in flight.
//   - 1f1b: PipeDream-Flush. Same bubble, at most p-i in flight on stage i.
//   - interleaved (Spec.Virtual = V): Megatron-LM's interleaved 1F1B. The
//     layers are cut into p*V chunks (Chunks), stage r holds global chunks
//     r, r+p, ..., r+(V-1)p; micro-batches go through in groups of p.
//     Bubble (p-1)/(Vm+p-1); m must be a multiple of p. With V = 1 it is
//     1f1b.
//   - zb-h1, zb-h2 (Qi et al., 2023, "Zero Bubble Pipeline Parallelism"):
//     the backward is split into the input gradient (BackwardInput, "B",
//     on the critical path) and the weight gradient (BackwardWeight, "W",
//     deferred into what would be bubbles). ZB-H1 keeps 1F1B's count before
//     the input gradient on every stage and holds at most stage 0's 1F1B
//     peak (p micro-batches) until the weight gradient, with bubble
//     (p-1)/(3m+p-1) at equal F, B, W times and m >= p; ZB-H2 holds up to
//     2p-1 micro-batches so that with m >= 2p no stage idles between its
//     first and last compute.
//
// New(name, p, m) builds only schedules an executor of Forward and Backward
// with one chunk per stage can run and refuses the others naming what they
// need; Generate builds any, and Schedule.Needs tells what it needs.
// Simulate runs any schedule on a cost model (Costs: a stage's F, B, W
// times and a send latency) and reports makespan and bubble;
// TheoreticalBubble is the published formula.
//
// # Executor contract
//
// Run calls Stage.Do with each action of the stage's program in order; Do
// returns only when the action is done (a send may be queued: it must leave
// before any later send to the same stage, see below). For an action a on
// stage r, let g = a.Chunk*p + r be its global chunk; the model runs chunks
// in global order, chunk 0 holding the embeddings and chunk p*V-1 the
// final norm, head and loss.
//
//   - Forward: run chunk a.Chunk forward on micro-batch a.Micro. Input: the
//     token ids if g = 0, else the activation a RecvAct with the same
//     (Micro, Chunk) stored. Keep the activations the backward needs in the
//     buffer Slots(r) assigns to (Micro, Chunk); InFlight(r) buffers
//     suffice. An executor whose chunks' buffers differ (the trainer's: a
//     chunk's blocks, the head on the last) keeps buffers per chunk as
//     ChunkSlots(r) assigns them; receive buffers taken at the receive and
//     given back at the compute reading them number Pending(r, kind).
//   - SendAct: send chunk a.Chunk's output of a.Micro to stage (g+1) mod p,
//     where it is the input of local chunk (g+1)/p.
//   - RecvAct: receive a.Micro's input of chunk a.Chunk from stage
//     (g-1) mod p into the buffer of (Micro, Chunk).
//   - RecvGrad: receive the gradient of chunk a.Chunk's output for a.Micro
//     from stage (g+1) mod p.
//   - Backward: both halves at once: input and weight gradients of chunk
//     a.Chunk for a.Micro (the loss's gradient if g is the last chunk, else
//     the one RecvGrad stored). The (Micro, Chunk) buffer is free after it.
//   - BackwardInput: only the gradient with respect to the chunk's input
//     (and through every layer inside the chunk), not the weights. It must
//     keep what BackwardWeight needs: each weight's layer input (already in
//     the activations) and the gradient of its output, per layer. The
//     activations the weight gradient does not read may be freed.
//   - BackwardWeight: add chunk a.Chunk's weight gradients of a.Micro to
//     the gradient buffer from what BackwardInput kept. Every
//     BackwardWeight comes after its BackwardInput on the same stage; the
//     (Micro, Chunk) buffer is free after it. Every generator runs a
//     chunk's weight gradients (or backwards) in micro-batch order, so the
//     sums are accumulated in the same order as 1F1B's.
//   - SendGrad: send the input gradient that Backward or BackwardInput
//     computed for (Micro, Chunk) to stage (g-1) mod p.
//
// A stage's gradients of chunk c are final after the action
// WeightGradDone(r)[c] (its last Backward or BackwardWeight): data-parallel
// bucket reduction of that chunk's parameters, and after every chunk the
// tied-embedding sum, clipping and the optimizer step, must wait for it,
// never for the last Backward micro-batch index. Messages between two
// stages are untagged and matched in order: the executor must put sends to
// one stage on the wire in program order (as the trainer's ordered sender
// does); Check proves each receive then gets the message it names. With
// p = 2 and V > 1 activations and gradients share both directions.
package pipeline
