package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/finetune"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
)

// runLoRAMerge folds trained adapters into their base checkpoint and
// writes a plain model checkpoint.
func runLoRAMerge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("lora merge", stderr)
	adapters := fs.String("adapters", "", "LoRA run directory or checkpoint (from strand sft/dpo/rm train/ppo --lora-rank)")
	base := fs.String("ckpt", "", "base checkpoint (default: the one recorded with the adapters)")
	out := fs.String("out", "", "run directory for the merged checkpoint (new or empty)")
	overwrite := fs.Bool("overwrite", false, "replace the checkpoints of a non-empty --out")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *adapters == "" || *out == "" {
		return usageError{"lora merge: --adapters and --out are required"}
	}
	if err := checkOutDir(*out, *overwrite); err != nil {
		return err
	}
	ac, err := finetune.ReadAdapterConfig(*adapters)
	if err != nil {
		return err
	}
	adir, err := resolveCheckpoint(*adapters, stderr)
	if err != nil {
		return err
	}
	if *base == "" {
		*base = ac.Base
	}
	if *base == "" {
		return usageError{"lora merge: the adapters were trained on a fresh model; name its base with --ckpt"}
	}
	bdir, err := resolveCheckpoint(*base, stderr)
	if err != nil {
		return err
	}
	cfg, err := readConfig(bdir)
	if err != nil {
		return err
	}
	m, err := model.New(cfg, 1, 1, gemm.New(0))
	if err != nil {
		return err
	}
	if err := finetune.MergeAdapters(bdir, adir, ac.LoRAConfig, m); err != nil {
		return err
	}
	// a reward model trained as adapters (rm train --lora-rank) keeps its
	// scalar head in the trainer state: carry it, so that the merged
	// checkpoint is still a reward model for rm score and ppo --rm
	var state any
	var rs rmState
	if checkpoint.LoadTrainerState(adir, &rs) == nil && len(rs.RewardHead.Weight) > 0 {
		state = rmState{RewardHead: rs.RewardHead}
	}
	if *overwrite {
		if err := os.RemoveAll(filepath.Join(*out, "checkpoints")); err != nil {
			return fmt.Errorf("--overwrite: %w", err)
		}
	}
	path, err := checkpoint.SaveWith(*out, 0, m, nil, state, 1, func(dir string) error { return copyTokenizer(adir, dir) })
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "merged rank-%d adapters from %s into %s: %s\n", ac.Rank, adir, bdir, path)
	return ctx.Err()
}
