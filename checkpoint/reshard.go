package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
)

// offlineGroup stands for rank `rank` of a TP group of `size` when a shard
// is built offline: it has the shape of a group but cannot communicate.
type offlineGroup struct{ rank, size int }

func (g offlineGroup) Size() int { return g.size }
func (g offlineGroup) Rank() int { return g.rank }
func (g offlineGroup) AllReduceSum(context.Context, []float32) error {
	return errors.New("offline shard cannot communicate")
}
func (g offlineGroup) AllReduceMax(context.Context, []float32) error {
	return errors.New("offline shard cannot communicate")
}

// Reshard rewrites the checkpoint src for a tp x pp layout into the new
// checkpoint directory dst (which must not exist). tp = pp = 1 gives the
// single-file Hugging Face style layout. Optimizer moments and trainer
// state come along when src has them.
func Reshard(src, dst string, tp, pp int) error {
	cfg, err := ReadConfig(src)
	if err != nil {
		return err
	}
	if err := model.CheckTP(cfg, tp); err != nil {
		return err
	}
	bounds, err := model.StageBounds(cfg.NLayer, pp, nil)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("reshard: %s already exists", dst)
	}
	parent := filepath.Dir(filepath.Clean(dst))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-reshard-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	haveOpt := hasOptimizer(src)
	step := 0
	var st map[string]any
	if err := LoadTrainerState(src, &st); err == nil {
		if s, ok := st["step"].(float64); ok {
			step = int(s)
		}
		st["layout"] = fmt.Sprintf("dp=1 tp=%d pp=%d (resharded)", tp, pp)
		if err := WriteTrainerState(tmp, st); err != nil {
			return err
		}
	}
	for p := 0; p < pp; p++ {
		for t := 0; t < tp; t++ {
			layout := model.Stage(offlineGroup{t, tp}, bounds, p)
			m, err := model.NewSharded(cfg, layout, 1, 1, gemm.New(1))
			if err != nil {
				return err
			}
			if err := LoadModel(src, m); err != nil {
				return err
			}
			var m1, v1 []float32
			optStep := 0
			if haveOpt {
				n := m.Params.Count()
				m1, v1 = make([]float32, n), make([]float32, n)
				if optStep, err = LoadMoments(src, m, m1, v1); err != nil {
					return err
				}
			}
			if tp == 1 && pp == 1 {
				if err := WriteModel(tmp, m); err != nil {
					return err
				}
				if haveOpt {
					opt := &optim.AdamW{M: m1, V: v1, Step: optStep}
					if err := writeOptimizer(tmp, m, opt); err != nil {
						return err
					}
				}
				continue
			}
			if err := WriteShard(tmp, mesh.Coord{PP: p, TP: t}, m, m1, v1, optStep); err != nil {
				return err
			}
		}
	}
	if tp*pp > 1 {
		if err := WriteIndex(tmp, step, mesh.Mesh{DP: 1, TP: tp, PP: pp}, cfg); err != nil {
			return err
		}
	}
	if err := writeCommit(tmp, step); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

func hasOptimizer(dir string) bool {
	for _, f := range []string{OptimizerFile, "optim-pp0-tp0.safetensors"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	return false
}

// ExportHF writes the checkpoint src as a Hugging Face GPT-2 model
// directory (config.json + model.safetensors with transformers' names) in
// dst, loadable by GPT2LMHeadModel. Only learned-position GELU models with
// LayerNorm map onto GPT-2.
func ExportHF(src, dst string) error {
	cfg, err := ReadConfig(src)
	if err != nil {
		return err
	}
	if cfg.Position != model.PosLearned || cfg.Norm != model.LayerNorm || cfg.Activation == model.SwiGLU {
		return fmt.Errorf("export hf-gpt2: the model (position %s, norm %s, activation %s) is not a GPT-2 architecture", cfg.Position, cfg.Norm, cfg.Activation)
	}
	m, err := model.New(cfg, 1, 1, gemm.New(1))
	if err != nil {
		return err
	}
	if err := LoadModel(src, m); err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	return WriteModel(dst, m)
}
