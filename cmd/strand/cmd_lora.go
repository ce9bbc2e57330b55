package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/strand-ml/strand/atomicfile"
	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
)

// adapterConfigFile sits in a LoRA run directory (next to checkpoints/,
// whose checkpoints hold only the adapters): the adapter configuration
// and the base checkpoint they were trained on.
const adapterConfigFile = "adapter_config.json"

type adapterConfig struct {
	model.LoRAConfig
	Base string `json:"base_checkpoint"` // "" when trained on a fresh model
}

func writeAdapterConfig(run string, c adapterConfig) error {
	raw, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(filepath.Join(run, adapterConfigFile), append(raw, '\n'))
}

// readAdapterConfig finds adapter_config.json for an adapter path: a run
// directory or one of its checkpoints (run/checkpoints/step_N).
func readAdapterConfig(path string) (adapterConfig, error) {
	var c adapterConfig
	for _, dir := range []string{path, filepath.Dir(filepath.Dir(path))} {
		raw, err := os.ReadFile(filepath.Join(dir, adapterConfigFile))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return c, err
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return c, fmt.Errorf("%s: %w", filepath.Join(dir, adapterConfigFile), err)
		}
		return c, c.Validate()
	}
	return c, fmt.Errorf("%s: no %s (not a LoRA run of strand sft/dpo --lora-rank)", path, adapterConfigFile)
}

// runLoRAMerge folds trained adapters into their base checkpoint and
// writes a plain model checkpoint.
func runLoRAMerge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("lora merge", stderr)
	adapters := fs.String("adapters", "", "LoRA run directory or checkpoint (from strand sft/dpo --lora-rank)")
	base := fs.String("ckpt", "", "base checkpoint (default: the one recorded with the adapters)")
	out := fs.String("out", "", "run directory for the merged checkpoint")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *adapters == "" || *out == "" {
		return usageError{"lora merge: --adapters and --out are required"}
	}
	ac, err := readAdapterConfig(*adapters)
	if err != nil {
		return err
	}
	adir, warns, err := checkpoint.Resolve(*adapters)
	for _, w := range warns {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if err != nil {
		return err
	}
	if *base == "" {
		*base = ac.Base
	}
	if *base == "" {
		return usageError{"lora merge: the adapters were trained on a fresh model; name its base with --ckpt"}
	}
	bdir, warns, err := checkpoint.Resolve(*base)
	for _, w := range warns {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if err != nil {
		return err
	}
	cfg, err := checkpoint.ReadConfig(bdir)
	if err != nil {
		return err
	}
	m, err := model.New(cfg, 1, 1, gemm.New(0))
	if err != nil {
		return err
	}
	if err := checkpoint.LoadModel(bdir, m); err != nil {
		return err
	}
	if err := m.EnableLoRA(ac.LoRAConfig, 0); err != nil {
		return err
	}
	if err := checkpoint.LoadModel(adir, m); err != nil {
		return fmt.Errorf("adapters: %w", err)
	}
	if err := m.MergeLoRA(); err != nil {
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
	path, err := checkpoint.SaveWith(*out, 0, m, nil, state, 1, func(dir string) error { return copyTokenizer(adir, dir) })
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "merged rank-%d adapters from %s into %s: %s\n", ac.Rank, adir, bdir, path)
	return ctx.Err()
}
