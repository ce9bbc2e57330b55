package hf

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/strand-ml/strand/atomicfile"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/safetensors"
)

// ExportOptions say how Export writes a model.
type ExportOptions struct {
	// ModelType is the family written to config.json; "" picks qwen2 for
	// a model with q/k/v biases, mistral for one with a sliding window,
	// llama otherwise.
	ModelType string
	// DType is the stored precision: "fp32" (default) or "bf16".
	DType string
	// MaxShardBytes, when positive, starts a new shard file before a
	// tensor that would take the current one past it (a tensor larger
	// than the limit gets a shard of its own); the shards are listed in
	// model.safetensors.index.json. Zero writes one model.safetensors.
	MaxShardBytes int64
	// Meta carries bos/eos ids into config.json and generation_config.json.
	Meta Meta
}

// DefaultModelType is the family a config exports as by default.
func DefaultModelType(cfg model.Config) string {
	switch {
	case cfg.QKVBias:
		return "qwen2"
	case cfg.SlidingWindow > 0:
		return "mistral"
	}
	return "llama"
}

// Each calls fn for every Hugging Face tensor of m (which must hold the
// whole model: one process, TP 1) cut from flat, a buffer laid out like
// m's parameters (the parameters themselves, gradients, moments), in the
// order of transformers' state_dict. data is fn's to keep.
func Each(m *model.GPT, flat []float32, fn func(name string, shape []int, data []float32) error) error {
	ps := m.Params
	if m.LoRA != nil {
		ps = m.LoRA.Base
	}
	if len(flat) != len(ps.Data) {
		return fmt.Errorf("hf: buffer of %d values for %d parameters", len(flat), len(ps.Data))
	}
	for _, e := range entries(m.Config) {
		p, ok := ps.Lookup(e.param)
		if !ok || len(p.Data) != model.Numel(p.Shape) {
			return fmt.Errorf("hf: parameter %s is not held whole here (export needs the whole model in one process)", e.param)
		}
		out := make([]float32, model.Numel(e.shape))
		e.move(flat[p.Offset:p.Offset+p.Size()], out, false)
		if err := fn(e.name, e.shape, out); err != nil {
			return err
		}
	}
	return nil
}

// Export writes m (the whole model in this process) into dir as a Hugging
// Face directory: config.json, generation_config.json when eos ids are
// known, and model.safetensors or shards with their index.
func Export(dir string, m *model.GPT, opt ExportOptions) error {
	mt := opt.ModelType
	if mt == "" {
		mt = DefaultModelType(m.Config)
	}
	var dtype string
	var size int64
	switch opt.DType {
	case "", "fp32":
		dtype, size = "float32", 4
	case "bf16":
		dtype, size = "bfloat16", 2
	default:
		return fmt.Errorf("hf export: dtype %q is not one of fp32, bf16", opt.DType)
	}
	cfgJSON, err := ConfigJSON(m.Config, mt, dtype, opt.Meta)
	if err != nil {
		return fmt.Errorf("hf export: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("hf export: %w", err)
	}
	// plan the shards from the sizes alone
	es := entries(m.Config)
	shardOf := make([]int, len(es))
	var cur, total int64
	n := 0
	for i, e := range es {
		b := int64(model.Numel(e.shape)) * size
		if opt.MaxShardBytes > 0 && cur > 0 && cur+b > opt.MaxShardBytes {
			n++
			cur = 0
		}
		shardOf[i] = n
		cur += b
		total += b
	}
	shards := n + 1
	fileName := func(i int) string {
		if shards == 1 {
			return SingleFile
		}
		return fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, shards)
	}
	// write each shard, building only its tensors
	var batch []safetensors.Tensor
	shard, i := 0, 0
	weightMap := map[string]string{}
	flush := func() error {
		err := safetensors.Write(filepath.Join(dir, fileName(shard)), batch, map[string]string{"format": "pt"})
		batch = nil
		return err
	}
	err = Each(m, baseParams(m).Data, func(name string, shape []int, data []float32) error {
		if shardOf[i] != shard {
			if err := flush(); err != nil {
				return err
			}
			shard = shardOf[i]
		}
		i++
		weightMap[name] = fileName(shard)
		if dtype == "bfloat16" {
			batch = append(batch, safetensors.BF16Tensor(name, shape, data))
		} else {
			batch = append(batch, safetensors.F32Tensor(name, shape, data))
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return fmt.Errorf("hf export: %w", err)
	}
	if shards > 1 {
		idx := index{Metadata: map[string]any{"total_size": total}, WeightMap: weightMap}
		if err := writeJSON(filepath.Join(dir, IndexFile), idx); err != nil {
			return err
		}
	}
	if err := writeJSON(filepath.Join(dir, "config.json"), cfgJSON); err != nil {
		return err
	}
	if len(opt.Meta.EOS) > 0 || opt.Meta.BOS != nil {
		gen := map[string]any{"_from_model_config": true}
		if opt.Meta.BOS != nil {
			gen["bos_token_id"] = *opt.Meta.BOS
		}
		if len(opt.Meta.EOS) == 1 {
			gen["eos_token_id"] = opt.Meta.EOS[0]
		} else if len(opt.Meta.EOS) > 1 {
			gen["eos_token_id"] = opt.Meta.EOS
		}
		if err := writeJSON(filepath.Join(dir, "generation_config.json"), gen); err != nil {
			return err
		}
	}
	return nil
}

func writeJSON(path string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("hf export %s: %w", path, err)
	}
	if err := atomicfile.WriteBytes(path, append(raw, '\n')); err != nil {
		return fmt.Errorf("hf export: %w", err)
	}
	return nil
}

// baseParams are m's model parameters (the frozen base under LoRA).
func baseParams(m *model.GPT) *model.Params {
	if m.LoRA != nil {
		return m.LoRA.Base
	}
	return m.Params
}

// ParseSize reads a shard size as transformers' max_shard_size does: a
// number of bytes, or one with a unit (KB, MB, GB: powers of 1000; KiB,
// MiB, GiB: of 1024), e.g. "5GB" or "500MiB". "0" means no limit.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) {
		return 0, fmt.Errorf("shard size %q is not a size like 5GB, 500MiB or a byte count", s)
	}
	return int64(v * float64(mult)), nil
}
