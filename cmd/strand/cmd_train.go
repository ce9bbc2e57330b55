package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/finetune"
	"github.com/strand-ml/strand/launcher"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
	dpdata "github.com/strand-ml/strand/parallel/data"
	"github.com/strand-ml/strand/parallel/pipeline"
	"github.com/strand-ml/strand/progress"
	"github.com/strand-ml/strand/tokenizer"
	"github.com/strand-ml/strand/trace"
	"github.com/strand-ml/strand/trainer"
	"github.com/strand-ml/strand/worker"
)

// modelFlags are the architecture flags shared by train-like commands: a
// preset plus per-field overrides (0 or "" keeps the preset's value).
type modelFlags struct {
	preset                           string
	layers, heads, embd, vocab, npos int
	hidden, kvHeads                  int
	activation, norm                 string
	pos                              string
	ropeBase                         float64
	scaling                          ropeScalingFlags
	// explicit are the architecture flags given on the command line
	// (noteSet): they conflict with a checkpoint's own architecture.
	explicit []string
}

// archFlags are the flags that choose an architecture.
var archFlags = map[string]bool{"model": true, "n-layer": true, "n-head": true, "n-embd": true, "vocab": true,
	"n-positions": true, "n-inner": true, "activation": true, "norm": true, "pos": true, "rope-base": true}

// noteSet records which architecture flags the command line set.
func (f *modelFlags) noteSet(fs *flag.FlagSet) {
	f.explicit = nil
	fs.Visit(func(fl *flag.Flag) {
		if archFlags[fl.Name] {
			f.explicit = append(f.explicit, "--"+fl.Name)
		}
	})
}

// conflict refuses architecture flags next to a checkpoint that brings
// its own architecture (flag names the checkpoint flag, e.g. --init-from).
func (f *modelFlags) conflict(flag, ckpt string) error {
	if len(f.explicit) == 0 {
		return nil
	}
	return usageError{fmt.Sprintf("%s %s brings its own architecture: %s would be ignored (drop them, or train a new model without %s)",
		flag, ckpt, strings.Join(f.explicit, ", "), flag)}
}

func (f *modelFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.preset, "model", "tiny", "model preset: "+strings.Join(model.PresetNames(), ", "))
	fs.IntVar(&f.layers, "n-layer", 0, "override: transformer blocks")
	fs.IntVar(&f.heads, "n-head", 0, "override: attention heads")
	fs.IntVar(&f.kvHeads, "n-kv-head", 0, "override: key/value heads of grouped-query attention (dividing n-head; 1: multi-query)")
	fs.IntVar(&f.embd, "n-embd", 0, "override: model width")
	fs.IntVar(&f.vocab, "vocab", 0, "override: vocabulary size")
	fs.IntVar(&f.npos, "n-positions", 0, "override: maximum positions")
	fs.IntVar(&f.hidden, "n-inner", 0, "override: MLP hidden width")
	fs.StringVar(&f.activation, "activation", "", "override: gelu_new (tanh GELU), gelu (erf GELU) or swiglu")
	fs.StringVar(&f.norm, "norm", "", "override: layernorm or rmsnorm")
	fs.StringVar(&f.pos, "pos", "", "override: positions: learned (wpe), rope (rotary) or alibi (linear biases)")
	fs.Float64Var(&f.ropeBase, "rope-base", 0, "rope: frequency base rope_theta (default 10000)")
	f.scaling.register(fs)
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
	set(&cfg.NKVHead, f.kvHeads)
	if f.activation != "" {
		cfg.Activation = f.activation
	}
	if f.norm != "" {
		cfg.Norm = f.norm
	}
	if f.pos != "" {
		cfg.Position = f.pos
	}
	if f.ropeBase != 0 {
		cfg.RopeTheta = f.ropeBase
	}
	if cfg.Position == model.PosRoPE && cfg.RopeTheta == 0 {
		cfg.RopeTheta = cfg.RopeBase() // written to config.json, as HF does
	}
	f.scaling.apply(&cfg)
	return cfg, cfg.Validate()
}

// trainFlags are strand train's flags.
type trainFlags struct {
	model                  modelFlags
	launch                 *launcher.Flags
	run                    runFlags
	batch, seq             int
	micro, warmup          int
	schedule               string
	virtualStages          int
	lr, minLRFrac, clip    float64
	wd                     float64
	seed                   uint64
	dataSpec, tokenizerDir string
	maxDataBytes           int64
	valFrac                float64
	initFrom               string
	evalBatches            int
	threads                int
	shuffle, decayEmbed    bool
	kernel                 string
	bucketMB               float64
	bf16Grads              bool
	shard                  shardFlags
	tracePath              string
	stageLayers            string
	maxRestarts            int
	precision              string
	recompute              string
	gradCompress           string
	mem                    memFlags // --plan, --max-mem-per-rank (memflags.go)
}

func (f *trainFlags) register(fs *flag.FlagSet) {
	f.model.register(fs)
	f.launch = launcher.AddFlags(fs)
	f.run.register(fs, "train", 200, 3)
	f.mem.register(fs)
	fs.IntVar(&f.batch, "batch", 0, "global batch: sequences per optimizer step over all data-parallel ranks (default: the preset's)")
	fs.IntVar(&f.seq, "seq", 0, "tokens per sequence (default: the model's positions)")
	fs.IntVar(&f.micro, "microbatches", 1, "micro-batches per step on each data-parallel rank (gradient accumulation; pipeline micro-batches)")
	fs.IntVar(&f.micro, "accum", 1, "alias of --microbatches")
	fs.StringVar(&f.schedule, "schedule", pipeline.OneFOneB, "pipeline schedule: gpipe, 1f1b, interleaved (with --virtual-stages), zb-h1 or zb-h2 (zero bubble: the backward split into input and weight gradients)")
	fs.IntVar(&f.virtualStages, "virtual-stages", 1, "model chunks per pipeline stage for --schedule interleaved: the layers are cut into pp x V chunks, stage r holds chunks r, r+pp, ... (micro-batches a multiple of pp)")
	fs.StringVar(&f.stageLayers, "stage-layers", "", "layers per pipeline stage, comma-separated (default: balanced)")
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
	fs.StringVar(&f.initFrom, "init-from", "", "start from the weights of a checkpoint or run directory")
	fs.IntVar(&f.run.evalEvery, "eval-every", 0, "validation loss every N steps (0: only at the end)")
	fs.IntVar(&f.evalBatches, "eval-batches", 8, "validation batches per evaluation")
	fs.IntVar(&f.threads, "threads", 0, "compute goroutines per process (default: all cores, shared among local workers)")
	fs.BoolVar(&f.shuffle, "shuffle", false, "shuffle sequence windows each epoch (default: sequential, comparable with llm.c)")
	fs.StringVar(&f.kernel, "kernel", "", "force a GEMM kernel (portable, avx2, avx512)")
	fs.Float64Var(&f.bucketMB, "bucket-mb", 25, "data-parallel gradient bucket size in MB")
	fs.BoolVar(&f.bf16Grads, "bf16-grads", false, "all-reduce gradients as bfloat16")
	fs.StringVar(&f.recompute, "recompute", "none", "activation recomputation: none, selective (the MLP activation) or full (each block's forward again in backward; keeps only block inputs)")
	fs.StringVar(&f.precision, "precision", "fp32", "precision of the model's matrix products: fp32, bf16 (bf16 operands, float32 accumulation and master weights) or fp16 (emulated, dynamic loss scaling)")
	fs.StringVar(&f.gradCompress, "grad-compress", "none", "data-parallel gradient compression: none, bf16 (same as --bf16-grads), fp8 (E4M3 with a per-bucket scale) or fp8-e5m2")
	f.shard.register(fs)
	fs.StringVar(&f.tracePath, "trace", "", "write a Chrome/Perfetto trace of every rank's schedule to this file")
	fs.IntVar(&f.maxRestarts, "max-restarts", 0, "when a worker dies, restart the job up to N times from the last checkpoint")
	fs.BoolVar(&f.run.asyncSave, "async-save", false, "write checkpoints in the background (state is snapshotted in memory first)")
}

func runTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f trainFlags
	fs := newFlags("train", stderr)
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	f.model.noteSet(fs)
	if err := f.run.check(); err != nil {
		return err
	}
	if worker.InJob() {
		if err := f.run.workerOut(); err != nil {
			return err
		}
		return trainWorker(ctx, &f, stdout, stderr)
	}
	if err := f.launch.Validate(); err != nil {
		return usageError{err.Error()}
	}
	m, err := f.launch.Mesh(f.launch.World())
	if err != nil {
		return usageError{err.Error()}
	}
	// Check everything a worker would check, so a bad mesh or config fails
	// here, before any process starts.
	opts, _, err := f.options(m)
	if err != nil {
		return err
	}
	if done, err := f.mem.apply(opts, m, f.threads, trainDataBytes(&f), f.launch.LogFormat, stdout); done || err != nil {
		return err
	}
	if err := data.Check(f.dataSpec); err != nil {
		return err
	}
	if args, err = f.run.prepareOut(f.launch, args, stderr); err != nil {
		return err
	}
	if !f.launch.Launching() || m.World() == 1 && !f.launch.MultiNode() {
		return trainLoop(ctx, &f, opts, nil, stdout, stderr)
	}
	job := jobLaunch{lf: f.launch, mesh: m, argv: append([]string{"train"}, args...), maxRestarts: f.maxRestarts, out: f.run.out,
		check: func(pm mesh.Mesh) error { _, _, err := f.options(pm); return err }}
	return job.launch(ctx, stdout, stderr)
}

// stageLayerList parses --stage-layers (nil: layers split evenly).
func (f *trainFlags) stageLayerList() ([]int, error) {
	var out []int
	if f.stageLayers == "" {
		return nil, nil
	}
	for _, part := range strings.Split(f.stageLayers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			return nil, usageError{fmt.Sprintf("--stage-layers %q: %v", f.stageLayers, err)}
		}
		out = append(out, n)
	}
	return out, nil
}

// gradCompression turns --grad-compress and --bf16-grads into the
// data-parallel gradient formats.
func (f *trainFlags) gradCompression() (bf16 bool, fp8 string, err error) {
	bf16 = f.bf16Grads
	switch f.gradCompress {
	case "none", "":
	case "bf16":
		bf16 = true
	case "fp8", "fp8-e4m3", "fp8-e5m2":
		fp8 = f.gradCompress
	default:
		return false, "", usageError{fmt.Sprintf("--grad-compress %q is not one of none, bf16, fp8, fp8-e5m2", f.gradCompress)}
	}
	if fp8 != "" && bf16 {
		return false, "", usageError{"--bf16-grads and --grad-compress fp8 exclude each other"}
	}
	return bf16, fp8, nil
}

// options turns the flags into trainer options for mesh m.
func (f *trainFlags) options(m mesh.Mesh) (trainer.Options, model.Config, error) {
	cfg, err := f.model.config()
	if err != nil {
		return trainer.Options{}, cfg, usageError{err.Error()}
	}
	if !(f.lr > 0) {
		return trainer.Options{}, cfg, usageError{fmt.Sprintf("--lr %g would not change the model", f.lr)}
	}
	if f.tokenizerDir != "" && f.initFrom == "" && f.model.vocab == 0 {
		// The vocabulary follows the tokenizer, padded to a multiple of
		// 64 as nanoGPT and Megatron do (the extra ids are never used).
		tok, err := tokenizer.Load(f.tokenizerDir)
		if err != nil {
			return trainer.Options{}, cfg, err
		}
		cfg.VocabSize = tokenizer.PaddedVocab(tok.VocabSize(), 64)
	}
	if f.initFrom != "" {
		if err := f.model.conflict("--init-from", f.initFrom); err != nil {
			return trainer.Options{}, cfg, err
		}
		dir, ckCfg, err := checkpointConfig(f.initFrom, nil, os.Stderr)
		if err != nil {
			return trainer.Options{}, cfg, err
		}
		cfg = ckCfg
		f.initFrom = dir
	}
	if f.batch == 0 {
		f.batch = model.PresetBatch(f.model.preset)
	}
	if f.seq == 0 {
		f.seq = cfg.NPositions
	}
	if f.run.steps <= 0 {
		return trainer.Options{}, cfg, usageError{fmt.Sprintf("--steps %d must be positive", f.run.steps)}
	}
	if f.warmup == 0 {
		f.warmup = f.run.steps / 20
	}
	if f.valFrac < 0 || f.valFrac >= 1 {
		return trainer.Options{}, cfg, usageError{fmt.Sprintf("--val-frac %g outside [0, 1)", f.valFrac)}
	}
	stageLayers, err := f.stageLayerList()
	if err != nil {
		return trainer.Options{}, cfg, err
	}
	adam := optim.DefaultAdamW()
	adam.WeightDecay = f.wd
	bf16Grads, fp8Grads, err := f.gradCompression()
	if err != nil {
		return trainer.Options{}, cfg, err
	}
	opts := trainer.Options{
		Model: cfg, Batch: f.batch, Seq: f.seq, Micro: f.micro, Schedule: f.schedule, VirtualStages: f.virtualStages, Steps: f.run.steps,
		LR: f.lr, Warmup: f.warmup, MinLRFrac: f.minLRFrac, GradClip: f.clip, AdamW: adam,
		DecayEmbed: f.decayEmbed, Seed: f.seed, Shuffle: f.shuffle, Threads: f.threads, KernelForce: f.kernel,
		StageLayers: stageLayers,
		DP:          dpdata.Options{BucketBytes: int(f.bucketMB * 1e6), BF16: bf16Grads, FP8: fp8Grads},
		Precision:   f.precision,
		Recompute:   f.recompute,
	}
	if err := f.shard.apply(&opts); err != nil {
		return opts, cfg, err
	}
	if err := opts.Validate(m); err != nil {
		return opts, cfg, usageError{err.Error()}
	}
	return opts, cfg, nil
}

// trainWorker is one rank of a launched job.
func trainWorker(ctx context.Context, f *trainFlags, stdout, stderr io.Writer) error {
	return asWorker(ctx, f.launch, &f.threads, func(ctx context.Context, d *distributed) error {
		opts, _, err := f.options(d.comms.Mesh)
		if err != nil {
			return err
		}
		return trainLoop(ctx, f, opts, d, stdout, stderr)
	})
}

// trainData reads the corpus and splits it into training and validation
// tokens; it checks the tokens against the model's vocabulary.
func trainData(ctx context.Context, f *trainFlags, cfg model.Config) (train, val *data.Corpus, err error) {
	tok, err := loadTokenizer(f.tokenizerDir, f.initFrom)
	if err != nil {
		return nil, nil, err
	}
	if tok.VocabSize() > cfg.VocabSize {
		return nil, nil, usageError{fmt.Sprintf("tokenizer has %d tokens but the model's vocabulary is %d (raise --vocab)", tok.VocabSize(), cfg.VocabSize)}
	}
	corpus, err := data.Load(ctx, f.dataSpec, tok, data.LoadOptions{MaxBytes: f.maxDataBytes})
	if err != nil {
		return nil, nil, err
	}
	if err := corpus.CheckVocab(cfg.VocabSize); err != nil {
		return nil, nil, err
	}
	train, val = corpus.Split(f.valFrac)
	return train, val, nil
}

// trainLoop trains this process's part of the model on the run loop.
// Rank 0 (or the single process) writes the run directory and shows
// progress.
func trainLoop(ctx context.Context, f *trainFlags, opts trainer.Options, dist *distributed, stdout, stderr io.Writer) error {
	rank, m, coord, comms, logf := runInfo(dist, stderr)
	logf("loading data %s\n", describeData(f.dataSpec))
	trainSet, valSet, err := trainData(ctx, f, opts.Model)
	if err != nil {
		return err
	}
	if trainSet.Mixed() {
		logf("data: %s\n", trainSet.FileSummary())
	}
	loader, err := data.NewLoader(trainSet.Tokens, data.LoaderConfig{Batch: opts.RowsPerRank(m), Seq: f.seq, DPRank: coord.DP, DPSize: m.DP, Shuffle: f.shuffle, Seed: f.seed})
	if err != nil {
		return fmt.Errorf("training data: %w", err)
	}
	tr, err := trainer.New(opts, loader, comms)
	if err != nil {
		return err
	}
	defer tr.Close()
	if tok, err := loadTokenizer(f.tokenizerDir, f.initFrom); err == nil {
		tr.CheckpointFiles = tokenizerFiles(tok) // every checkpoint carries its tokenizer
	}
	if f.tracePath != "" {
		tr.SetTrace(trace.New(rank, time.Now()))
	}
	if f.initFrom != "" {
		if err := finetune.LoadWeights(f.initFrom, tr.Model); err != nil {
			return err
		}
		logf("initialized from %s\n", f.initFrom)
	}
	peak := jobPeak(tr, dist)
	cfg := opts.Model
	logf("model %s: %s params, %d layers, d=%d, %d heads, vocab %d | data: %s, %s train / %s val tokens\n",
		f.model.preset, progress.Count(float64(trainer.ParamCount(cfg))), cfg.NLayer, cfg.NEmbd, cfg.NHead, cfg.VocabSize,
		trainSet.Source, progress.Count(float64(len(trainSet.Tokens))), progress.Count(float64(len(valSet.Tokens))))
	logf("mesh %v | global batch %d x %d tokens, %d micro-batches of %d per rank, schedule %s\n", m, f.batch, f.seq, opts.Micro, opts.RowsPerRank(m)/opts.Micro, tr.Pipe.Label())
	logf("compute: %d processes x %d threads, gemm kernel %s, peak %.0f GFLOP/s (%d cores x %.2f GHz x %d FLOP/cycle, %s)\n",
		m.World(), tr.Engine.Threads(), tr.Engine.KernelName(), peak.FLOPS/1e9, peak.Threads, peak.GHz, peak.FLOPsPerCycle, peak.VectorISA)
	rc := f.run.config(dist, f.launch.LogFormat, stdout, stderr)
	rc.PeakFLOPS = peak.FLOPS
	rc.Hooks.Eval = validation(tr, valSet, f, m, coord, logf)
	rec := newDataRecord(f)
	steps := &trainer.Steps{T: tr, Rank: rank, Seed: f.seed, Extra: func() map[string]any { return map[string]any{dataRecordKey: rec} }}
	if dist != nil {
		steps.Barrier = dist.job.barrier
	}
	if _, err := runLoop(ctx, steps, rc, dist); err != nil {
		return err
	}
	if err := finishTrace(ctx, f.tracePath, tr, dist, rank == 0, stdout); err != nil {
		return err
	}
	return pipelineReport(ctx, tr, coord, rank == 0, stdout, stderr)
}

// jobPeak is the job's peak FLOP/s: every process's threads, but no host
// counts more cores than it has (launcher.JobCores).
func jobPeak(tr *trainer.Trainer, dist *distributed) trainer.Peak {
	threads := min(tr.Engine.Threads(), runtime.NumCPU())
	if dist != nil {
		threads = launcher.JobCores(dist.job.hosts, tr.Engine.Threads(), runtime.NumCPU())
	}
	return trainer.MachinePeak(threads)
}

// validation is the run loop's evaluation hook: the validation loss over
// --eval-batches global batches of the held-out tokens, on any mesh
// (every rank evaluates its data-parallel share through its pipeline
// stage); nil when there is nothing to evaluate.
func validation(tr *trainer.Trainer, val *data.Corpus, f *trainFlags, m mesh.Mesh, coord mesh.Coord, logf func(string, ...any)) func(context.Context, int) (map[string]any, error) {
	rows := tr.Opts.RowsPerRank(m)
	batches := min(f.evalBatches, (len(val.Tokens)-1)/(rows*m.DP*f.seq))
	if batches <= 0 {
		if len(val.Tokens) > 0 {
			logf("validation skipped: %d held-out tokens are less than one global batch of %d x %d\n", len(val.Tokens), f.batch, f.seq)
		}
		return nil
	}
	loader, err := data.NewLoader(val.Tokens, data.LoaderConfig{Batch: rows, Seq: f.seq, DPRank: coord.DP, DPSize: m.DP})
	if err != nil {
		logf("validation skipped: %v\n", err)
		return nil
	}
	return func(ctx context.Context, _ int) (map[string]any, error) {
		loader.Reset()
		v, err := tr.EvalLoss(ctx, loader, batches)
		if err != nil {
			return nil, err
		}
		return map[string]any{"val_loss": v}, nil
	}
}

// pipelineReport prints each stage's activation memory and, on the lead
// rank, the measured and theoretical pipeline bubble.
func pipelineReport(ctx context.Context, tr *trainer.Trainer, coord mesh.Coord, lead bool, stdout, stderr io.Writer) error {
	bubble, err := tr.MeasuredBubble(ctx)
	if err != nil {
		return err
	}
	pp := tr.Pipe
	if pp.Stages > 1 && coord.DP == 0 && coord.TP == 0 {
		fmt.Fprintf(stderr, "stage %d: %d activation slots (%s schedule, %d micro-batches), %.1f MB of activations, peak RSS %.1f MB\n",
			coord.PP, pp.InFlight(coord.PP), pp.Label(), pp.Micro, float64(tr.ActivationBytes())/1e6, float64(trainer.PeakRSS())/1e6)
	}
	if lead && pp.Stages > 1 {
		fmt.Fprintf(stdout, "pipeline bubble: measured %.1f%% of the makespan (%.1f%% between each stage's first and last compute), theoretical %.1f%% (%s, p=%d, m=%d)\n",
			100*bubble.Makespan, 100*bubble.Window, 100*pp.TheoreticalBubble(), pp.Label(), pp.Stages, pp.Micro)
	}
	return nil
}

// finishTrace writes this rank's trace part; rank 0 merges all parts.
func finishTrace(ctx context.Context, path string, tr *trainer.Trainer, dist *distributed, lead bool, stdout io.Writer) error {
	if path == "" {
		return nil
	}
	rank, world := 0, 1
	if dist != nil {
		rank, world = dist.job.rank, dist.job.world
	}
	if err := tr.Trace.WriteFile(trace.PartPath(path, rank)); err != nil {
		return err
	}
	if dist != nil {
		if err := dist.job.barrier(ctx); err != nil {
			return fmt.Errorf("trace: %w", err)
		}
	}
	if !lead {
		return nil
	}
	if err := trace.Merge(path, world); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "trace %s (open in https://ui.perfetto.dev or chrome://tracing)\n", path)
	return nil
}

func describeData(spec string) string {
	if spec == "" {
		return "(default: the Go toolchain's source tree)"
	}
	return spec
}
