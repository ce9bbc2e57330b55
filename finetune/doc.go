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
// ChatPrompt renders the context turns and opens the assistant's for
// generation (strand generate --chat).
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
//
// # The stages and how they reach the distributed engine
//
//   - SFT: Batches is a trainer.Batches (and trainer.Segmented for packed
//     rows); `strand sft` sets it as trainer.Trainer.Source, so SFT runs on
//     any DP x TP x PP mesh exactly like pre-training.
//   - LoRA: model.GPT.EnableLoRA makes adapters the model's Params with the
//     base frozen; `strand sft/dpo/rm train --lora-rank` enable it through
//     trainer.Options.Adapt, so zeroing, data-parallel reduction, clipping,
//     optimizer state and checkpoints cover only the adapters. The run
//     directory's adapter_config.json (AdapterConfig) names their base;
//     LoadWeights, which every command's --ckpt goes through, loads a plain
//     checkpoint as it is and an adapter checkpoint merged into its base
//     (MergeAdapters), so a LoRA run is usable wherever a model is.
//   - DPO: DPOBatches is both the trainer's Source (pairs of rows) and its
//     trainer.Objective: on the last stage it turns per-token losses into
//     sequence log-probs, the DPO loss against reference log-probs
//     (computed once by LogProbs) and per-token loss weights
//     (model.Acts.SetLossWeights) for the backward.
//   - Reward model: a scalar head r = w . h + b on the final hidden state
//     h of a completion's closing EOS (model.Acts.Hidden), backpropagated
//     through model.Acts.SetHeadGrad. RewardBatches is both the trainer's
//     Source (pairs of rows) and its trainer.HeadObjective (Bradley-Terry
//     on the last stage); the trainer keeps the head replicated on every
//     rank (its gradient summed over DP and PP, clipped with the model's,
//     its own AdamW) and saves it with its moments, so `strand rm train`
//     runs on any DP x TP x PP mesh and resumes. RewardModel scores rows
//     with a trained head in one process (rm score, PPO); RewardTrainer is
//     the one-process (or data-parallel) loop RewardBatches is tested
//     against.
//   - Resume: Batches, DPOBatches and RewardBatches are deterministic in
//     the step (epoch permutations from the seed), so
//     trainer.Trainer.Restore puts them back at the checkpoint's step;
//     DPO's reference log-probs are recomputed from the starting
//     checkpoint.
//   - PPO: PPO samples completions from the policy, scores them with a
//     frozen reward model, penalizes the per-token KL to a frozen reference,
//     estimates advantages with GAE from a value model, and updates policy
//     (clipped surrogate, through loss weights) and value model (clipped
//     value loss, through a head gradient). Each of the four models runs
//     on a trainer.Trainer over one communicator set (trainer.Comms):
//     sampling, log-probs, values and scores are the trainers' Forward
//     passes, and each PPO epoch is a TrainStep of the policy (the clipped
//     surrogate as a trainer.Objective on the per-token losses) and of the
//     value model (the clipped value loss as a trainer.HeadObjective), so
//     gradient reduction, the global norm and clipping, AdamW and the
//     pipeline executor are the trainer's. NewPPO runs in one process;
//     NewPPOParallel runs data-, tensor- and pipeline-parallel
//     (`strand ppo --nproc N --dp/--tp/--pp`): each DP rank samples and
//     scores its contiguous share of the step's prompts, completion i
//     drawn from a generator seeded by (seed, step, i) with i the global
//     prompt index, so no layout changes what is sampled; the advantages
//     are whitened with global statistics (float64 sums over DP) and the
//     losses are sums over tokens divided by the global token count, so
//     every rank takes the same step; under TP the policy's
//     vocabulary-split logits are gathered for sampling. Under PP every
//     rank holds the same stage of all four models (reward and value model
//     from NewStageRewardModel); each pass walks the rank's rows through
//     the stages in PPOConfig.Micro micro-batches (`strand ppo
//     --microbatches`) by GPipe's program; the last stage samples (tokens
//     broadcast to the others), scores and computes advantages and losses;
//     every rank returns the last stage's statistics. Statistics and
//     weights match the single process within float rounding. PPO.Save and
//     PPO.Restore write and read a full checkpoint in any layout: the
//     policy as a normal model checkpoint with its moments (loadable by
//     eval, generate, sft --ckpt), value/ with the value model, its head
//     and moments (itself a reward-model checkpoint), and the step, the
//     value head's moments and the caller's state in trainer_state.json.
//     ReshardPPO (`strand ckpt reshard` on a PPO checkpoint) rewrites policy
//     and value/ for another --tp/--pp and recomputes value/'s checksums,
//     so Restore accepts the result; checkpoint.Reshard alone refuses a
//     checkpoint with value/ rather than drop it.
//     A LoRA policy (model.GPT.EnableLoRA before NewPPOParallel) trains
//     only its adapters; the reference stays the frozen base.
//   - Multiple choice: ScoreChoices ranks each question's choices by their
//     log-likelihood given the context (summed and per token).
//
// Every reader of JSONL (ReadJSONL, ReadChoices) reports malformed lines
// by line number and, under the Skip policy, counts them: Records +
// Skipped + Blank == Lines.
package finetune
