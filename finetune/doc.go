// Package finetune turns instruction and preference data into training
// batches and holds the fine-tuning losses.
//
// The path of supervised fine-tuning (SFT):
//
//	JSONL file -> ReadJSONL (one Record per line; bad lines reported with
//	their line number, skipped or fatal by Policy) -> Encode (template +
//	tokenizer -> Example: tokens and which of them are trained) -> Pack
//	(rows of Seq inputs/targets/segment ids; prompt positions get
//	model.IgnoreIndex) -> Batches (each data-parallel rank's slice of every
//	global batch; a trainer.Batches with segments) -> trainer.Trainer.
//
// # Templates
//
// A {"prompt", "response"} record is rendered verbatim: the prompt's tokens,
// then the response's tokens, then the end-of-sequence token. Only the
// response and the end token are trained (loss positions); the prompt is
// context. The caller owns the prompt format.
//
// A {"messages": [{"role", "content"}, ...]} record uses the chat template
//
//	<|system|>\n{content}\n      (roles system, user: context)
//	<|user|>\n{content}\n
//	<|assistant|>\n{content}EOS  (assistant content and EOS are trained)
//
// where the role headers are plain text (so any tokenizer, even the byte
// tokenizer, can render them) and EOS is the tokenizer's <|endoftext|>
// special token, or byte 0 (NUL) for a tokenizer without it (the byte
// tokenizer uses every id 0-255 for bytes; NUL never occurs in text).
//
// # Packing
//
// Pack places several examples in one row of Seq positions when they fit.
// Each example gets its own segment id, and the model (model.Acts.SetSegments)
// keeps attention inside a segment and restarts learned positions, so a
// packed row computes exactly what the examples would alone. The rest of
// a row is padding: EOS tokens with ignored targets in a segment of their own.
//
// # Losses
//
// The SFT loss is the trainer's: the mean cross-entropy over every
// non-ignored target of the global batch. BradleyTerry and DPO are the
// pairwise losses of reward modelling and direct preference optimization,
// as functions of per-sequence scores, with their gradients.
package finetune
