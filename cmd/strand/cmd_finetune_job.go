package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/finetune"
	"github.com/strand-ml/strand/launcher"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
	"github.com/strand-ml/strand/parallel/pipeline"
	"github.com/strand-ml/strand/progress"
	"github.com/strand-ml/strand/trainer"
	"github.com/strand-ml/strand/worker"
)

// ftFlags are the flags every fine-tuning command shares.
type ftFlags struct {
	model        modelFlags // architecture when starting without --ckpt
	launch       *launcher.Flags
	run          runFlags
	ckpt         string
	fromScratch  bool
	dataPath     string
	tokenizerDir string
	onBad        string
	batch, seq   int
	micro        int
	schedule     string
	virtual      int
	lr           float64
	warmup       int
	minLRFrac    float64
	clip, wd     float64
	seed         uint64
	threads      int
	shuffle      bool
	valFrac      float64
	vocabSize    int // the model's, set once the config is known
	loraRank     int
	loraAlpha    float64
	loraTargets  string
	shard        shardFlags // registerTrainer: sft, dpo, rm train
	recompute    string     // registerTrainer
	mem          memFlags   // registerTrainer: --plan, --max-mem-per-rank (memflags.go)
	fs           *flag.FlagSet
}

// registerTrainer adds the ZeRO and recomputation flags for the commands
// that train one model on the trainer (sft, dpo, rm train).
func (f *ftFlags) registerTrainer(fs *flag.FlagSet) {
	f.shard.register(fs)
	fs.StringVar(&f.recompute, "recompute", "none", "activation recomputation: none, selective (the MLP activation) or full (each block's forward again in backward)")
	f.mem.register(fs)
}

// pairJob is the common start of the preference-pair commands (dpo, rm
// train): --batch counts pairs, and the trainer counts rows, a chosen and
// a rejected one per pair. It returns the trainer options, the pairs per
// step and the file's records, with the batch checked against the mesh.
func (f *ftFlags) pairJob(m mesh.Mesh, logf func(string, ...any)) (opts trainer.Options, pairsPerStep int, enc finetune.Encoder, recs []finetune.Record, err error) {
	pairsPerStep = f.batch
	f.batch = 2 * pairsPerStep
	if opts, err = f.options(m); err != nil {
		return
	}
	if pairsPerStep%(m.DP*opts.Micro) != 0 {
		err = usageError{fmt.Sprintf("--batch %d pairs does not split into %d data-parallel ranks x %d micro-batches", pairsPerStep, m.DP, opts.Micro)}
		return
	}
	tok, err := loadTokenizer(f.tokenizerDir, f.ckpt)
	if err != nil {
		return
	}
	enc = finetune.NewEncoder(tok)
	recs, err = f.readRecords(finetune.Pair, logf)
	return
}

func (f *ftFlags) register(fs *flag.FlagSet, name, format string, lr float64) {
	f.fs = fs
	f.model.register(fs)
	f.launch = launcher.AddFlags(fs)
	f.run.register(fs, name, 100, 1)
	fs.StringVar(&f.ckpt, "ckpt", "", "base checkpoint or run directory to fine-tune (required unless --from-scratch)")
	fs.BoolVar(&f.fromScratch, "from-scratch", false, "fine-tune a freshly initialized --model instead of a --ckpt (for tests and experiments)")
	fs.StringVar(&f.dataPath, "data", "", "JSONL file: "+format)
	fs.StringVar(&f.tokenizerDir, "tokenizer", "", "BPE tokenizer directory (default: bytes, ids 0-255)")
	fs.StringVar(&f.onBad, "on-bad-record", "fail", "malformed JSONL line: skip (report its line number and count it) or fail")
	fs.IntVar(&f.batch, "batch", 8, "global batch: rows per optimizer step over all data-parallel ranks")
	fs.IntVar(&f.seq, "seq", 0, "positions per row (default: the model's positions)")
	fs.IntVar(&f.micro, "microbatches", 1, "micro-batches per step on each data-parallel rank")
	fs.StringVar(&f.schedule, "schedule", pipeline.OneFOneB, "pipeline schedule: gpipe, 1f1b, interleaved (with --virtual-stages), zb-h1 or zb-h2 (zero bubble: the backward split into input and weight gradients)")
	fs.IntVar(&f.virtual, "virtual-stages", 1, "model chunks per pipeline stage for --schedule interleaved: the layers are cut into pp x V chunks, stage r holds chunks r, r+pp, ... (micro-batches a multiple of pp)")
	fs.Float64Var(&f.lr, "lr", lr, "peak learning rate")
	fs.IntVar(&f.warmup, "warmup", 0, "linear warm-up steps")
	fs.Float64Var(&f.minLRFrac, "min-lr-frac", 0.1, "final learning rate as a fraction of --lr (cosine decay)")
	fs.Float64Var(&f.clip, "grad-clip", 1.0, "max global gradient norm (0 disables)")
	fs.Float64Var(&f.wd, "weight-decay", 0.0, "AdamW decoupled weight decay on matrices")
	fs.Uint64Var(&f.seed, "seed", 1337, "seed for a fresh model and the data order")
	fs.IntVar(&f.threads, "threads", 0, "compute goroutines per process (default: all cores, shared among local workers)")
	fs.BoolVar(&f.shuffle, "shuffle", true, "shuffle the data each epoch")
	fs.Float64Var(&f.valFrac, "val-frac", 0.1, "fraction of the records (the file's tail) held out for evaluation")
	fs.IntVar(&f.loraRank, "lora-rank", 0, "LoRA: train rank-R adapters on --lora-targets with the base frozen (0: full fine-tuning)")
	fs.Float64Var(&f.loraAlpha, "lora-alpha", 16, "LoRA: scaling alpha (the update is alpha/rank * A @ B)")
	fs.StringVar(&f.loraTargets, "lora-targets", "attn.c_attn", "LoRA: comma-separated projections: "+strings.Join(model.LoRATargets(), ","))
}

// lora is the adapter configuration, nil for full fine-tuning.
func (f *ftFlags) lora() (*model.LoRAConfig, error) {
	if f.loraRank == 0 {
		return nil, nil
	}
	lc := &model.LoRAConfig{Rank: f.loraRank, Alpha: f.loraAlpha}
	for _, t := range strings.Split(f.loraTargets, ",") {
		if t = strings.TrimSpace(t); t != "" {
			lc.Targets = append(lc.Targets, t)
		}
	}
	if err := lc.Validate(); err != nil {
		return nil, usageError{err.Error()}
	}
	return lc, nil
}

// checkData validates the data flags.
func (f *ftFlags) checkData(name string) error {
	if f.dataPath == "" {
		return usageError{name + ": --data FILE.jsonl is required"}
	}
	if _, err := finetune.ParsePolicy(f.onBad); err != nil {
		return usageError{err.Error()}
	}
	return nil
}

// check validates what needs no model.
func (f *ftFlags) check(name string) error {
	if err := f.checkData(name); err != nil {
		return err
	}
	if f.fs != nil {
		f.model.noteSet(f.fs)
	}
	switch {
	case f.ckpt == "" && !f.fromScratch:
		return usageError{name + ": --ckpt BASE is required: the checkpoint to fine-tune (--from-scratch fine-tunes a freshly initialized --model instead)"}
	case f.ckpt != "" && f.fromScratch:
		return usageError{name + ": --ckpt and --from-scratch exclude each other"}
	case !(f.lr > 0):
		return usageError{fmt.Sprintf("%s: --lr %g would not change the model", name, f.lr)}
	}
	return f.run.check()
}

// options turns the flags into trainer options for mesh m: the model is
// --ckpt's (resolved to its newest committed checkpoint) or a fresh --model.
func (f *ftFlags) options(m mesh.Mesh) (trainer.Options, error) {
	cfg, err := f.config()
	if err != nil {
		return trainer.Options{}, err
	}
	if f.valFrac < 0 || f.valFrac >= 1 {
		return trainer.Options{}, usageError{fmt.Sprintf("--val-frac %g outside [0, 1)", f.valFrac)}
	}
	lc, err := f.lora()
	if err != nil {
		return trainer.Options{}, err
	}
	adam := optim.DefaultAdamW()
	adam.WeightDecay = f.wd
	opts := trainer.Options{
		Model: cfg, Batch: f.batch, Seq: f.seq, Micro: f.micro, Schedule: f.schedule, VirtualStages: f.virtual, Steps: f.run.steps,
		LR: f.lr, Warmup: f.warmup, MinLRFrac: f.minLRFrac, GradClip: f.clip, AdamW: adam,
		Seed: f.seed, Threads: f.threads, Recompute: f.recompute,
	}
	if err := f.shard.apply(&opts); err != nil {
		return trainer.Options{}, err
	}
	if lc != nil {
		// The base weights load before the adapters become the model's
		// trainable parameters; checkpoints then hold only the adapters.
		ckpt, seed := f.ckpt, f.seed
		opts.Adapt = func(m *model.GPT) error {
			if ckpt != "" {
				if err := finetune.LoadWeights(ckpt, m); err != nil {
					return err
				}
			}
			return m.EnableLoRA(*lc, seed)
		}
	}
	if err := opts.Validate(m); err != nil {
		return opts, usageError{err.Error()}
	}
	return opts, nil
}

// config is the model's configuration: --ckpt's (resolved to its newest
// committed checkpoint) or the --model preset's. It sets the default --seq.
func (f *ftFlags) config() (model.Config, error) {
	var cfg model.Config
	var err error
	if f.ckpt != "" {
		if err := f.model.conflict("--ckpt", f.ckpt); err != nil {
			return cfg, err
		}
		dir, warns, err := checkpoint.Resolve(f.ckpt)
		for _, w := range warns {
			fmt.Fprintln(os.Stderr, "warning:", w)
		}
		if err != nil {
			return cfg, err
		}
		if cfg, err = readConfig(dir); err != nil {
			return cfg, err
		}
		f.ckpt = dir
	} else if cfg, err = f.model.config(); err != nil {
		return cfg, usageError{err.Error()}
	}
	f.vocabSize = cfg.VocabSize
	if f.seq == 0 {
		f.seq = cfg.NPositions
	}
	if cfg.Position == model.PosLearned && f.seq > cfg.NPositions {
		return cfg, usageError{fmt.Sprintf("--seq %d exceeds the model's %d learned positions", f.seq, cfg.NPositions)}
	}
	return cfg, nil
}

// launchOrRun is the launcher side of a fine-tuning command: inside a job
// it runs loop as a worker; otherwise it checks the flags and the run
// directory and runs loop in this process or launches the workers.
func (f *ftFlags) launchOrRun(ctx context.Context, name string, args []string, loop func(ctx context.Context, d *distributed) error, stdout, stderr io.Writer) error {
	if err := f.check(name); err != nil {
		return err
	}
	if worker.InJob() {
		if err := f.run.workerOut(); err != nil {
			return err
		}
		return asWorker(ctx, f.launch, &f.threads, loop)
	}
	if err := f.launch.Validate(); err != nil {
		return usageError{err.Error()}
	}
	m, err := f.launch.Mesh(f.launch.World())
	if err != nil {
		return usageError{err.Error()}
	}
	if _, err := f.options(m); err != nil { // fail before any process starts
		return err
	}
	if done, err := f.memPlan(name, m, stdout); done || err != nil {
		return err
	}
	if _, err := os.Stat(f.dataPath); err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	if args, err = f.run.prepareOut(f.launch, args, stderr); err != nil {
		return err
	}
	if !f.launch.Launching() || m.World() == 1 && !f.launch.MultiNode() {
		return loop(ctx, nil)
	}
	job := jobLaunch{lf: f.launch, mesh: m, argv: append(strings.Fields(name), args...), out: f.run.out,
		check: func(pm mesh.Mesh) error { _, err := f.options(pm); return err }}
	return job.launch(ctx, stdout, stderr)
}

// readRecords reads the data file with the bad-record policy, listing
// skipped lines (up to 10) and the counts.
func (f *ftFlags) readRecords(kind finetune.Kind, logf func(string, ...any)) ([]finetune.Record, error) {
	policy, _ := finetune.ParsePolicy(f.onBad)
	fh, err := os.Open(f.dataPath)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	recs, rep, err := finetune.ReadJSONL(fh, kind, policy)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.dataPath, err)
	}
	for i, b := range rep.Bad {
		if i == 10 {
			logf("... %d more bad records\n", len(rep.Bad)-10)
			break
		}
		logf("%s: skipped %s\n", f.dataPath, b)
	}
	logf("data %s: %d lines, %d records, %d skipped as malformed, %d blank\n", f.dataPath, rep.Lines, rep.Records, rep.Skipped, rep.Blank)
	if len(recs) == 0 {
		return nil, fmt.Errorf("%s: no usable records", f.dataPath)
	}
	return recs, nil
}

// heldOut is how many of n records the tail holds out (at least one left to train).
func (f *ftFlags) heldOut(n int) int {
	h := int(f.valFrac * float64(n))
	return min(h, n-1)
}

// newTrainer builds the trainer and loads --ckpt into it.
func (f *ftFlags) newTrainer(opts trainer.Options, comms *trainer.Comms, logf func(string, ...any)) (*trainer.Trainer, error) {
	tok, err := loadTokenizer(f.tokenizerDir, f.ckpt)
	if err != nil {
		return nil, err
	}
	tr, err := trainer.New(opts, nil, comms)
	if err != nil {
		return nil, err
	}
	tr.CheckpointFiles = tokenizerFiles(tok) // every checkpoint carries its tokenizer
	if lo := tr.Model.LoRA; lo != nil {
		logf("lora: rank %d, alpha %g on %s: %d trainable parameters on this rank (base frozen: %d)\n",
			lo.Config.Rank, lo.Config.Alpha, strings.Join(lo.Config.Targets, ","), tr.Model.Params.Count(), lo.Base.Count())
		return tr, nil
	}
	if f.ckpt != "" {
		if err := finetune.LoadWeights(f.ckpt, tr.Model); err != nil {
			tr.Close()
			return nil, err
		}
		logf("initialized from %s\n", f.ckpt)
	}
	return tr, nil
}

// loopConfig is the run loop's configuration for a fine-tuning command;
// a LoRA run records next to its checkpoints how to merge them.
func (f *ftFlags) loopConfig(tr *trainer.Trainer, dist *distributed, stdout, stderr io.Writer) trainer.RunConfig {
	rc := f.run.config(dist, f.launch.LogFormat, stdout, stderr)
	if tr != nil && tr.Model.LoRA != nil {
		rc.Hooks.Saved = f.adapterSaved(tr.Model.LoRA.Config)
	}
	return rc
}

// adapterSaved writes adapter_config.json (the adapters' configuration and
// base) into the run directory after each checkpoint.
func (f *ftFlags) adapterSaved(lc model.LoRAConfig) func(string) error {
	return func(string) error {
		base := f.ckpt
		if base != "" {
			var err error
			if base, err = filepath.Abs(base); err != nil {
				return err
			}
		}
		return finetune.WriteAdapterConfig(f.run.out, finetune.AdapterConfig{LoRAConfig: lc, Base: base})
	}
}

// trainerSteps drives tr in the run loop; fields, when set, adds the
// objective's statistics to every step's record.
func (f *ftFlags) trainerSteps(tr *trainer.Trainer, rank int, dist *distributed, fields func(context.Context, trainer.StepStats) ([]progress.Field, error)) *trainer.Steps {
	s := &trainer.Steps{T: tr, Rank: rank, Seed: f.seed, Fields: fields}
	if dist != nil {
		s.Barrier = dist.job.barrier
	}
	return s
}
