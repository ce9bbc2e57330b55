package checkpoint

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/strand-ml/strand/atomicfile"
	"github.com/strand-ml/strand/hf"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
	"github.com/strand-ml/strand/safetensors"
)

// File names inside a checkpoint directory.
const (
	ConfigFile    = "config.json"
	ModelFile     = "model.safetensors"
	OptimizerFile = "optimizer.safetensors"
	TrainerFile   = "trainer_state.json"
	CommitFile    = "commit.json"
	checkpointDir = "checkpoints"
	stepPrefix    = "step_"
)

// commitRecord is the content of commit.json.
type commitRecord struct {
	Format int               `json:"format"`
	Step   int               `json:"step"`
	Files  map[string]string `json:"sha256"`
}

// Save writes a checkpoint for step under run/checkpoints/step_NNNNNN and
// returns its path. opt and trainerState may be nil (a model-only
// checkpoint). keep > 0 removes all but the newest keep checkpoints after a
// successful save.
func Save(run string, step int, m *model.GPT, opt *optim.AdamW, trainerState any, keep int) (string, error) {
	return SaveWith(run, step, m, opt, trainerState, keep, nil)
}

// SaveWith is Save with extra, when not nil, writing more files (the
// run's tokenizer) into the checkpoint directory before it is sealed, so
// commit.json covers them too.
func SaveWith(run string, step int, m *model.GPT, opt *optim.AdamW, trainerState any, keep int, extra func(dir string) error) (string, error) {
	parent := filepath.Join(run, checkpointDir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	final := filepath.Join(parent, fmt.Sprintf("%s%06d", stepPrefix, step))
	tmp, err := os.MkdirTemp(parent, ".tmp-"+filepath.Base(final)+"-")
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp makes it private
		os.RemoveAll(tmp)
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	cleanup := func(err error) (string, error) {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("checkpoint step %d: %w", step, err)
	}
	if err := WriteModel(tmp, m); err != nil {
		return cleanup(err)
	}
	if opt != nil {
		if err := writeOptimizer(tmp, m, opt); err != nil {
			return cleanup(err)
		}
	}
	if trainerState != nil {
		raw, err := json.MarshalIndent(trainerState, "", "  ")
		if err != nil {
			return cleanup(err)
		}
		if err := atomicfile.WriteBytes(filepath.Join(tmp, TrainerFile), append(raw, '\n')); err != nil {
			return cleanup(err)
		}
	}
	if extra != nil {
		if err := extra(tmp); err != nil {
			return cleanup(err)
		}
	}
	if err := writeCommit(tmp, step); err != nil {
		return cleanup(err)
	}
	// Replacing an existing checkpoint of the same step: move it aside first
	// so the rename below cannot fail half-way.
	if _, err := os.Stat(final); err == nil {
		old := final + ".old"
		os.RemoveAll(old)
		if err := os.Rename(final, old); err != nil {
			return cleanup(err)
		}
		defer os.RemoveAll(old)
	}
	if err := os.Rename(tmp, final); err != nil {
		return cleanup(err)
	}
	if err := syncDir(parent); err != nil {
		return "", fmt.Errorf("checkpoint step %d: %w", step, err)
	}
	if keep > 0 {
		if err := rotate(parent, keep); err != nil {
			return final, err
		}
	}
	return final, nil
}

// writeOptimizer writes optimizer.safetensors: AdamW moments by parameter
// name and the step count.
func writeOptimizer(dir string, m *model.GPT, opt *optim.AdamW) error {
	tensors := append(m.Params.TensorsOf("exp_avg.", opt.M), m.Params.TensorsOf("exp_avg_sq.", opt.V)...)
	meta := map[string]string{"step": strconv.Itoa(opt.Step)}
	return safetensors.Write(filepath.Join(dir, OptimizerFile), tensors, meta)
}

// WriteModel writes config.json and model.safetensors into dir.
func WriteModel(dir string, m *model.GPT) error {
	raw, err := json.MarshalIndent(hfConfig(m.Config), "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(filepath.Join(dir, ConfigFile), append(raw, '\n')); err != nil {
		return err
	}
	return safetensors.Write(filepath.Join(dir, ModelFile), m.Params.Tensors("", false), map[string]string{"format": "pt"})
}

// hfConfig adds the keys Hugging Face's GPT2Config expects.
func hfConfig(c model.Config) map[string]any {
	raw, _ := json.Marshal(c)
	out := map[string]any{}
	_ = json.Unmarshal(raw, &out)
	out["model_type"] = "gpt2"
	out["architectures"] = []string{"GPT2LMHeadModel"}
	out["n_ctx"] = c.NPositions
	if c.MLPHidden == 0 {
		out["n_inner"] = nil
	}
	return out
}

func writeCommit(dir string, step int) error {
	rec := commitRecord{Format: 1, Step: step, Files: map[string]string{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() || e.Name() == CommitFile {
			continue
		}
		sum, err := fileSHA256(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		rec.Files[e.Name()] = sum
	}
	raw, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(filepath.Join(dir, CommitFile), append(raw, '\n'))
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// rotate keeps the newest keep committed checkpoints in parent.
func rotate(parent string, keep int) error {
	steps, err := committedSteps(parent)
	if err != nil {
		return err
	}
	for i := 0; i+keep < len(steps); i++ {
		if err := os.RemoveAll(steps[i].path); err != nil {
			return fmt.Errorf("checkpoint rotation: %w", err)
		}
	}
	return nil
}

type stepDir struct {
	step int
	path string
}

// committedSteps lists the step_N directories under parent (a run's
// checkpoints/) that have a commit.json, oldest first.
func committedSteps(parent string) ([]stepDir, error) {
	all, err := listSteps(parent)
	if err != nil {
		return nil, err
	}
	var out []stepDir
	for _, s := range all {
		if s.Committed {
			out = append(out, stepDir{s.Step, s.Path})
		}
	}
	return out, nil
}

// ErrNoCheckpoint means a run directory has no committed checkpoint.
var ErrNoCheckpoint = errors.New("no committed checkpoint")

// Resolve turns a checkpoint directory or a run directory into the
// checkpoint directory to load: a run directory means its newest committed
// checkpoint that verifies; a checkpoint that fails verification is skipped
// (with the reason in the returned warnings) in favour of the previous one.
func Resolve(path string) (dir string, warnings []string, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	if !fi.IsDir() {
		return "", nil, fmt.Errorf("checkpoint %s: not a directory", path)
	}
	if isCheckpointDir(path) {
		return path, nil, Verify(path)
	}
	parent := filepath.Join(path, checkpointDir)
	if _, err := os.Stat(parent); err != nil {
		return "", nil, fmt.Errorf("checkpoint %s: neither a checkpoint (no %s) nor a run directory (no %s/)", path, ModelFile, checkpointDir)
	}
	steps, err := committedSteps(parent)
	if err != nil {
		return "", nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	for i := len(steps) - 1; i >= 0; i-- {
		if err := Verify(steps[i].path); err != nil {
			warnings = append(warnings, fmt.Sprintf("skipping %s: %v", steps[i].path, err))
			continue
		}
		return steps[i].path, warnings, nil
	}
	return "", warnings, fmt.Errorf("checkpoint %s: %w", path, ErrNoCheckpoint)
}

func isCheckpointDir(p string) bool {
	for _, f := range []string{ModelFile, IndexFile, hf.IndexFile} {
		if _, err := os.Stat(filepath.Join(p, f)); err == nil {
			return true
		}
	}
	return false
}

// Verify checks commit.json's checksums, when the directory has one.
func Verify(dir string) error {
	raw, err := os.ReadFile(filepath.Join(dir, CommitFile))
	if errors.Is(err, os.ErrNotExist) {
		if strings.HasPrefix(filepath.Base(dir), stepPrefix) {
			return fmt.Errorf("%s has no %s: the checkpoint was never committed", dir, CommitFile)
		}
		return nil // a foreign (e.g. Hugging Face) model directory
	}
	if err != nil {
		return err
	}
	var rec commitRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dir, CommitFile), err)
	}
	names := make([]string, 0, len(rec.Files))
	for n := range rec.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		sum, err := fileSHA256(filepath.Join(dir, n))
		if err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(dir, n), err)
		}
		if sum != rec.Files[n] {
			return fmt.Errorf("%s: checksum mismatch (file corrupted or truncated)", filepath.Join(dir, n))
		}
	}
	return nil
}

// ReadConfig reads a checkpoint's config.json (Hugging Face or strand).
// A Hugging Face Llama-family directory (model_type llama, qwen2,
// mistral) is read by package hf; any other model_type but gpt2 is
// refused by name.
func ReadConfig(dir string) (model.Config, error) {
	if hf.IsDir(dir) {
		c, _, err := hf.ReadConfig(dir)
		return c, err
	}
	raw, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		return model.Config{}, fmt.Errorf("checkpoint config: %w", err)
	}
	var c model.Config
	if err := json.Unmarshal(raw, &c); err != nil {
		return model.Config{}, fmt.Errorf("checkpoint config %s: %w", filepath.Join(dir, ConfigFile), err)
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return model.Config{}, fmt.Errorf("checkpoint config %s: %w", filepath.Join(dir, ConfigFile), err)
	}
	return c, nil
}

// LoadModel copies the parameters of the checkpoint in dir into m, which
// may hold any shard of any layout: each logical tensor is assembled from
// the checkpoint and m keeps its part.
//
// A Hugging Face Llama-family directory is streamed in by hf.Load.
func LoadModel(dir string, m *model.GPT) error {
	if hf.IsDir(dir) {
		return hf.Load(dir, m)
	}
	idx, err := ReadIndex(dir)
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	if idx != nil {
		if err := loadSharded(dir, idx, m, "", m.Params.Data); err != nil {
			return fmt.Errorf("checkpoint %s: %w", dir, err)
		}
		return nil
	}
	path := filepath.Join(dir, ModelFile)
	f, err := safetensors.Read(path)
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	if err := m.Params.Load(f, ""); err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return nil
}

// LoadMoments fills m1 and v1 (laid out like m's parameters) with the
// checkpoint's AdamW moments and returns the optimizer's step count.
func LoadMoments(dir string, m *model.GPT, m1, v1 []float32) (int, error) {
	idx, err := ReadIndex(dir)
	if err != nil {
		return 0, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	if idx == nil {
		opt := &optim.AdamW{M: m1, V: v1}
		err := LoadOptimizer(dir, m, opt)
		return opt.Step, err
	}
	if err := loadSharded(dir, idx, m, "exp_avg.", m1); err != nil {
		return 0, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	if err := loadSharded(dir, idx, m, "exp_avg_sq.", v1); err != nil {
		return 0, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	of := ""
	for _, t := range idx.Tensors {
		if len(t.Pieces) > 0 {
			of = optimFileOf(t.Pieces[0].File)
			break
		}
	}
	_, meta, err := safetensors.Inspect(filepath.Join(dir, of))
	if err != nil {
		return 0, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	step, err := strconv.Atoi(meta["step"])
	if err != nil {
		return 0, fmt.Errorf("checkpoint %s: %s has no step: %w", dir, of, err)
	}
	return step, nil
}

// LoadOptimizer restores AdamW moments and step count for m's parameters.
func LoadOptimizer(dir string, m *model.GPT, opt *optim.AdamW) error {
	path := filepath.Join(dir, OptimizerFile)
	f, err := safetensors.Read(path)
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	step, err := strconv.Atoi(f.Metadata()["step"])
	if err != nil {
		return fmt.Errorf("checkpoint %s: bad step metadata: %w", path, err)
	}
	if err := m.Params.LoadInto(f, "exp_avg.", opt.M); err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	if err := m.Params.LoadInto(f, "exp_avg_sq.", opt.V); err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	opt.Step = step
	return nil
}

// LoadTrainerState decodes trainer_state.json into v.
func LoadTrainerState(dir string, v any) error {
	path := filepath.Join(dir, TrainerFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return nil
}

// WriteTrainerState writes trainer_state.json into dir.
func WriteTrainerState(dir string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(filepath.Join(dir, TrainerFile), append(raw, '\n'))
}
