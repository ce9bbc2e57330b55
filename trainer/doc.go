// Package trainer runs next-token training: it pulls batches from a
// data.Loader, runs forward and backward over micro-batches, clips the
// global gradient norm, steps AdamW on the learning-rate schedule, and
// reports per-step statistics (loss, tokens/s, MFU).
//
// It is the library entry point for custom training loops too: build a
// Trainer with New, then call Step as often as you like, or drive the model,
// optimizer and loader yourself — Trainer only wires public pieces.
package trainer
