// Package checkpoint saves and restores training state as directories a
// newcomer can open with standard tools:
//
//	RUN/checkpoints/step_000200/
//	    config.json            model architecture (Hugging Face GPT-2 keys)
//	    model.safetensors      parameters by Hugging Face GPT-2 name, [in, out] linears
//	    optimizer.safetensors  AdamW moments: exp_avg.NAME, exp_avg_sq.NAME
//	    trainer_state.json     step, data position, seeds, schedule
//	    commit.json            written last: the SHA-256 of every file above
//
// A checkpoint is written into a temporary sibling directory, every file is
// fsynced, commit.json is written last, and the directory is renamed into
// place, so a crash at any point leaves either the complete checkpoint or
// nothing. Loading verifies commit.json's checksums, so a truncated or
// bit-flipped file is refused with an error naming it. A directory with a
// model.safetensors but no commit.json (for example one written by PyTorch
// or Hugging Face) loads as a plain model, without checksums.
package checkpoint
