package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/launcher"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/metrics"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
	dpdata "github.com/strand-ml/strand/parallel/data"
	"github.com/strand-ml/strand/parallel/pipeline"
	"github.com/strand-ml/strand/plot"
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
	hidden                           int
	activation, norm                 string
	pos                              string
	ropeBase                         float64
	scaling                          ropeScalingFlags
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
	steps, batch, seq      int
	micro, warmup          int
	schedule               string
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
	bucketMB               float64
	bf16Grads, zero1       bool
	tracePath              string
	stageLayers            string
	resume                 bool
	maxRestarts            int
	restartCount           int
	stopAfter              int
	asyncSave              bool
	precision              string
	gradCompress           string
}

func (f *trainFlags) register(fs *flag.FlagSet) {
	f.model.register(fs)
	f.launch = launcher.AddFlags(fs)
	fs.IntVar(&f.steps, "steps", 200, "optimizer steps")
	fs.IntVar(&f.batch, "batch", 0, "global batch: sequences per optimizer step over all data-parallel ranks (default: the preset's)")
	fs.IntVar(&f.seq, "seq", 0, "tokens per sequence (default: the model's positions)")
	fs.IntVar(&f.micro, "microbatches", 1, "micro-batches per step on each data-parallel rank (gradient accumulation; pipeline micro-batches)")
	fs.IntVar(&f.micro, "accum", 1, "alias of --microbatches")
	fs.StringVar(&f.schedule, "schedule", pipeline.OneFOneB, "pipeline schedule: gpipe or 1f1b")
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
	fs.StringVar(&f.out, "out", "runs/train", "run directory: metrics.jsonl, loss.png, checkpoints/")
	fs.StringVar(&f.initFrom, "init-from", "", "start from the weights of a checkpoint or run directory")
	fs.IntVar(&f.ckptEvery, "ckpt-every", 0, "checkpoint every N steps (0: only at the end)")
	fs.IntVar(&f.keep, "keep", 3, "checkpoints to keep (0 keeps all)")
	fs.IntVar(&f.evalEvery, "eval-every", 0, "validation loss every N steps (0: only at the end)")
	fs.IntVar(&f.evalBatches, "eval-batches", 8, "validation batches per evaluation")
	fs.IntVar(&f.threads, "threads", 0, "compute goroutines per process (default: all cores, shared among local workers)")
	fs.BoolVar(&f.shuffle, "shuffle", false, "shuffle sequence windows each epoch (default: sequential, comparable with llm.c)")
	fs.BoolVar(&f.noProgress, "no-progress", false, "print plain progress lines instead of redrawing one")
	fs.StringVar(&f.kernel, "kernel", "", "force a GEMM kernel (portable, avx2, avx512)")
	fs.Float64Var(&f.bucketMB, "bucket-mb", 25, "data-parallel gradient bucket size in MB")
	fs.BoolVar(&f.bf16Grads, "bf16-grads", false, "all-reduce gradients as bfloat16")
	fs.StringVar(&f.precision, "precision", "fp32", "precision of the model's matrix products: fp32, bf16 (bf16 operands, float32 accumulation and master weights) or fp16 (emulated, dynamic loss scaling)")
	fs.StringVar(&f.gradCompress, "grad-compress", "none", "data-parallel gradient compression: none, bf16 (same as --bf16-grads), fp8 (E4M3 with a per-bucket scale) or fp8-e5m2")
	fs.BoolVar(&f.zero1, "zero1", false, "ZeRO-1: shard optimizer state across data-parallel ranks")
	fs.StringVar(&f.tracePath, "trace", "", "write a Chrome/Perfetto trace of every rank's schedule to this file")
	fs.BoolVar(&f.resume, "resume", false, "continue from the last committed checkpoint in --out (weights, optimizer, step, data position), in any layout")
	fs.IntVar(&f.maxRestarts, "max-restarts", 0, "when a worker dies, restart the job up to N times from the last checkpoint")
	fs.BoolVar(&f.asyncSave, "async-save", false, "write checkpoints in the background (state is snapshotted in memory first)")
	fs.IntVar(&f.stopAfter, "stop-after", 0, "stop after this step (checkpointing it), as if interrupted; the schedule still spans --steps")
	fs.IntVar(&f.restartCount, "restart-count", 0, "set by the launcher on an elastic restart (recorded in metrics)")
}

func runTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f trainFlags
	fs := newFlags("train", stderr)
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if worker.InJob() {
		return trainWorker(ctx, &f, stdout, stderr)
	}
	if err := f.launch.Validate(); err != nil {
		return usageError{err.Error()}
	}
	world := f.launch.World()
	m, err := f.launch.Mesh(world)
	if err != nil {
		return usageError{err.Error()}
	}
	// Check everything a worker would check, so a bad mesh or config fails
	// here, before any process starts.
	opts, _, err := f.options(m)
	if err != nil {
		return err
	}
	if !f.launch.Launching() || world == 1 && !f.launch.MultiNode() {
		return trainLoop(ctx, &f, opts, nil, stdout, stderr)
	}
	common := launcher.Common{
		Transport: f.launch.Transport, Bind: f.launch.Bind, LogFormat: f.launch.LogFormat, Token: f.launch.Token,
		JoinTimeout: f.launch.JoinTimeout, MetricsAddr: f.launch.Metrics,
		TLSCert: f.launch.TLSCert, TLSKey: f.launch.TLSKey, TLSCA: f.launch.TLSCA, TLSAuto: f.launch.TLSAuto,
	}
	argv := append([]string{"train"}, args...)
	nnodes, nodeRank := f.launch.NNodes, f.launch.NodeRank
	for restart := 0; ; restart++ {
		// Every (re)start is an epoch: coordinator and workers refuse
		// anyone of another epoch.
		common.Epoch = int64(restart)
		if restart > 0 && f.launch.MultiNode() {
			// The nodes that are back agree, through node 0, on the new
			// epoch's nodes and mesh (smaller DP when a node is gone and
			// --min-nodes allows it).
			plan, rerr := launcher.Regroup(ctx, launcher.RegroupConfig{
				NNodes: nnodes, NodeRank: nodeRank, MinNodes: min(f.launch.MinNodesOrAll(), nnodes), NProcPerNode: f.launch.NProcPerNode,
				Coordinator: f.launch.Coordinator, Mesh: m, Timeout: f.launch.RejoinTimeout, Common: common,
			})
			if rerr != nil {
				return fmt.Errorf("elastic restart %d: %w (the job failed with: %v)", restart, rerr, err)
			}
			fmt.Fprintf(stderr, "strand train: regrouped for epoch %d: %d of %d node(s) back, this is node %d\n", restart, plan.NNodes, nnodes, plan.NodeRankOf(nodeRank))
			if pm := plan.Mesh(); pm != m {
				if _, _, oerr := f.options(pm); oerr != nil {
					return fmt.Errorf("elastic restart %d on %d node(s), mesh %v: %w", restart, plan.NNodes, pm, oerr)
				}
				fmt.Fprintf(stderr, "strand train: continuing on %d of %d node(s) (missing %v): mesh %v -> %v\n", plan.NNodes, nnodes, plan.Missing, m, pm)
			}
			nnodes, nodeRank, m = plan.NNodes, plan.NodeRankOf(nodeRank), plan.Mesh()
			world = m.World()
		}
		fmt.Fprintln(stderr, launcher.LaunchLine(nnodes, nodeRank, f.launch.NProcPerNode, m, restart))
		if f.launch.MultiNode() {
			err = launcher.Node(ctx, launcher.NodeConfig{
				NNodes: nnodes, NodeRank: nodeRank, Coordinator: f.launch.Coordinator, NProcPerNode: f.launch.NProcPerNode,
				Mesh: m, Args: argv, Stdout: stdout, Stderr: stderr, Common: common,
			})
		} else {
			err = launcher.Local(ctx, launcher.LocalConfig{NProc: world, Mesh: m, Args: argv, Stdout: stdout, Stderr: stderr, Common: common})
		}
		if err == nil || restart >= f.maxRestarts || ctx.Err() != nil {
			if err != nil && f.maxRestarts > 0 && restart >= f.maxRestarts && ctx.Err() == nil {
				err = fmt.Errorf("%w (the job failed again after its last restart: all %d restarts are used up)", err, f.maxRestarts)
			}
			break
		}
		// Elastic recovery: the failed job is torn down; start a new one
		// (new coordinator, new epoch) that resumes from the last
		// committed checkpoint.
		fmt.Fprintf(stderr, "strand train: job failed (%v); restart %d of %d from the last checkpoint in %s\n", err, restart+1, f.maxRestarts, f.out)
		argv = withResume(argv, restart+1)
	}
	return err
}

// withResume returns argv with --resume set and the restart count recorded
// (workers write it into the metrics).
func withResume(argv []string, restart int) []string {
	out := make([]string, 0, len(argv)+2)
	for _, a := range argv {
		if a == "--resume" || a == "-resume" || strings.HasPrefix(a, "--restart-count") {
			continue
		}
		out = append(out, a)
	}
	return append(out, "--resume", fmt.Sprintf("--restart-count=%d", restart))
}

// options turns the flags into trainer options for mesh m.
func (f *trainFlags) options(m mesh.Mesh) (trainer.Options, model.Config, error) {
	cfg, err := f.model.config()
	if err != nil {
		return trainer.Options{}, cfg, usageError{err.Error()}
	}
	if f.initFrom != "" {
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
	if f.steps <= 0 {
		return trainer.Options{}, cfg, usageError{fmt.Sprintf("--steps %d must be positive", f.steps)}
	}
	if f.warmup == 0 {
		f.warmup = f.steps / 20
	}
	if f.valFrac < 0 || f.valFrac >= 1 {
		return trainer.Options{}, cfg, usageError{fmt.Sprintf("--val-frac %g outside [0, 1)", f.valFrac)}
	}
	var stageLayers []int
	if f.stageLayers != "" {
		for _, part := range strings.Split(f.stageLayers, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(part))
			if err != nil {
				return trainer.Options{}, cfg, usageError{fmt.Sprintf("--stage-layers %q: %v", f.stageLayers, err)}
			}
			stageLayers = append(stageLayers, n)
		}
	}
	adam := optim.DefaultAdamW()
	adam.WeightDecay = f.wd
	bf16Grads, fp8Grads := f.bf16Grads, ""
	switch f.gradCompress {
	case "none", "":
	case "bf16":
		bf16Grads = true
	case "fp8", "fp8-e4m3", "fp8-e5m2":
		fp8Grads = f.gradCompress
	default:
		return trainer.Options{}, cfg, usageError{fmt.Sprintf("--grad-compress %q is not one of none, bf16, fp8, fp8-e5m2", f.gradCompress)}
	}
	if fp8Grads != "" && bf16Grads {
		return trainer.Options{}, cfg, usageError{"--bf16-grads and --grad-compress fp8 exclude each other"}
	}
	opts := trainer.Options{
		Model: cfg, Batch: f.batch, Seq: f.seq, Micro: f.micro, Schedule: f.schedule, Steps: f.steps,
		LR: f.lr, Warmup: f.warmup, MinLRFrac: f.minLRFrac, GradClip: f.clip, AdamW: adam,
		DecayEmbed: f.decayEmbed, Seed: f.seed, Shuffle: f.shuffle, Threads: f.threads, KernelForce: f.kernel,
		StageLayers: stageLayers,
		DP:          dpdata.Options{BucketBytes: int(f.bucketMB * 1e6), BF16: bf16Grads, FP8: fp8Grads, ZeRO1: f.zero1},
		Precision:   f.precision,
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

// waitSave waits for a background checkpoint write, if any.
func waitSave(pending *func() (string, error)) error {
	if *pending == nil {
		return nil
	}
	_, err := (*pending)()
	*pending = nil
	return err
}

// peakRSS is this process's peak resident memory in bytes (VmHWM), or 0.
func peakRSS() int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
			return kb * 1024
		}
	}
	return 0
}

// distributed carries a worker's communicators and job hooks into trainLoop.
type distributed struct {
	comms *trainer.Comms
	job   *jobInfo
}

type jobInfo struct {
	rank, world int
	hosts       []string // each rank's host name
	report      func(step int, m map[string]float64)
	barrier     func(ctx context.Context) error
}

// trainLoop trains this process's part of the model. Rank 0 (or the single
// process) writes the run directory and shows progress.
func trainLoop(ctx context.Context, f *trainFlags, opts trainer.Options, dist *distributed, stdout, stderr io.Writer) error {
	cfg := opts.Model
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
	tok, err := loadTokenizer(f.tokenizerDir)
	if err != nil {
		return err
	}
	if tok.VocabSize() > cfg.VocabSize {
		return usageError{fmt.Sprintf("tokenizer has %d tokens but the model's vocabulary is %d (raise --vocab)", tok.VocabSize(), cfg.VocabSize)}
	}
	logf("loading data %s\n", describeData(f.dataSpec))
	corpus, err := data.Load(ctx, f.dataSpec, tok, data.LoadOptions{MaxBytes: f.maxDataBytes})
	if err != nil {
		return err
	}
	if err := corpus.CheckVocab(cfg.VocabSize); err != nil {
		return err
	}
	trainSet, valSet := corpus.Split(f.valFrac)
	rows := opts.RowsPerRank(m)
	loader, err := data.NewLoader(trainSet.Tokens, data.LoaderConfig{Batch: rows, Seq: f.seq, DPRank: coord.DP, DPSize: m.DP, Shuffle: f.shuffle, Seed: f.seed})
	if err != nil {
		return fmt.Errorf("training data: %w", err)
	}
	tr, err := trainer.New(opts, loader, comms)
	if err != nil {
		return err
	}
	defer tr.Close()
	start := time.Now()
	if f.tracePath != "" {
		tr.SetTrace(trace.New(rank, start))
	}
	if f.initFrom != "" {
		if err := checkpoint.LoadModel(f.initFrom, tr.Model); err != nil {
			return err
		}
		logf("initialized from %s\n", f.initFrom)
	}
	wholeModel := m.TP == 1 && m.PP == 1 // this rank holds every parameter
	// The job's peak: every process's threads, but a local job cannot use
	// more cores than the machine has.
	threads := min(tr.Engine.Threads(), runtime.NumCPU())
	if dist != nil {
		threads = launcher.JobCores(dist.job.hosts, tr.Engine.Threads(), runtime.NumCPU())
	}
	peak := trainer.MachinePeak(threads)
	logf("model %s: %s params, %d layers, d=%d, %d heads, vocab %d | data: %s, %s train / %s val tokens\n",
		f.model.preset, human(float64(trainer.ParamCount(cfg))), cfg.NLayer, cfg.NEmbd, cfg.NHead, cfg.VocabSize,
		corpus.Source, human(float64(len(trainSet.Tokens))), human(float64(len(valSet.Tokens))))
	logf("mesh %v | global batch %d x %d tokens, %d micro-batches of %d per rank, schedule %s\n", m, f.batch, f.seq, opts.Micro, rows/opts.Micro, tr.Pipe.Name)
	logf("compute: %d processes x %d threads, gemm kernel %s, peak %.0f GFLOP/s (%d cores x %.2f GHz x %d FLOP/cycle, %s)\n",
		m.World(), tr.Engine.Threads(), tr.Engine.KernelName(), peak.FLOPS/1e9, peak.Threads, peak.GHz, peak.FLOPsPerCycle, peak.VectorISA)

	var barrier trainer.Barrier
	if dist != nil {
		barrier = dist.job.barrier
	}
	// --resume: continue from the newest committed checkpoint in --out.
	var history []map[string]any
	if f.resume {
		dir, err := resumeCheckpoint(f.out, logf)
		if err != nil {
			return err
		}
		if dir != "" {
			st, err := tr.Restore(dir)
			if err != nil {
				return err
			}
			logf("resumed from %s (step %d, written under %s)\n", dir, st.Step, st.Layout)
		}
		if lead {
			history, _ = metrics.ReadJSONL(filepath.Join(f.out, "metrics.jsonl"))
		}
	}
	var mw *metrics.JSONL
	var bar *progress.Bar
	if lead {
		if err := os.MkdirAll(f.out, 0o755); err != nil {
			return err
		}
		open := metrics.NewJSONL
		if f.resume {
			open = metrics.AppendJSONL
		}
		if mw, err = open(filepath.Join(f.out, "metrics.jsonl")); err != nil {
			return err
		}
		defer mw.Close()
		if f.resume {
			lastLogged := 0
			for _, r := range history {
				if s, ok := r["step"].(float64); ok && r["loss"] != nil {
					lastLogged = max(lastLogged, int(s))
				}
			}
			// The restart is part of the record: which step training
			// continues from and how many logged steps are redone.
			if err := mw.Write(map[string]any{"event": "resume", "restart": f.restartCount, "resumed_from_step": tr.Step,
				"lost_steps": max(0, lastLogged-tr.Step), "layout": m.String()}); err != nil {
				return err
			}
		}
		mode := progress.Auto
		if f.noProgress {
			mode = progress.Plain
		}
		bar = progress.New(stdout, f.steps, progress.Options{Desc: "train", Mode: mode, Start: tr.Step})
	}
	var valLoader *data.Loader
	if lead && wholeModel && len(valSet.Tokens) > 0 {
		valLoader, err = data.NewLoader(valSet.Tokens, data.LoaderConfig{Batch: tr.MicroRows(), Seq: f.seq, DPSize: 1})
		if err != nil {
			logf("validation skipped: %v\n", err)
			valLoader = nil
		}
	}
	var totalTokens int
	var pendingSave func() (string, error) // a background checkpoint write
	defer waitSave(&pendingSave)
	records := history
	stop := f.steps
	if f.stopAfter > 0 {
		stop = min(stop, f.stopAfter)
	}
	for tr.Step < stop {
		st, err := tr.TrainStep(ctx)
		if err != nil {
			if bar != nil {
				bar.Finish()
			}
			return err
		}
		totalTokens += st.Tokens
		mfu := st.FLOPsPS / peak.FLOPS
		if dist != nil {
			dist.job.report(st.Step, map[string]float64{"loss": st.Loss, "tokens_per_s": st.TokensPS, "step_seconds": st.Seconds})
		}
		last := st.Step == stop
		if lead {
			rec := map[string]any{
				"step": st.Step, "loss": st.Loss, "lr": st.LR, "grad_norm": st.GradNorm,
				"tokens_per_s": st.TokensPS, "mfu": mfu, "step_seconds": st.Seconds,
				"tokens": st.Step * st.Tokens, "elapsed_s": time.Since(start).Seconds(),
			}
			if valLoader != nil && ((f.evalEvery > 0 && st.Step%f.evalEvery == 0) || last) {
				valLoader.Reset()
				steps := min(f.evalBatches, (len(valSet.Tokens)-1)/(tr.MicroRows()*f.seq))
				v, _, err := trainer.Evaluate(ctx, tr.Model, valLoader, tr.MicroRows(), f.seq, steps)
				if err != nil {
					bar.Println(fmt.Sprintf("validation skipped: %v", err))
					valLoader = nil
				} else {
					rec["val_loss"] = v
				}
			}
			if err := mw.Write(rec); err != nil {
				return err
			}
			records = append(records, rec)
			bar.Update(st.Step, progress.Stats{Loss: st.Loss, TokensPerSec: st.TokensPS, MFU: mfu, LR: st.LR, GradNorm: st.GradNorm})
		}
		if last || (f.ckptEvery > 0 && st.Step%f.ckptEvery == 0) {
			err := waitSave(&pendingSave)
			if err == nil {
				if f.asyncSave {
					pendingSave = tr.SaveAsync(ctx, f.out, f.keep, rank, barrier, trainer.State{Seed: f.seed})
				} else {
					_, err = tr.Save(ctx, f.out, f.keep, rank, barrier, trainer.State{Seed: f.seed})
				}
			}
			if err != nil {
				if bar != nil {
					bar.Finish()
				}
				return err
			}
		}
	}
	if err := waitSave(&pendingSave); err != nil {
		return err
	}
	if bar != nil {
		bar.Finish()
	}
	if err := finishTrace(ctx, f.tracePath, tr, dist, lead, stdout); err != nil {
		return err
	}
	bubble, err := tr.MeasuredBubble(ctx)
	if err != nil {
		return err
	}
	if m.PP > 1 && coord.DP == 0 && coord.TP == 0 {
		fmt.Fprintf(stderr, "stage %d: %d activation slots (%s schedule, %d micro-batches), %.1f MB of activations, peak RSS %.1f MB\n",
			coord.PP, tr.Pipe.InFlight(coord.PP), tr.Pipe.Name, tr.Pipe.Micro, float64(tr.ActivationBytes())/1e6, float64(peakRSS())/1e6)
	}
	if !lead {
		return nil
	}
	if pp := tr.Pipe; pp.Stages > 1 {
		fmt.Fprintf(stdout, "pipeline bubble: measured %.1f%%, theoretical %.1f%% = (p-1)/(m+p-1) with p=%d, m=%d (%s)\n",
			100*bubble, 100*pp.TheoreticalBubble(), pp.Stages, pp.Micro, pp.Name)
	}
	xs, ys, vxs, vys := lossSeries(records)
	series := []plot.Series{{Name: "train", X: xs, Y: ys}}
	if len(vxs) > 0 {
		series = append(series, plot.Series{Name: "validation", X: vxs, Y: vys})
	}
	if err := plot.LossCurve(filepath.Join(f.out, "loss.png"), fmt.Sprintf("strand %s (%v)", f.model.preset, m), series); err != nil {
		return err
	}
	msg := fmt.Sprintf("done: %d steps, %s tokens in %s", f.steps, human(float64(totalTokens)), time.Since(start).Round(time.Millisecond))
	if len(ys) > 0 {
		msg += fmt.Sprintf(", final loss %.4f", ys[len(ys)-1])
	}
	if len(vys) > 0 {
		msg += fmt.Sprintf(", validation loss %.4f", vys[len(vys)-1])
	}
	fmt.Fprintf(stdout, "%s\nrun directory %s (metrics.jsonl, loss.png, checkpoints/)\n", msg, f.out)
	return nil
}

// lossSeries turns metric records into the train and validation curves;
// a step logged twice (redone after a restart) keeps its latest value.
func lossSeries(records []map[string]any) (xs, ys, vxs, vys []float64) {
	train, val := map[int]float64{}, map[int]float64{}
	for _, r := range records {
		var step int
		switch s := r["step"].(type) {
		case float64:
			step = int(s)
		case int:
			step = s
		default:
			continue // an event record
		}
		if l, ok := r["loss"].(float64); ok {
			train[step] = l
		}
		if v, ok := r["val_loss"].(float64); ok {
			val[step] = v
		}
	}
	xs, ys = sortedSeries(train)
	vxs, vys = sortedSeries(val)
	return xs, ys, vxs, vys
}

func sortedSeries(m map[int]float64) (x, y []float64) {
	steps := make([]int, 0, len(m))
	for s := range m {
		steps = append(steps, s)
	}
	sort.Ints(steps)
	for _, s := range steps {
		x, y = append(x, float64(s)), append(y, m[s])
	}
	return x, y
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
