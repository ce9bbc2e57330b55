package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/metrics"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
	"github.com/strand-ml/strand/plot"
	"github.com/strand-ml/strand/progress"
	"github.com/strand-ml/strand/tokenizer"
	"github.com/strand-ml/strand/trainer"
)

// modelFlags are the architecture flags shared by train-like commands: a
// preset plus per-field overrides (0 or "" keeps the preset's value).
type modelFlags struct {
	preset                           string
	layers, heads, embd, vocab, npos int
	hidden                           int
	activation, norm                 string
}

func (f *modelFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.preset, "model", "tiny", "model preset: "+strings.Join(model.PresetNames(), ", "))
	fs.IntVar(&f.layers, "n-layer", 0, "override: transformer blocks")
	fs.IntVar(&f.heads, "n-head", 0, "override: attention heads")
	fs.IntVar(&f.embd, "n-embd", 0, "override: model width")
	fs.IntVar(&f.vocab, "vocab", 0, "override: vocabulary size")
	fs.IntVar(&f.npos, "n-positions", 0, "override: maximum positions")
	fs.IntVar(&f.hidden, "n-inner", 0, "override: MLP hidden width")
	fs.StringVar(&f.activation, "activation", "", "override: gelu_new (tanh GELU), gelu (erf GELU) or swiglu")
	fs.StringVar(&f.norm, "norm", "", "override: layernorm or rmsnorm")
}

func (f *modelFlags) config() (model.Config, error) {
	cfg, err := model.Preset(f.preset)
	if err != nil {
		return cfg, err
	}
	set := func(dst *int, v int) {
		if v != 0 {
			*dst = v
		}
	}
	set(&cfg.NLayer, f.layers)
	set(&cfg.NHead, f.heads)
	set(&cfg.NEmbd, f.embd)
	set(&cfg.VocabSize, f.vocab)
	set(&cfg.NPositions, f.npos)
	set(&cfg.MLPHidden, f.hidden)
	if f.activation != "" {
		cfg.Activation = f.activation
	}
	if f.norm != "" {
		cfg.Norm = f.norm
	}
	return cfg, cfg.Validate()
}

// trainFlags are strand train's flags.
type trainFlags struct {
	model                  modelFlags
	steps, batch, seq      int
	accum, warmup          int
	lr, minLRFrac, clip    float64
	wd                     float64
	seed                   uint64
	dataSpec, tokenizerDir string
	maxDataBytes           int64
	valFrac                float64
	out, initFrom          string
	ckptEvery, keep        int
	evalEvery, evalBatches int
	threads                int
	shuffle, decayEmbed    bool
	noProgress             bool
	kernel                 string
}

func (f *trainFlags) register(fs *flag.FlagSet) {
	f.model.register(fs)
	fs.IntVar(&f.steps, "steps", 200, "optimizer steps")
	fs.IntVar(&f.batch, "batch", 0, "sequences per micro-batch (default: the preset's)")
	fs.IntVar(&f.seq, "seq", 0, "tokens per sequence (default: the model's positions)")
	fs.IntVar(&f.accum, "accum", 1, "micro-batches accumulated per optimizer step")
	fs.Float64Var(&f.lr, "lr", 1e-3, "peak learning rate")
	fs.IntVar(&f.warmup, "warmup", 0, "linear warm-up steps (default: 5% of steps)")
	fs.Float64Var(&f.minLRFrac, "min-lr-frac", 0.1, "final learning rate as a fraction of --lr (cosine decay)")
	fs.Float64Var(&f.clip, "grad-clip", 1.0, "max global gradient norm (0 disables)")
	fs.Float64Var(&f.wd, "weight-decay", 0.1, "AdamW decoupled weight decay on matrices")
	fs.BoolVar(&f.decayEmbed, "decay-embeddings", false, "also apply weight decay to embeddings")
	fs.Uint64Var(&f.seed, "seed", 1337, "seed for initialization and data order")
	fs.StringVar(&f.dataSpec, "data", "", "training data: llm.c .bin shard(s), text file, directory or glob (default: the Go source tree)")
	fs.StringVar(&f.tokenizerDir, "tokenizer", "", "BPE tokenizer directory for text data (default: bytes, ids 0-255)")
	fs.Int64Var(&f.maxDataBytes, "max-data-bytes", 0, "cap on text bytes read (default 8 MiB for the Go source tree)")
	fs.Float64Var(&f.valFrac, "val-frac", 0.05, "fraction of the data held out for validation")
	fs.StringVar(&f.out, "out", "runs/train", "run directory: metrics.jsonl, loss.png, checkpoints/")
	fs.StringVar(&f.initFrom, "init-from", "", "start from the weights of a checkpoint or run directory")
	fs.IntVar(&f.ckptEvery, "ckpt-every", 0, "checkpoint every N steps (0: only at the end)")
	fs.IntVar(&f.keep, "keep", 3, "checkpoints to keep (0 keeps all)")
	fs.IntVar(&f.evalEvery, "eval-every", 0, "validation loss every N steps (0: only at the end)")
	fs.IntVar(&f.evalBatches, "eval-batches", 8, "validation batches per evaluation")
	fs.IntVar(&f.threads, "threads", 0, "compute goroutines (default: all cores)")
	fs.BoolVar(&f.shuffle, "shuffle", false, "shuffle sequence windows each epoch (default: sequential, comparable with llm.c)")
	fs.BoolVar(&f.noProgress, "no-progress", false, "print one line per step instead of a progress bar")
	fs.StringVar(&f.kernel, "kernel", "", "force a GEMM kernel (portable, avx2, avx512)")
}

func runTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f trainFlags
	fs := newFlags("train", stderr)
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := f.model.config()
	if err != nil {
		return usageError{err.Error()}
	}
	if f.batch == 0 {
		f.batch = model.PresetBatch(f.model.preset)
	}
	if f.seq == 0 {
		f.seq = cfg.NPositions
	}
	if f.warmup == 0 {
		f.warmup = f.steps / 20
	}
	if f.steps <= 0 {
		return usageError{fmt.Sprintf("--steps %d must be positive", f.steps)}
	}
	if f.valFrac < 0 || f.valFrac >= 1 {
		return usageError{fmt.Sprintf("--val-frac %g outside [0, 1)", f.valFrac)}
	}
	if f.initFrom != "" {
		dir, warns, err := checkpoint.Resolve(f.initFrom)
		for _, w := range warns {
			fmt.Fprintln(stderr, "warning:", w)
		}
		if err != nil {
			return err
		}
		if cfg, err = checkpoint.ReadConfig(dir); err != nil {
			return err
		}
		f.initFrom = dir
	}
	adam := optim.DefaultAdamW()
	adam.WeightDecay = f.wd
	opts := trainer.Options{
		Model: cfg, Batch: f.batch, Seq: f.seq, Accum: f.accum, Steps: f.steps,
		LR: f.lr, Warmup: f.warmup, MinLRFrac: f.minLRFrac, GradClip: f.clip, AdamW: adam,
		DecayEmbed: f.decayEmbed, Seed: f.seed, Shuffle: f.shuffle, Threads: f.threads, KernelForce: f.kernel,
	}
	if err := opts.Validate(); err != nil {
		return usageError{err.Error()}
	}

	tok, err := loadTokenizer(f.tokenizerDir)
	if err != nil {
		return err
	}
	if tok.VocabSize() > cfg.VocabSize {
		return usageError{fmt.Sprintf("tokenizer has %d tokens but the model's vocabulary is %d (raise --vocab)", tok.VocabSize(), cfg.VocabSize)}
	}
	fmt.Fprintf(stderr, "loading data %s\n", describeData(f.dataSpec))
	corpus, err := data.Load(ctx, f.dataSpec, tok, data.LoadOptions{MaxBytes: f.maxDataBytes})
	if err != nil {
		return err
	}
	if err := corpus.CheckVocab(cfg.VocabSize); err != nil {
		return err
	}
	trainSet, valSet := corpus.Split(f.valFrac)
	loader, err := data.NewLoader(trainSet.Tokens, data.LoaderConfig{Batch: f.batch, Seq: f.seq, DPRank: 0, DPSize: 1, Shuffle: f.shuffle, Seed: f.seed})
	if err != nil {
		return fmt.Errorf("training data: %w", err)
	}
	tr, err := trainer.New(opts, loader)
	if err != nil {
		return err
	}
	if f.initFrom != "" {
		if err := checkpoint.LoadModel(f.initFrom, tr.Model); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "initialized from %s\n", f.initFrom)
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return err
	}
	peak := trainer.MachinePeak(tr.Engine.Threads())
	fmt.Fprintf(stderr, "model %s: %s params, %d layers, d=%d, %d heads, vocab %d | data: %s, %s train / %s val tokens\n",
		f.model.preset, human(float64(tr.Model.Params.Count())), cfg.NLayer, cfg.NEmbd, cfg.NHead, cfg.VocabSize,
		corpus.Source, human(float64(len(trainSet.Tokens))), human(float64(len(valSet.Tokens))))
	fmt.Fprintf(stderr, "compute: %d threads, gemm kernel %s, peak %.0f GFLOP/s (%d threads x %.2f GHz x %d FLOP/cycle, %s)\n",
		peak.Threads, tr.Engine.KernelName(), peak.FLOPS/1e9, peak.Threads, peak.GHz, peak.FLOPsPerCycle, peak.VectorISA)

	mw, err := metrics.NewJSONL(filepath.Join(f.out, "metrics.jsonl"))
	if err != nil {
		return err
	}
	defer mw.Close()
	var valLoader func() (*data.Loader, error)
	if len(valSet.Tokens) > 0 {
		valLoader = func() (*data.Loader, error) {
			return data.NewLoader(valSet.Tokens, data.LoaderConfig{Batch: f.batch, Seq: f.seq, DPSize: 1})
		}
	}
	mode := progress.Auto
	if f.noProgress {
		mode = progress.Plain
	}
	bar := progress.New(stdout, f.steps, progress.Options{Desc: "train", Mode: mode})
	var xs, ys, vxs, vys []float64
	var totalTokens int
	start := time.Now()
	for tr.Step < f.steps {
		st, err := tr.TrainStep(ctx)
		if err != nil {
			bar.Finish()
			return err
		}
		totalTokens += st.Tokens
		mfu := st.FLOPsPS / peak.FLOPS
		rec := map[string]any{
			"step": st.Step, "loss": st.Loss, "lr": st.LR, "grad_norm": st.GradNorm,
			"tokens_per_s": st.TokensPS, "mfu": mfu, "step_seconds": st.Seconds,
			"tokens": totalTokens, "elapsed_s": time.Since(start).Seconds(),
		}
		xs, ys = append(xs, float64(st.Step)), append(ys, st.Loss)
		last := st.Step == f.steps
		if valLoader != nil && ((f.evalEvery > 0 && st.Step%f.evalEvery == 0) || last) {
			vl, err := valLoader()
			if err == nil {
				var v float64
				v, _, err = trainer.Evaluate(ctx, tr.Model, vl, f.batch, f.seq, f.evalBatches)
				if err == nil {
					rec["val_loss"] = v
					vxs, vys = append(vxs, float64(st.Step)), append(vys, v)
				}
			}
			if err != nil {
				fmt.Fprintf(stderr, "validation skipped: %v\n", err)
				valLoader = nil
			}
		}
		if err := mw.Write(rec); err != nil {
			return err
		}
		bar.Update(st.Step, progress.Stats{Loss: st.Loss, TokensPerSec: st.TokensPS, MFU: mfu, LR: st.LR, GradNorm: st.GradNorm})
		if last || (f.ckptEvery > 0 && st.Step%f.ckptEvery == 0) {
			if _, err := checkpoint.Save(f.out, st.Step, tr.Model, tr.Opt, trainState{Step: st.Step, Seed: f.seed, Loader: tr.Loader.State()}, f.keep); err != nil {
				bar.Finish()
				return err
			}
		}
	}
	bar.Finish()
	series := []plot.Series{{Name: "train", X: xs, Y: ys}}
	if len(vxs) > 0 {
		series = append(series, plot.Series{Name: "validation", X: vxs, Y: vys})
	}
	if err := plot.LossCurve(filepath.Join(f.out, "loss.png"), fmt.Sprintf("strand %s", f.model.preset), series); err != nil {
		return err
	}
	final := ys[len(ys)-1]
	msg := fmt.Sprintf("done: %d steps, %s tokens in %s, final loss %.4f", f.steps, human(float64(totalTokens)), time.Since(start).Round(time.Millisecond), final)
	if len(vys) > 0 {
		msg += fmt.Sprintf(", validation loss %.4f", vys[len(vys)-1])
	}
	fmt.Fprintf(stdout, "%s\nrun directory %s (metrics.jsonl, loss.png, checkpoints/)\n", msg, f.out)
	return nil
}

// trainState is trainer_state.json: what a resume needs beyond weights and
// optimizer moments.
type trainState struct {
	Step   int              `json:"step"`
	Seed   uint64           `json:"seed"`
	Loader data.LoaderState `json:"loader"`
}

func loadTokenizer(dir string) (data.Tokenizer, error) {
	if dir == "" {
		return tokenizer.Bytes{}, nil
	}
	return tokenizer.Load(dir)
}

func describeData(spec string) string {
	if spec == "" {
		return "(default: the Go toolchain's source tree)"
	}
	return spec
}

// human formats a count with a k/M/G suffix.
func human(x float64) string {
	switch {
	case x >= 1e9:
		return fmt.Sprintf("%.2fG", x/1e9)
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.1fk", x/1e3)
	}
	return fmt.Sprintf("%.0f", x)
}
