package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/hf"
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
// state come along when src has them. A checkpoint with subdirectories (a
// PPO checkpoint's value/) or holding only LoRA adapters is refused with
// the reason: Reshard would drop what it cannot carry.
func Reshard(src, dst string, tp, pp int) error {
	return ReshardWith(src, dst, tp, pp, ReshardExtra{})
}

// ReshardExtra lets a checkpoint format built on this one (PPO's, with
// its value model in value/) carry its own parts through ReshardWith.
type ReshardExtra struct {
	// Subdirs are the subdirectories of src that Finish carries; any other
	// subdirectory makes ReshardWith refuse.
	Subdirs []string
	// Finish runs on the new checkpoint's temporary directory after the
	// model, moments and trainer state are written, before the commit
	// marker; it writes the extra parts (e.g. with ReshardFiles).
	Finish func(tmp string) error
}

// ReshardWith is Reshard with extra parts: the model of src is resharded
// into a temporary sibling of dst, extra.Finish adds its parts, and only
// then is the checkpoint committed (commit.json) and renamed to dst, so a
// failure anywhere leaves no dst.
func ReshardWith(src, dst string, tp, pp int, extra ReshardExtra) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("reshard: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() && !slices.Contains(extra.Subdirs, e.Name()) {
			return fmt.Errorf("reshard: %s holds %s/, which resharding cannot carry (a PPO checkpoint's value model is carried by strand ckpt reshard, not checkpoint.Reshard)", src, e.Name())
		}
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
	step, err := ReshardFiles(src, tmp, tp, pp)
	if err != nil {
		return err
	}
	if extra.Finish != nil {
		if err := extra.Finish(tmp); err != nil {
			return err
		}
	}
	if err := writeCommit(tmp, step); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// ReshardFiles writes the model of the checkpoint src (and its optimizer
// moments and trainer state, when it has them) for a tp x pp layout into
// the existing directory dir, without a commit marker, and returns the
// checkpoint's step (0 without a trainer state). The trainer state is
// carried verbatim except for "layout", which records the reshard.
func ReshardFiles(src, dir string, tp, pp int) (int, error) {
	cfg, err := ReadConfig(src)
	if err != nil {
		return 0, err
	}
	if err := model.CheckTP(cfg, tp); err != nil {
		return 0, err
	}
	bounds, err := model.StageBounds(cfg.NLayer, pp, nil)
	if err != nil {
		return 0, err
	}
	if err := refuseAdapters(src); err != nil {
		return 0, err
	}
	haveOpt := hasOptimizer(src)
	step := 0
	var st map[string]any
	if err := LoadTrainerState(src, &st); err == nil {
		if s, ok := st["step"].(float64); ok {
			step = int(s)
		}
		st["layout"] = ReshardedLayout(tp, pp)
		if err := WriteTrainerState(dir, st); err != nil {
			return 0, err
		}
	}
	for p := 0; p < pp; p++ {
		for t := 0; t < tp; t++ {
			layout := model.Stage(offlineGroup{t, tp}, bounds, p)
			m, err := model.NewSharded(cfg, layout, 1, 1, gemm.New(1))
			if err != nil {
				return 0, err
			}
			if err := LoadModel(src, m); err != nil {
				return 0, err
			}
			var m1, v1 []float32
			optStep := 0
			if haveOpt {
				n := m.Params.Count()
				m1, v1 = make([]float32, n), make([]float32, n)
				if optStep, err = LoadMoments(src, m, m1, v1); err != nil {
					return 0, err
				}
			}
			if tp == 1 && pp == 1 {
				if err := WriteModel(dir, m); err != nil {
					return 0, err
				}
				if haveOpt {
					opt := &optim.AdamW{M: m1, V: v1, Step: optStep}
					if err := writeOptimizer(dir, m, opt); err != nil {
						return 0, err
					}
				}
				continue
			}
			if err := WriteShard(dir, mesh.Coord{PP: p, TP: t}, m, m1, v1, optStep); err != nil {
				return 0, err
			}
		}
	}
	if tp*pp > 1 {
		if err := WriteIndex(dir, step, mesh.Mesh{DP: 1, TP: tp, PP: pp}, cfg); err != nil {
			return 0, err
		}
	}
	return step, nil
}

// ReshardedLayout is the layout a resharded checkpoint's trainer state
// records.
func ReshardedLayout(tp, pp int) string {
	return fmt.Sprintf("dp=1 tp=%d pp=%d (resharded)", tp, pp)
}

// refuseAdapters refuses a checkpoint holding LoRA adapters (sft, dpo or
// ppo --lora-rank): it has no base weights to reshard, and the adapters'
// configuration lives beside the run, not in the checkpoint.
func refuseAdapters(src string) error {
	tensors, err := Tensors(src)
	if err != nil {
		return fmt.Errorf("reshard: %w", err)
	}
	for name := range tensors {
		if strings.HasSuffix(name, ".lora_A") || strings.HasSuffix(name, ".lora_B") {
			return fmt.Errorf("reshard: %s holds LoRA adapters (%s), not a whole model: adapters load as they are into any layout (--resume, rm score, ppo --rm), or merge them into their base first (strand lora merge)", src, name)
		}
	}
	return nil
}

func hasOptimizer(dir string) bool {
	for _, f := range []string{OptimizerFile, "optim-pp0-tp0.safetensors"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	return false
}

// ExportHFFamily writes the checkpoint src (strand's, sharded or not, or
// a Hugging Face directory) as a Hugging Face Llama-family directory in
// dst (see hf.Export for the options: model_type, dtype, shard size).
func ExportHFFamily(src, dst string, opt hf.ExportOptions) error {
	cfg, err := ReadConfig(src)
	if err != nil {
		return err
	}
	mt := opt.ModelType
	if mt == "" {
		mt = hf.DefaultModelType(cfg)
	}
	if err := hf.Exportable(cfg, mt); err != nil {
		return err
	}
	m, err := model.New(cfg, 1, 1, gemm.New(1))
	if err != nil {
		return err
	}
	if err := LoadModel(src, m); err != nil {
		return err
	}
	if hf.IsDir(src) && len(opt.Meta.EOS) == 0 && opt.Meta.BOS == nil {
		if _, meta, err := hf.ReadConfig(src); err == nil {
			opt.Meta.EOS, opt.Meta.BOS = meta.EOS, meta.BOS
		}
	}
	return hf.Export(dst, m, opt)
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
