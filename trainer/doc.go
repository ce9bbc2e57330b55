// Package trainer runs next-token training: it pulls batches from a
// data.Loader, runs forward and backward over micro-batches, clips the
// global gradient norm, steps AdamW on the learning-rate schedule, and
// reports per-step statistics (loss, tokens/s, MFU).
//
// It is the library entry point for custom training loops too: build a
// Trainer with New, then call Step as often as you like, or drive the model,
// optimizer and loader yourself — Trainer only wires public pieces.
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
