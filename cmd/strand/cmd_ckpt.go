package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/finetune"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/hf"
	"github.com/strand-ml/strand/model"
)

// resolveCheckpoint turns a checkpoint or run directory into the checkpoint
// to load (checkpoint.Resolve), printing why newer checkpoints were skipped.
func resolveCheckpoint(path string, stderr io.Writer) (string, error) {
	dir, warns, err := checkpoint.Resolve(path)
	for _, w := range warns {
		fmt.Fprintln(stderr, "warning:", w)
	}
	return dir, err
}

// checkpointConfig resolves path and reads its model configuration, with
// the RoPE-scaling overrides of the command line applied and checked.
func checkpointConfig(path string, scaling *ropeScalingFlags, stderr io.Writer) (string, model.Config, error) {
	dir, err := resolveCheckpoint(path, stderr)
	if err != nil {
		return "", model.Config{}, err
	}
	cfg, err := readConfig(dir)
	if err != nil {
		return "", cfg, err
	}
	if scaling != nil {
		scaling.apply(&cfg)
		if err := cfg.Validate(); err != nil {
			return "", cfg, usageError{err.Error()}
		}
	}
	return dir, cfg, nil
}

// resolveArg turns the single positional DIR argument into a checkpoint.
func resolveArg(fsArgs []string, stderr io.Writer) (string, error) {
	if len(fsArgs) != 1 {
		return "", usageError{"expected one checkpoint or run directory"}
	}
	return resolveCheckpoint(fsArgs[0], stderr)
}

// splitDir lets the DIR argument come before or after the flags.
func splitDir(args []string) (dir []string, flags []string) {
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		return args[:1], args[1:]
	}
	return nil, args
}

func runCkptInspect(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newDirFlags("ckpt inspect", stderr)
	pos, rest := splitDir(args)
	if err := parseDirFlags(fs, rest); err != nil {
		return err
	}
	dir, err := resolveArg(append(pos, fs.Args()...), stderr)
	if err != nil {
		return err
	}
	cfg, err := readConfig(dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "checkpoint %s\n", dir)
	var st map[string]any
	if checkpoint.LoadTrainerState(dir, &st) == nil {
		fmt.Fprintf(stdout, "step %v, written under %v\n", st["step"], st["layout"])
	}
	if hf.IsDir(dir) {
		_, meta, _ := hf.ReadConfig(dir)
		fmt.Fprintf(stdout, "Hugging Face %s directory (eos ids %v)\n", meta.ModelType, meta.EOS)
	} else {
		idx, err := checkpoint.ReadIndex(dir)
		if err != nil {
			return err
		}
		if idx != nil {
			fmt.Fprintf(stdout, "sharded: layout %v (%d shard files)\n", idx.Layout, idx.Layout.TP*idx.Layout.PP)
		} else {
			fmt.Fprintln(stdout, "single file: model.safetensors (Hugging Face GPT-2 layout)")
		}
	}
	if err := describeAdapters(stdout, dir); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "model: %d layers, d=%d, %d heads (%d kv), vocab %d, %d positions, %s, %s, %s positions\n",
		cfg.NLayer, cfg.NEmbd, cfg.NHead, cfg.KVHeads(), cfg.VocabSize, cfg.NPositions, cfg.Activation, cfg.Norm, cfg.Position)
	tensors, err := checkpoint.Tensors(dir)
	if err != nil {
		return err
	}
	total := 0
	for _, n := range checkpoint.SortedNames(tensors) {
		size := 1
		for _, d := range tensors[n] {
			size *= d
		}
		total += size
		fmt.Fprintf(stdout, "  %-32s %-16s %10d\n", n, fmt.Sprint(tensors[n]), size)
	}
	fmt.Fprintf(stdout, "%d tensors, %d parameters\n", len(tensors), total)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if info, err := e.Info(); err == nil {
			fmt.Fprintf(stdout, "file %-32s %10d bytes\n", e.Name(), info.Size())
		}
	}
	if err := checkpoint.Verify(dir); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "checksums ok")
	return nil
}

func runCkptReshard(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newDirFlags("ckpt reshard", stderr)
	pos, rest := splitDir(args)
	tp := fs.Int("tp", 1, "target tensor-parallel degree")
	pp := fs.Int("pp", 1, "target pipeline stages")
	out := fs.String("out", "", "new checkpoint directory (must not exist)")
	if err := parseDirFlags(fs, rest); err != nil {
		return err
	}
	if *out == "" {
		return usageError{"--out is required"}
	}
	dir, err := resolveArg(append(pos, fs.Args()...), stderr)
	if err != nil {
		return err
	}
	// A PPO checkpoint carries its value model (value/) and state along.
	reshard, what := checkpoint.Reshard, ""
	if finetune.IsPPOCheckpoint(dir) {
		reshard, what = finetune.ReshardPPO, ", PPO policy and value model"
	}
	if err := wholeModel("ckpt reshard", dir); err != nil {
		return err
	}
	if err := reshard(dir, *out, *tp, *pp); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (tp=%d pp=%d%s)\n", *out, *tp, *pp, what)
	return nil
}

func runCkptExport(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newDirFlags("ckpt export", stderr)
	pos, rest := splitDir(args)
	format := fs.String("format", "hf", "export format: hf (GPT-2 or the Llama family by architecture), hf-gpt2, hf-llama, hf-qwen2, hf-mistral, or peft (a LoRA run's adapters in PEFT's layout)")
	out := fs.String("out", "", "output directory (new or empty)")
	overwrite := fs.Bool("overwrite", false, "write into a non-empty --out, replacing its files")
	dtype := fs.String("dtype", "fp32", "Llama family: stored precision, fp32 or bf16")
	maxShard := fs.String("max-shard-size", "5GB", "Llama family: start a new shard file above this size (5GB, 500MiB, bytes; 0: one file)")
	if err := parseDirFlags(fs, rest); err != nil {
		return err
	}
	if *out == "" {
		return usageError{"--out is required"}
	}
	shard, err := hf.ParseSize(*maxShard)
	if err != nil {
		return usageError{"--max-shard-size: " + err.Error()}
	}
	dir, err := resolveArg(append(pos, fs.Args()...), stderr)
	if err != nil {
		return err
	}
	if err := checkExport(dir, *format, *out, *overwrite); err != nil {
		return err
	}
	mt := ""
	switch *format {
	case "peft":
		return exportPEFT(dir, *out, stdout)
	case "hf":
		cfg, err := readConfig(dir)
		if err != nil {
			return err
		}
		if cfg.Norm == model.RMSNorm && cfg.Activation == model.SwiGLU && cfg.Position == model.PosRoPE {
			mt = hf.DefaultModelType(cfg)
		}
	case "hf-gpt2":
	case "hf-llama", "hf-qwen2", "hf-mistral":
		mt = strings.TrimPrefix(*format, "hf-")
	default:
		return usageError{fmt.Sprintf("--format %q is not one of hf, hf-gpt2, hf-llama, hf-qwen2, hf-mistral, peft", *format)}
	}
	if mt == "" {
		if err := checkpoint.ExportHF(dir, *out); err != nil {
			return err
		}
		if err := copyTokenizer(dir, *out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s and %s\n", filepath.Join(*out, checkpoint.ConfigFile), filepath.Join(*out, checkpoint.ModelFile))
		return nil
	}
	if err := checkpoint.ExportHFFamily(dir, *out, hf.ExportOptions{ModelType: mt, DType: *dtype, MaxShardBytes: shard}); err != nil {
		return err
	}
	if err := copyTokenizer(dir, *out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%s, %s)\n", *out, mt, *dtype)
	return nil
}

// exportPEFT writes the LoRA adapters of checkpoint dir (a run of sft/dpo
// --lora-rank on a Llama-family base) as adapter_config.json +
// adapter_model.safetensors in PEFT's layout.
func exportPEFT(dir, out string, stdout io.Writer) error {
	ac, err := finetune.ReadAdapterConfig(dir)
	if err != nil {
		return err
	}
	if ac.Base == "" {
		return fmt.Errorf("peft export: the adapters of %s were trained on a fresh model: PEFT needs a base checkpoint", dir)
	}
	bdir, _, err := checkpoint.Resolve(ac.Base)
	if err != nil {
		return err
	}
	cfg, err := readConfig(bdir)
	if err != nil {
		return err
	}
	m, err := model.New(cfg, 1, 1, gemm.New(1))
	if err != nil {
		return err
	}
	if err := checkpoint.LoadModel(bdir, m); err != nil {
		return err
	}
	if err := m.EnableLoRA(ac.LoRAConfig, 0); err != nil {
		return err
	}
	if err := checkpoint.LoadModel(dir, m); err != nil {
		return fmt.Errorf("adapters: %w", err)
	}
	if err := hf.ExportAdapters(out, m, ac.Base); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and %s (rank %d, base %s)\n", filepath.Join(out, hf.AdapterConfigFile), filepath.Join(out, hf.AdapterFile), ac.Rank, ac.Base)
	return nil
}
