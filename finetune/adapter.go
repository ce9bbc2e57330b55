package finetune

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/strand-ml/strand/atomicfile"
	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/model"
)

// This file is the LoRA adapter format of a run directory and the one way
// every command loads a checkpoint's weights, adapters or not.
//
// A LoRA run (sft, dpo, rm train or ppo with --lora-rank) writes
// checkpoints that hold only the adapters (tensors NAME.lora_A [in, r] and
// NAME.lora_B [r, out]); adapter_config.json beside checkpoints/ records
// their configuration and the base checkpoint they were trained on.

// AdapterConfigFile sits in a LoRA run directory, next to checkpoints/.
const AdapterConfigFile = "adapter_config.json"

// AdapterConfig is adapter_config.json: PEFT's field names for the LoRA
// configuration, and the base checkpoint ("" when the adapters were
// trained on a freshly initialized model).
type AdapterConfig struct {
	model.LoRAConfig
	Base string `json:"base_checkpoint"`
}

// WriteAdapterConfig writes adapter_config.json into the run directory.
func WriteAdapterConfig(run string, c AdapterConfig) error {
	raw, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(filepath.Join(run, AdapterConfigFile), append(raw, '\n'))
}

// ReadAdapterConfig finds adapter_config.json for an adapter path: a run
// directory or one of its checkpoints (run/checkpoints/step_N).
func ReadAdapterConfig(path string) (AdapterConfig, error) {
	var c AdapterConfig
	for _, dir := range []string{path, filepath.Dir(filepath.Dir(path))} {
		name := filepath.Join(dir, AdapterConfigFile)
		raw, err := os.ReadFile(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return c, err
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return c, fmt.Errorf("%s: %w", name, err)
		}
		if err := c.Validate(); err != nil {
			return c, fmt.Errorf("%s: %w", name, err)
		}
		return c, nil
	}
	return c, fmt.Errorf("%s: no %s (not a LoRA run of strand sft/dpo/rm train/ppo --lora-rank)", path, AdapterConfigFile)
}

// IsAdapterCheckpoint says whether the checkpoint in dir holds LoRA
// adapters (tensors NAME.lora_A / NAME.lora_B) rather than a whole model.
func IsAdapterCheckpoint(dir string) (bool, error) {
	tensors, err := checkpoint.Tensors(dir)
	if err != nil {
		return false, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	for name := range tensors {
		if strings.HasSuffix(name, ".lora_A") || strings.HasSuffix(name, ".lora_B") {
			return true, nil
		}
	}
	return false, nil
}

// AdapterBase is the base checkpoint of the adapters in dir, resolved
// (a run directory becomes its newest committed checkpoint).
func AdapterBase(dir string) (string, AdapterConfig, error) {
	ac, err := ReadAdapterConfig(dir)
	if err != nil {
		return "", ac, fmt.Errorf("%s holds LoRA adapters: %w", dir, err)
	}
	if ac.Base == "" {
		return "", ac, fmt.Errorf("%s holds LoRA adapters trained on a fresh model: no base checkpoint to merge them into", dir)
	}
	base, _, err := checkpoint.Resolve(ac.Base)
	if err != nil {
		return "", ac, fmt.Errorf("%s holds LoRA adapters; their base: %w", dir, err)
	}
	return base, ac, nil
}

// LoadWeights loads the model weights of the checkpoint dir into g, which
// may hold any shard of any layout. A checkpoint of LoRA adapters is loaded
// onto the base checkpoint named in its run's adapter_config.json and
// merged into it, so g ends a plain model either way. The reward head of
// a reward model and PPO's value model are not weights of g: their
// commands load them from the trainer state and value/.
func LoadWeights(dir string, g *model.GPT) error { return loadWeights(dir, g, 0) }

// maxAdapterChain bounds adapters trained on adapters (a LoRA run whose
// --ckpt was itself a LoRA run): each base is loaded, merged, in turn.
const maxAdapterChain = 8

func loadWeights(dir string, g *model.GPT, depth int) error {
	if depth > maxAdapterChain {
		return fmt.Errorf("%s: more than %d LoRA runs stacked on each other (a cycle of base checkpoints?)", dir, maxAdapterChain)
	}
	lora, err := IsAdapterCheckpoint(dir)
	if err != nil {
		return err
	}
	if !lora {
		return checkpoint.LoadModel(dir, g)
	}
	base, ac, err := AdapterBase(dir)
	if err != nil {
		return err
	}
	return mergeAdapters(base, dir, ac.LoRAConfig, g, depth)
}

// MergeAdapters loads the base checkpoint into g, the adapters of adapters
// (configured by lc) on top, and folds them in: W += alpha/r * A @ B.
// The base may itself be a LoRA run's checkpoint (merged first).
func MergeAdapters(base, adapters string, lc model.LoRAConfig, g *model.GPT) error {
	return mergeAdapters(base, adapters, lc, g, 0)
}

func mergeAdapters(base, adapters string, lc model.LoRAConfig, g *model.GPT, depth int) error {
	if g.LoRA != nil {
		return fmt.Errorf("merge adapters %s: the model already has adapters", adapters)
	}
	if err := loadWeights(base, g, depth+1); err != nil {
		return fmt.Errorf("%s holds LoRA adapters; their base: %w", adapters, err)
	}
	if err := g.EnableLoRA(lc, 0); err != nil {
		return err
	}
	if err := checkpoint.LoadModel(adapters, g); err != nil {
		return fmt.Errorf("adapters %s: %w", adapters, err)
	}
	return g.MergeLoRA()
}
