package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/finetune"
	"github.com/strand-ml/strand/launcher"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/metrics"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
	dpdata "github.com/strand-ml/strand/parallel/data"
	"github.com/strand-ml/strand/parallel/pipeline"
	"github.com/strand-ml/strand/trainer"
	"github.com/strand-ml/strand/worker"
)

// This file holds the job plumbing the fine-tuning commands (sft, and the
// later stages) share: launching local or multi-node workers running the
// same subcommand, and a worker joining its job and building the trainer's
// communicators; strand train uses asWorker too and adds elastic restarts
// around the launch.

// launchJob starts the workers of a job for subcommand name with args.
func launchJob(ctx context.Context, lf *launcher.Flags, m mesh.Mesh, name []string, args []string, stdout, stderr io.Writer) error {
	common := launcher.Common{
		Transport: lf.Transport, Bind: lf.Bind, LogFormat: lf.LogFormat, Token: lf.Token,
		JoinTimeout: lf.JoinTimeout, MetricsAddr: lf.Metrics,
		TLSCert: lf.TLSCert, TLSKey: lf.TLSKey, TLSCA: lf.TLSCA, TLSAuto: lf.TLSAuto,
	}
	argv := append(append([]string(nil), name...), args...)
	fmt.Fprintln(stderr, launcher.LaunchLine(lf.NNodes, lf.NodeRank, lf.NProcPerNode, m, 0))
	if lf.MultiNode() {
		return launcher.Node(ctx, launcher.NodeConfig{
			NNodes: lf.NNodes, NodeRank: lf.NodeRank, Coordinator: lf.Coordinator, NProcPerNode: lf.NProcPerNode,
			Mesh: m, Args: argv, Stdout: stdout, Stderr: stderr, Common: common,
		})
	}
	return launcher.Local(ctx, launcher.LocalConfig{NProc: m.World(), Mesh: m, Args: argv, Stdout: stdout, Stderr: stderr, Common: common})
}

// asWorker joins the job this process was launched into, builds the
// trainer's communicators (with the tied-embedding group between first and
// last pipeline stage) and runs body; the outcome is reported when leaving.
// threads is set to the machine's cores shared among the job's ranks when 0.
func asWorker(ctx context.Context, lf *launcher.Flags, threads *int, body func(ctx context.Context, d *distributed) error) error {
	rt, err := worker.Join(ctx, worker.FromFlags(lf))
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancelCause(rt.Context())
	defer stop(nil)
	go func() {
		select {
		case <-ctx.Done():
			stop(fmt.Errorf("interrupted: %w", context.Cause(ctx)))
		case <-runCtx.Done():
		}
	}()
	err = func() error {
		if *threads == 0 {
			*threads = max(1, runtime.NumCPU()/rt.Mesh.World())
		}
		comms := &trainer.Comms{Mesh: rt.Mesh, Coord: rt.Coord, DP: rt.DP, TP: rt.TP, PP: rt.PP}
		if rt.Mesh.PP > 1 && (rt.Coord.PP == 0 || rt.Coord.PP == rt.Mesh.PP-1) {
			first, last := rt.Coord, rt.Coord
			first.PP, last.PP = 0, rt.Mesh.PP-1
			ranks := []int{rt.Mesh.Rank(first), rt.Mesh.Rank(last)}
			if comms.Embed, err = collective.New(rt.Transport, ranks, collective.Options{Name: "tied-embedding", Flight: rt.Flight}); err != nil {
				return err
			}
		}
		job := &jobInfo{rank: rt.Rank, world: rt.Mesh.World(), report: rt.Report, barrier: rt.Barrier}
		for _, mb := range rt.Members {
			job.hosts = append(job.hosts, mb.GetHost())
		}
		return body(runCtx, &distributed{comms: comms, job: job})
	}()
	if err == nil && context.Cause(runCtx) != nil && rt.Context().Err() == nil {
		err = context.Cause(runCtx)
	}
	err = launcher.WithCause(ctx, err) // e.g. the launcher is gone
	lctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return rt.Leave(lctx, err)
}

// ftFlags are the flags every fine-tuning command shares.
type ftFlags struct {
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
	shuffle      bool
	valFrac      float64
	keep         int
	vocabSize    int // the model's, set once the config is known
	loraRank     int
	loraAlpha    float64
	loraTargets  string
	// trainer flags (registerTrainer: sft, dpo, rm train)
	resume    bool
	ckptEvery int
	stopAfter int
	zero1     bool
}

// registerTrainer adds --resume, --ckpt-every, --stop-after and --zero1 for
// the commands that train on the trainer (sft, dpo, rm train).
func (f *ftFlags) registerTrainer(fs *flag.FlagSet) {
	fs.BoolVar(&f.zero1, "zero1", false, "ZeRO-1: shard optimizer state across data-parallel ranks")
	fs.BoolVar(&f.resume, "resume", false, "continue from the newest committed checkpoint in --out (weights, optimizer, schedule, step, data position), in any layout")
	fs.IntVar(&f.ckptEvery, "ckpt-every", 0, "checkpoint every N steps (0: only at the end)")
	fs.IntVar(&f.stopAfter, "stop-after", 0, "stop after this step (checkpointing it), as if interrupted; the schedule still spans --steps")
}

// lastStep is the step this run stops after: --steps, or --stop-after.
func (f *ftFlags) lastStep() int {
	if f.stopAfter > 0 {
		return min(f.steps, f.stopAfter)
	}
	return f.steps
}

// saveDue says whether to checkpoint after step: every --ckpt-every steps
// and after the run's last step.
func (f *ftFlags) saveDue(step int) bool {
	return step == f.lastStep() || (f.ckptEvery > 0 && step%f.ckptEvery == 0)
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
	tok, err := loadTokenizer(f.tokenizerDir)
	if err != nil {
		return
	}
	enc = finetune.NewEncoder(tok)
	recs, err = f.readRecords(finetune.Pair, logf)
	return
}

// resumeFrom restores tr from the newest committed checkpoint in --out
// when --resume is set (none there: training starts at step 0). Set the
// trainer's Source and head objective first: Restore positions them. It
// returns the checkpoint directory ("" when none).
func (f *ftFlags) resumeFrom(tr *trainer.Trainer, logf func(string, ...any)) (string, error) {
	if !f.resume {
		return "", nil
	}
	dir, err := resumeCheckpoint(f.out, logf)
	if dir == "" || err != nil {
		return "", err
	}
	st, err := tr.Restore(dir)
	if err != nil {
		return "", err
	}
	logf("resumed from %s (step %d, written under %s)\n", dir, st.Step, st.Layout)
	return dir, nil
}

func (f *ftFlags) register(fs *flag.FlagSet, name, format string, lr float64) {
	f.model.register(fs)
	f.launch = launcher.AddFlags(fs)
	fs.StringVar(&f.ckpt, "ckpt", "", "base checkpoint or run directory (default: a fresh --model; for tests)")
	fs.StringVar(&f.dataPath, "data", "", "JSONL file: "+format)
	fs.StringVar(&f.tokenizerDir, "tokenizer", "", "BPE tokenizer directory (default: bytes, ids 0-255)")
	fs.StringVar(&f.onBad, "on-bad-record", "fail", "malformed JSONL line: skip (report its line number and count it) or fail")
	fs.StringVar(&f.out, "out", "runs/"+name, "run directory: metrics.jsonl, checkpoints/")
	fs.IntVar(&f.steps, "steps", 100, "optimizer steps")
	fs.IntVar(&f.batch, "batch", 8, "global batch: rows per optimizer step over all data-parallel ranks")
	fs.IntVar(&f.seq, "seq", 0, "positions per row (default: the model's positions)")
	fs.IntVar(&f.micro, "microbatches", 1, "micro-batches per step on each data-parallel rank")
	fs.StringVar(&f.schedule, "schedule", pipeline.OneFOneB, "pipeline schedule: gpipe or 1f1b")
	fs.Float64Var(&f.lr, "lr", lr, "peak learning rate")
	fs.IntVar(&f.warmup, "warmup", 0, "linear warm-up steps")
	fs.Float64Var(&f.minLRFrac, "min-lr-frac", 0.1, "final learning rate as a fraction of --lr (cosine decay)")
	fs.Float64Var(&f.clip, "grad-clip", 1.0, "max global gradient norm (0 disables)")
	fs.Float64Var(&f.wd, "weight-decay", 0.0, "AdamW decoupled weight decay on matrices")
	fs.Uint64Var(&f.seed, "seed", 1337, "seed for a fresh model and the data order")
	fs.IntVar(&f.threads, "threads", 0, "compute goroutines per process (default: all cores, shared among local workers)")
	fs.BoolVar(&f.shuffle, "shuffle", true, "shuffle the data each epoch")
	fs.Float64Var(&f.valFrac, "val-frac", 0.1, "fraction of the records (the file's tail) held out for evaluation")
	fs.IntVar(&f.keep, "keep", 1, "checkpoints to keep")
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

// check validates what needs no model.
func (f *ftFlags) check(name string) error {
	if f.dataPath == "" {
		return usageError{name + ": --data FILE.jsonl is required"}
	}
	if _, err := finetune.ParsePolicy(f.onBad); err != nil {
		return usageError{err.Error()}
	}
	return nil
}

// options turns the flags into trainer options for mesh m: the model is
// --ckpt's (resolved to its newest committed checkpoint) or a fresh --model.
func (f *ftFlags) options(m mesh.Mesh) (trainer.Options, error) {
	cfg, err := f.config()
	if err != nil {
		return trainer.Options{}, err
	}
	if f.steps <= 0 {
		return trainer.Options{}, usageError{fmt.Sprintf("--steps %d must be positive", f.steps)}
	}
	if f.ckptEvery < 0 || f.stopAfter < 0 {
		return trainer.Options{}, usageError{fmt.Sprintf("--ckpt-every %d and --stop-after %d must not be negative", f.ckptEvery, f.stopAfter)}
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
		Model: cfg, Batch: f.batch, Seq: f.seq, Micro: f.micro, Schedule: f.schedule, Steps: f.steps,
		LR: f.lr, Warmup: f.warmup, MinLRFrac: f.minLRFrac, GradClip: f.clip, AdamW: adam,
		Seed: f.seed, Threads: f.threads, DP: dpdata.Options{ZeRO1: f.zero1},
	}
	if lc != nil {
		// The base weights load before the adapters become the model's
		// trainable parameters; checkpoints then hold only the adapters.
		ckpt, seed := f.ckpt, f.seed
		opts.Adapt = func(m *model.GPT) error {
			if ckpt != "" {
				if err := checkpoint.LoadModel(ckpt, m); err != nil {
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
		dir, warns, err := checkpoint.Resolve(f.ckpt)
		for _, w := range warns {
			fmt.Fprintln(os.Stderr, "warning:", w)
		}
		if err != nil {
			return cfg, err
		}
		if cfg, err = checkpoint.ReadConfig(dir); err != nil {
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

// oneProcess is the mesh of a single process.
func oneProcess() mesh.Mesh { return mesh.Mesh{DP: 1, TP: 1, PP: 1} }

// run is the launcher side of a fine-tuning command: inside a job it runs
// loop as a worker; otherwise it checks the flags and runs loop in this
// process or launches the workers.
func (f *ftFlags) run(ctx context.Context, name string, args []string, loop func(ctx context.Context, d *distributed) error, stdout, stderr io.Writer) error {
	if err := f.check(name); err != nil {
		return err
	}
	if worker.InJob() {
		return asWorker(ctx, f.launch, &f.threads, loop)
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
		return loop(ctx, nil)
	}
	return launchJob(ctx, f.launch, m, strings.Fields(name), args, stdout, stderr)
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

// runInfo returns the mesh facts of this process and a logger for rank 0.
func runInfo(dist *distributed, stderr io.Writer) (rank int, m mesh.Mesh, coord mesh.Coord, comms *trainer.Comms, logf func(string, ...any)) {
	m = mesh.Mesh{DP: 1, TP: 1, PP: 1}
	if dist != nil {
		comms, rank, m, coord = dist.comms, dist.job.rank, dist.comms.Mesh, dist.comms.Coord
	}
	lead := rank == 0
	logf = func(format string, a ...any) {
		if lead {
			fmt.Fprintf(stderr, format, a...)
		}
	}
	return rank, m, coord, comms, logf
}

// newTrainer builds the trainer and loads --ckpt into it.
func (f *ftFlags) newTrainer(opts trainer.Options, comms *trainer.Comms, logf func(string, ...any)) (*trainer.Trainer, error) {
	tr, err := trainer.New(opts, nil, comms)
	if err != nil {
		return nil, err
	}
	if lo := tr.Model.LoRA; lo != nil {
		logf("lora: rank %d, alpha %g on %s: %d trainable parameters on this rank (base frozen: %d)\n",
			lo.Config.Rank, lo.Config.Alpha, strings.Join(lo.Config.Targets, ","), tr.Model.Params.Count(), lo.Base.Count())
		return tr, nil
	}
	if f.ckpt != "" {
		if err := checkpoint.LoadModel(f.ckpt, tr.Model); err != nil {
			tr.Close()
			return nil, err
		}
		logf("initialized from %s\n", f.ckpt)
	}
	return tr, nil
}

// openMetrics opens --out/metrics.jsonl on the lead rank (appending under
// --resume); elsewhere the returned writer discards records.
func (f *ftFlags) openMetrics(lead bool) (*metricsFile, error) {
	if !lead {
		return &metricsFile{}, nil
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return nil, err
	}
	open := metrics.NewJSONL
	if f.resume {
		open = metrics.AppendJSONL
	}
	w, err := open(filepath.Join(f.out, "metrics.jsonl"))
	if err != nil {
		return nil, err
	}
	return &metricsFile{w: w}, nil
}

// logResume records in the metrics where a resumed run continues from.
func (f *ftFlags) logResume(mw *metricsFile, step int, m mesh.Mesh) error {
	if !f.resume {
		return nil
	}
	return mw.Write(map[string]any{"event": "resume", "resumed_from_step": step, "layout": m.String()})
}

// metricsFile is a metrics.jsonl writer that is a no-op off the lead rank.
type metricsFile struct{ w *metrics.JSONL }

func (m *metricsFile) Write(rec map[string]any) error {
	if m.w == nil {
		return nil
	}
	return m.w.Write(rec)
}

func (m *metricsFile) Close() error {
	if m.w == nil {
		return nil
	}
	return m.w.Close()
}

// save writes the final checkpoint (every rank calls it).
func (f *ftFlags) save(ctx context.Context, tr *trainer.Trainer, rank int, dist *distributed) (string, error) {
	return f.saveState(ctx, tr, rank, dist, trainer.State{Seed: f.seed})
}

// saveState writes a checkpoint with st's seed and extra keys (every rank
// calls it).
func (f *ftFlags) saveState(ctx context.Context, tr *trainer.Trainer, rank int, dist *distributed, st trainer.State) (string, error) {
	var barrier trainer.Barrier
	if dist != nil {
		barrier = dist.job.barrier
	}
	dir, err := tr.Save(ctx, f.out, f.keep, rank, barrier, st)
	if err != nil || rank != 0 || tr.Model.LoRA == nil {
		return dir, err
	}
	// LoRA: the checkpoint holds the adapters; record how to merge them.
	base := f.ckpt
	if base != "" {
		if base, err = filepath.Abs(base); err != nil {
			return dir, err
		}
	}
	return dir, writeAdapterConfig(f.out, adapterConfig{LoRAConfig: tr.Model.LoRA.Config, Base: base})
}
