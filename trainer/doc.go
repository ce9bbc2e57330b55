// Package trainer runs next-token training: it pulls batches from a
// data.Loader, runs forward and backward over micro-batches, clips the
// global gradient norm, steps AdamW on the learning-rate schedule, and
// reports per-step statistics (loss, tokens/s, MFU).
//
// It is the library entry point for custom training loops too: build a
// Trainer with New, then call Step as often as you like, or drive the model,
// optimizer and loader yourself — Trainer only wires public pieces.
//
// The pipeline runs any schedule of package pipeline (Options.Schedule):
// GPipe, 1F1B, the zero-bubble ZB-H1/H2 (the backward split into input and
// weight gradients, model.BackwardInputActs and BackwardWeightActs), and
// interleaved 1F1B over Options.VirtualStages model chunks per stage (the
// model's Layout holds the stage's chunks, each micro-batch and chunk has
// its own model.Acts, receives land in pools; chunks.go). The stage
// executor (pipeline.go) walks the schedule's program and starts each
// data-parallel bucket's reduction in the backward that makes it final.
//
// Fine-tuning hooks, all on any DP x TP x PP mesh:
//   - Trainer.Source: any Batches instead of the Loader (Segmented for
//     packed rows);
//   - Trainer.Objective: a loss built from the last stage's per-position
//     losses, fed back as per-position weights (DPO);
//   - Trainer.SetHead: a HeadObjective, a head of the caller's own on the
//     last stage's final hidden states with its own replicated parameters
//     (the reward model's scalar head);
//   - Options.Adapt: change the model before the optimizer sees it (LoRA).
//
// Save and Restore cover all of them: a Source set before Restore is put
// back at the checkpoint's step (Seeker, or by replaying Next), and a head
// objective's parameters and moments travel in trainer_state.json.
package trainer
