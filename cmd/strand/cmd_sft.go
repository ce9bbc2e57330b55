package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/finetune"
	"github.com/strand-ml/strand/launcher"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/metrics"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
	"github.com/strand-ml/strand/parallel/pipeline"
	"github.com/strand-ml/strand/trainer"
	"github.com/strand-ml/strand/worker"
)

// sftFlags configure `strand sft`: supervised fine-tuning of a checkpoint
// on a JSONL file (see package finetune for formats and the template).
type sftFlags struct {
	model        modelFlags // architecture when starting without --ckpt
	launch       *launcher.Flags
	ckpt         string
	dataPath     string
	tokenizerDir string
	onBad        string
	out          string
	steps        int
	batch, seq   int
	micro        int
	schedule     string
	lr           float64
	warmup       int
	minLRFrac    float64
	clip, wd     float64
	seed         uint64
	threads      int
	pack         bool
	shuffle      bool
	valFrac      float64
	keep         int
	vocabSize    int // the model's, set once the config is known
}

func (f *sftFlags) register(fs *flag.FlagSet) {
	f.model.register(fs)
	f.launch = launcher.AddFlags(fs)
	fs.StringVar(&f.ckpt, "ckpt", "", "base checkpoint or run directory (default: a fresh --model; for tests)")
	fs.StringVar(&f.dataPath, "data", "", "JSONL file: {\"prompt\",\"response\"} or {\"messages\":[{\"role\",\"content\"}...]} per line")
	fs.StringVar(&f.tokenizerDir, "tokenizer", "", "BPE tokenizer directory (default: bytes, ids 0-255)")
	fs.StringVar(&f.onBad, "on-bad-record", "fail", "malformed JSONL line: skip (report its line number and count it) or fail")
	fs.StringVar(&f.out, "out", "runs/sft", "run directory: metrics.jsonl, checkpoints/")
	fs.IntVar(&f.steps, "steps", 100, "optimizer steps")
	fs.IntVar(&f.batch, "batch", 8, "global batch: rows per optimizer step over all data-parallel ranks")
	fs.IntVar(&f.seq, "seq", 0, "positions per row (default: the model's positions)")
	fs.IntVar(&f.micro, "microbatches", 1, "micro-batches per step on each data-parallel rank")
	fs.StringVar(&f.schedule, "schedule", pipeline.OneFOneB, "pipeline schedule: gpipe or 1f1b")
	fs.Float64Var(&f.lr, "lr", 3e-4, "peak learning rate")
	fs.IntVar(&f.warmup, "warmup", 0, "linear warm-up steps")
	fs.Float64Var(&f.minLRFrac, "min-lr-frac", 0.1, "final learning rate as a fraction of --lr (cosine decay)")
	fs.Float64Var(&f.clip, "grad-clip", 1.0, "max global gradient norm (0 disables)")
	fs.Float64Var(&f.wd, "weight-decay", 0.0, "AdamW decoupled weight decay on matrices")
	fs.Uint64Var(&f.seed, "seed", 1337, "seed for a fresh model and the data order")
	fs.IntVar(&f.threads, "threads", 0, "compute goroutines per process (default: all cores, shared among local workers)")
	fs.BoolVar(&f.pack, "pack", true, "pack several examples per row (attention stays inside each example)")
	fs.BoolVar(&f.shuffle, "shuffle", true, "shuffle rows each epoch")
	fs.Float64Var(&f.valFrac, "val-frac", 0.1, "fraction of the records (the file's tail) held out for exact-match evaluation")
	fs.IntVar(&f.keep, "keep", 1, "checkpoints to keep")
}

func runSFT(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f sftFlags
	fs := newFlags("sft", stderr)
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if f.dataPath == "" {
		return usageError{"sft: --data FILE.jsonl is required"}
	}
	if _, err := finetune.ParsePolicy(f.onBad); err != nil {
		return usageError{err.Error()}
	}
	if worker.InJob() {
		return asWorker(ctx, f.launch, &f.threads, func(ctx context.Context, d *distributed) error {
			return sftLoop(ctx, &f, d, stdout, stderr)
		})
	}
	if err := f.launch.Validate(); err != nil {
		return usageError{err.Error()}
	}
	world := f.launch.World()
	m, err := f.launch.Mesh(world)
	if err != nil {
		return usageError{err.Error()}
	}
	if _, err := f.options(m); err != nil { // fail before any process starts
		return err
	}
	if !f.launch.Launching() || world == 1 && !f.launch.MultiNode() {
		return sftLoop(ctx, &f, nil, stdout, stderr)
	}
	return launchJob(ctx, f.launch, m, []string{"sft"}, args, stdout, stderr)
}

// options turns the flags into trainer options for mesh m.
func (f *sftFlags) options(m mesh.Mesh) (trainer.Options, error) {
	var cfg model.Config
	var err error
	if f.ckpt != "" {
		dir, warns, err := checkpoint.Resolve(f.ckpt)
		for _, w := range warns {
			fmt.Fprintln(os.Stderr, "warning:", w)
		}
		if err != nil {
			return trainer.Options{}, err
		}
		if cfg, err = checkpoint.ReadConfig(dir); err != nil {
			return trainer.Options{}, err
		}
		f.ckpt = dir
	} else if cfg, err = f.model.config(); err != nil {
		return trainer.Options{}, usageError{err.Error()}
	}
	if f.seq == 0 {
		f.seq = cfg.NPositions
	}
	if f.steps <= 0 {
		return trainer.Options{}, usageError{fmt.Sprintf("--steps %d must be positive", f.steps)}
	}
	if f.valFrac < 0 || f.valFrac >= 1 {
		return trainer.Options{}, usageError{fmt.Sprintf("--val-frac %g outside [0, 1)", f.valFrac)}
	}
	adam := optim.DefaultAdamW()
	adam.WeightDecay = f.wd
	opts := trainer.Options{
		Model: cfg, Batch: f.batch, Seq: f.seq, Micro: f.micro, Schedule: f.schedule, Steps: f.steps,
		LR: f.lr, Warmup: f.warmup, MinLRFrac: f.minLRFrac, GradClip: f.clip, AdamW: adam,
		Seed: f.seed, Threads: f.threads,
	}
	if err := opts.Validate(m); err != nil {
		return opts, usageError{err.Error()}
	}
	return opts, nil
}

// sftData reads, splits, encodes and packs the data file. Every rank does
// the same work on the same file, so all agree on the rows.
func sftData(f *sftFlags, logf func(string, ...any)) (train *finetune.Packed, held []finetune.Example, eos int32, err error) {
	policy, _ := finetune.ParsePolicy(f.onBad)
	tok, err := loadTokenizer(f.tokenizerDir)
	if err != nil {
		return nil, nil, 0, err
	}
	fh, err := os.Open(f.dataPath)
	if err != nil {
		return nil, nil, 0, err
	}
	defer fh.Close()
	recs, rep, err := finetune.ReadJSONL(fh, finetune.SFT, policy)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("%s: %w", f.dataPath, err)
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
		return nil, nil, 0, fmt.Errorf("%s: no usable records", f.dataPath)
	}
	enc := finetune.NewEncoder(tok)
	var exs []finetune.Example
	for _, r := range recs {
		ex, err := enc.SFT(r)
		if err != nil {
			return nil, nil, 0, err
		}
		for _, id := range ex.Tokens {
			if int(id) >= f.vocabSize {
				return nil, nil, 0, fmt.Errorf("line %d: token %d outside the model's vocabulary of %d", r.Line, id, f.vocabSize)
			}
		}
		exs = append(exs, ex)
	}
	nHeld := int(f.valFrac * float64(len(exs)))
	if nHeld == len(exs) {
		nHeld = len(exs) - 1
	}
	held = exs[len(exs)-nHeld:]
	train, err = finetune.Pack(exs[:len(exs)-nHeld], f.seq, f.pack, enc.EOS)
	if err != nil {
		return nil, nil, 0, err
	}
	logf("packed %d training examples into %d rows of %d (%d truncated, %d dropped with nothing to train, %d padding positions); %d held out\n",
		train.Examples, train.Rows, f.seq, train.Truncated, train.Dropped, train.Padding, len(held))
	return train, held, enc.EOS, nil
}

// sftLoop fine-tunes this process's part of the model.
func sftLoop(ctx context.Context, f *sftFlags, dist *distributed, stdout, stderr io.Writer) error {
	rank, m := 0, mesh.Mesh{DP: 1, TP: 1, PP: 1}
	var comms *trainer.Comms
	coord := mesh.Coord{}
	if dist != nil {
		comms, rank, m, coord = dist.comms, dist.job.rank, dist.comms.Mesh, dist.comms.Coord
	}
	lead := rank == 0
	logf := func(format string, a ...any) {
		if lead {
			fmt.Fprintf(stderr, format, a...)
		}
	}
	opts, err := f.options(m)
	if err != nil {
		return err
	}
	f.vocabSize = opts.Model.VocabSize
	packed, held, _, err := sftData(f, logf)
	if err != nil {
		return err
	}
	batches, err := finetune.NewBatches(packed, finetune.BatchConfig{
		Batch: opts.RowsPerRank(m), DPRank: coord.DP, DPSize: m.DP, Shuffle: f.shuffle, Seed: f.seed})
	if err != nil {
		return err
	}
	tr, err := trainer.New(opts, nil, comms)
	if err != nil {
		return err
	}
	defer tr.Close()
	tr.Source = batches
	if f.ckpt != "" {
		if err := checkpoint.LoadModel(f.ckpt, tr.Model); err != nil {
			return err
		}
		logf("initialized from %s\n", f.ckpt)
	}
	logf("sft: mesh %v | global batch %d x %d positions | %d steps\n", m, f.batch, f.seq, f.steps)
	var mw *metrics.JSONL
	if lead {
		if err := os.MkdirAll(f.out, 0o755); err != nil {
			return err
		}
		if mw, err = metrics.NewJSONL(filepath.Join(f.out, "metrics.jsonl")); err != nil {
			return err
		}
		defer mw.Close()
	}
	start := time.Now()
	var last trainer.StepStats
	for tr.Step < f.steps {
		st, err := tr.TrainStep(ctx)
		if err != nil {
			return err
		}
		last = st
		if dist != nil {
			dist.job.report(st.Step, map[string]float64{"loss": st.Loss, "step_seconds": st.Seconds})
		}
		if lead {
			if err := mw.Write(map[string]any{"step": st.Step, "loss": st.Loss, "lr": st.LR, "grad_norm": st.GradNorm, "step_seconds": st.Seconds}); err != nil {
				return err
			}
			if st.Step == 1 || st.Step%10 == 0 || st.Step == f.steps {
				fmt.Fprintf(stdout, "step %d/%d loss %.4f lr %.2e grad norm %.3f\n", st.Step, f.steps, st.Loss, st.LR, st.GradNorm)
			}
		}
	}
	var barrier trainer.Barrier
	if dist != nil {
		barrier = dist.job.barrier
	}
	dir, err := tr.Save(ctx, f.out, f.keep, rank, barrier, trainer.State{Seed: f.seed})
	if err != nil {
		return err
	}
	if !lead {
		return nil
	}
	msg := fmt.Sprintf("done: %d steps in %s, final loss %.4f, checkpoint %s", f.steps, time.Since(start).Round(time.Millisecond), last.Loss, dir)
	if len(held) > 0 && m.TP == 1 && m.PP == 1 {
		em, err := finetune.ExactMatch(ctx, tr.Model, held)
		if err != nil {
			return err
		}
		if err := mw.Write(map[string]any{"step": tr.Step, "exact_match": em, "held_out": len(held)}); err != nil {
			return err
		}
		msg += fmt.Sprintf("\nexact match %.1f%% on %d held-out examples", 100*em, len(held))
	}
	fmt.Fprintln(stdout, msg)
	return nil
}
