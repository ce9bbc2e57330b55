package trainer

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/internal/pages"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
	dpdata "github.com/strand-ml/strand/parallel/data"
	"github.com/strand-ml/strand/parallel/pipeline"
	"github.com/strand-ml/strand/parallel/tensor"
	"github.com/strand-ml/strand/parallel/zero"
	"github.com/strand-ml/strand/trace"
)

// Options configure a training run. Zero values of optional fields take the
// defaults documented on each field.
type Options struct {
	Model    model.Config
	Batch    int    // global batch: sequences per optimizer step, over all data-parallel ranks
	Seq      int    // tokens per sequence
	Micro    int    // micro-batches per step and data-parallel rank (default 1): gradient accumulation, and the pipeline's micro-batches
	Schedule string // pipeline schedule: gpipe, 1f1b (default), interleaved, zb-h1 or zb-h2 (package pipeline)
	// VirtualStages is the number of model chunks per pipeline stage
	// (interleaved only; 0 or 1: one): the layers are cut into PP x
	// VirtualStages chunks and stage r holds chunks r, r+PP, ...
	VirtualStages int
	Steps         int     // total optimizer steps (for the schedule)
	LR            float64 // peak learning rate
	Warmup        int     // warm-up steps
	MinLRFrac     float64 // final LR as a fraction of LR
	GradClip      float64 // max global gradient norm; 0 disables
	AdamW         optim.AdamWConfig
	DecayEmbed    bool   // apply weight decay to embeddings too
	Seed          uint64 // parameter init and data order
	Shuffle       bool   // shuffle window order per epoch (false: sequential, llm.c style)
	Threads       int    // compute goroutines (0: all cores)
	KernelForce   string // force a GEMM kernel by name ("" picks the best)
	StageLayers   []int  // layers per pipeline stage (default balanced)
	DP            dpdata.Options
	// Precision of the model's large products: "fp32" (default), "bf16"
	// (bf16 operands, float32 accumulation and master weights) or "fp16"
	// (fp16-rounded operands with dynamic loss scaling; see model.SetFP16).
	Precision string
	// LossScale configures fp16's dynamic loss scaling (nil: GradScaler's
	// defaults, optim.NewLossScaler).
	LossScale *optim.LossScaler
	// Adapt, when set, changes the freshly initialized model before the
	// optimizer and the data-parallel buckets see its Params (fine-tuning:
	// load the base weights, then model.EnableLoRA so the adapters are the
	// trainable parameters).
	Adapt func(m *model.GPT) error
	// Recompute is the activation recomputation mode: "none" (or ""),
	// "selective" or "full" (model.RecomputeFull): less activation
	// memory for more compute, gradients bit-identical.
	Recompute string
	// Frozen builds a trainer that only runs forward passes (Forward):
	// no optimizer state, no gradient buckets (PPO's reference and reward
	// models).
	Frozen bool
	// Zero is the ZeRO stage over the data-parallel ranks: 0 (replicated,
	// DDP), 1 (optimizer moments sharded; the same as DP.ZeRO1), 2 (and
	// gradients), 3 (and parameters, gathered unit by unit: parallel/zero).
	Zero int
	// ShardGroup, with ZeRO-2/3, shards within groups of this many
	// data-parallel ranks and replicates across groups (hybrid sharding);
	// 0 shards over all of them.
	ShardGroup int
	// KeepGathered, with ZeRO-3, keeps each unit's gathered parameters
	// from its forward until its backward (--reshard-after-forward=false).
	KeepGathered bool
	// ZeroMinUnit, with ZeRO-2/3, is the fewest parameters a block's unit
	// holds (--zero-min-unit; 0: model.DefaultUnitMin): a block's quarters
	// below it merge (FSDP's size-based wrapping).
	ZeroMinUnit int
}

// normalize makes Zero 1 and DP.ZeRO1 the same thing (the bucketer runs
// stage 1).
func (o Options) normalize() Options {
	if o.Zero == 1 {
		o.DP.ZeRO1 = true
	}
	return o
}

// zeroStage is the ZeRO stage, with DP.ZeRO1 as stage 1.
func (o Options) zeroStage() int {
	if o.Zero == 0 && o.DP.ZeRO1 {
		return 1
	}
	return o.Zero
}

// validateZero checks the ZeRO options against the mesh.
func (o Options) validateZero(m mesh.Mesh) error {
	z := o.zeroStage()
	switch {
	case z < 0 || z > 3:
		return fmt.Errorf("ZeRO stage %d is not one of 0, 1, 2, 3", z)
	case o.DP.ZeRO1 && z != 1:
		return fmt.Errorf("ZeRO-1 (--zero1) and ZeRO stage %d both set: choose one --zero", z)
	case o.ShardGroup < 0:
		return fmt.Errorf("shard group %d must not be negative", o.ShardGroup)
	case o.ShardGroup > 0 && z < 2:
		return fmt.Errorf("--shard-group %d needs --zero 2 or 3 (it shards gradients and parameters; stage %d does not)", o.ShardGroup, z)
	case o.ShardGroup > 0 && m.DP%o.ShardGroup != 0:
		return fmt.Errorf("--shard-group %d does not divide the %d data-parallel ranks", o.ShardGroup, m.DP)
	case o.KeepGathered && z != 3:
		return fmt.Errorf("--reshard-after-forward=false needs --zero 3 (stage %d does not shard parameters)", z)
	case o.ZeroMinUnit < 0:
		return fmt.Errorf("--zero-min-unit %d must not be negative", o.ZeroMinUnit)
	case o.ZeroMinUnit > 0 && z < 2:
		return fmt.Errorf("--zero-min-unit %d needs --zero 2 or 3 (stage %d has no units)", o.ZeroMinUnit, z)
	}
	if z < 2 {
		return nil
	}
	switch {
	case o.DP.BF16 || o.DP.FP8 != "":
		return fmt.Errorf("--zero %d reduce-scatters float32 gradients unit by unit: gradient compression (bf16/fp8 gradients) is not supported with it", z)
	}
	return nil
}

// Comms are the communicators of this rank's groups in the DP x TP x PP
// mesh. Nil communicators mean groups of one (a single process needs none).
type Comms struct {
	Mesh       mesh.Mesh
	Coord      mesh.Coord
	DP, TP, PP *collective.Comm
	// Embed joins the first and last pipeline stage of this (dp, tp)
	// position, to sum the tied embedding's gradient; nil when PP is 1.
	Embed *collective.Comm
}

// Validate reports the first bad option for the given mesh.
func (o Options) Validate(m mesh.Mesh) error {
	if err := o.Model.Validate(); err != nil {
		return err
	}
	switch {
	case o.Batch <= 0:
		return fmt.Errorf("batch %d must be positive", o.Batch)
	case o.Seq <= 0:
		return fmt.Errorf("sequence length %d must be positive", o.Seq)
	case o.Micro <= 0:
		return fmt.Errorf("micro-batches %d must be positive", o.Micro)
	case o.Batch%(m.DP*o.Micro) != 0:
		return fmt.Errorf("global batch %d does not split into %d data-parallel ranks x %d micro-batches", o.Batch, m.DP, o.Micro)
	case o.Steps < 0:
		return fmt.Errorf("steps %d must not be negative", o.Steps)
	case o.GradClip < 0:
		return fmt.Errorf("gradient clip %g must not be negative", o.GradClip)
	case o.Model.Position == model.PosLearned && o.Seq > o.Model.NPositions:
		return fmt.Errorf("sequence length %d exceeds the model's %d learned positions", o.Seq, o.Model.NPositions)
	}
	if err := model.CheckTP(o.Model, m.TP); err != nil {
		return err
	}
	if _, err := model.StageBounds(o.Model.NLayer, m.PP, o.StageLayers); err != nil {
		return err
	}
	s, err := o.pipeSchedule(m.PP)
	if err != nil {
		return err
	}
	if err := o.validateVirtual(m); err != nil {
		return err
	}
	if s.Needs()&pipeline.NeedsSplitBackward != 0 && o.Recompute != "" && o.Recompute != model.RecomputeNone {
		return fmt.Errorf("schedule %s splits the backward, which needs every activation until the weight gradient: --recompute %s shares them between blocks", s.Name, o.Recompute)
	}
	if err := o.validateZero(m); err != nil {
		return err
	}
	if s.Needs()&pipeline.NeedsSplitBackward != 0 && o.zeroStage() >= 2 {
		return fmt.Errorf("schedule %s defers weight gradients past the unit's backward: --zero %d reduce-scatters each unit's gradient when its backward ends (use 1f1b or gpipe)", s.Name, o.zeroStage())
	}
	if err := o.lrSchedule().Validate(); err != nil {
		return err
	}
	if err := model.CheckRecompute(o.Recompute); err != nil {
		return err
	}
	switch o.Precision {
	case "", "fp32", "bf16", "fp16":
	default:
		return fmt.Errorf("precision %q is not one of fp32, bf16, fp16", o.Precision)
	}
	if o.LossScale != nil {
		if err := o.LossScale.Validate(); err != nil {
			return err
		}
	}
	return o.AdamW.Validate()
}

// validateVirtual refuses what virtual stages (several model chunks per
// rank) cannot run with, naming it.
func (o Options) validateVirtual(m mesh.Mesh) error {
	v := o.virtual()
	switch {
	case o.VirtualStages < 0:
		return fmt.Errorf("virtual stages %d must not be negative", o.VirtualStages)
	case v == 1:
		return nil
	case len(o.StageLayers) > 0:
		return fmt.Errorf("--stage-layers and %d virtual stages: the layers are cut into %d x %d equal chunks (pipeline.Chunks), not per stage", v, m.PP, v)
	case o.zeroStage() >= 2:
		return fmt.Errorf("--zero %d with %d virtual stages: ZeRO-2/3 gather and reduce-scatter a stage's units in one pass of its blocks, not chunk by chunk (use --zero 1 or --virtual-stages 1)", o.zeroStage(), v)
	}
	if _, err := pipeline.Chunks(m.PP, v, o.Model.NLayer); err != nil {
		return err
	}
	return nil
}

// virtual is the number of model chunks per pipeline stage.
func (o Options) virtual() int { return max(o.VirtualStages, 1) }

// layout is the part of the model pipeline stage stage of m holds, with
// tensor-parallel group tp: a range of blocks, or with virtual stages the
// stage's chunks (pipeline.Chunks).
func (o Options) layout(tp tensor.Group, m mesh.Mesh, stage int) (model.Layout, error) {
	if o.virtual() == 1 {
		bounds, err := model.StageBounds(o.Model.NLayer, m.PP, o.StageLayers)
		if err != nil {
			return model.Layout{}, err
		}
		return model.Stage(tp, bounds, stage), nil
	}
	chunks, err := pipeline.Chunks(m.PP, o.virtual(), o.Model.NLayer)
	if err != nil {
		return model.Layout{}, err
	}
	var spans []model.Span
	for _, c := range chunks[stage] {
		spans = append(spans, model.Span{Lo: c.Lo, Hi: c.Hi})
	}
	return model.Chunked(tp, spans, stage == 0, stage == m.PP-1), nil
}

func (o Options) schedule() string {
	if o.Schedule == "" {
		return pipeline.OneFOneB
	}
	return o.Schedule
}

// pipeSchedule is the pipeline program: GPipe, 1F1B, interleaved 1F1B
// over virtual stages (one model.Acts per micro-batch and chunk), or a
// zero-bubble schedule (zb-h1, zb-h2), whose split backward the stage
// executor runs (model.BackwardInputActs, BackwardWeightActs).
func (o Options) pipeSchedule(stages int) (*pipeline.Schedule, error) {
	return pipeline.Generate(pipeline.Spec{Name: o.schedule(), Stages: stages, Micro: o.Micro, Virtual: o.VirtualStages})
}

func (o Options) lrSchedule() optim.Schedule {
	return optim.Schedule{Peak: o.LR, Warmup: o.Warmup, Total: o.Steps, MinFrac: o.MinLRFrac}
}

// RowsPerRank is the sequences one data-parallel rank reads per step.
func (o Options) RowsPerRank(m mesh.Mesh) int { return o.Batch / m.DP }

// Batches yields one step's rows for this data-parallel rank: inputs and
// targets (rows x Seq, targets IgnoreIndex where no loss is counted).
// *data.Loader is one; fine-tuning datasets (package finetune) are others.
type Batches interface {
	Next(inputs, targets []int32) error
}

// Segmented is implemented by Batches whose rows pack several sequences:
// Segments are the segment ids (rows x Seq) of the last Next's rows, passed
// to the model so attention stays inside each sequence (model.Acts.SetSegments).
type Segmented interface {
	Segments() []int32
}

// Objective replaces the mean next-token loss on the last pipeline stage
// with a loss built from the per-position losses (fine-tuning: DPO). The
// step's loss is the sum of Forward's results over the global batch
// divided by the sum of Units, and the backward computes its gradient
// through per-position weights (model.Acts.SetLossWeights).
type Objective interface {
	// Units is the number of loss units (e.g. preference pairs) in this
	// rank's rows of the step (targets: rows x Seq); every rank calls it.
	Units(targets []int32) int
	// Forward is called on the last stage after the forward of the
	// micro-batch starting at row (of this rank's step rows), with its
	// targets and per-position losses (micro x Seq). It returns the
	// micro-batch's summed loss and fills weights (micro x Seq) with
	// d(summed loss)/d(losses[n]).
	Forward(row int, targets []int32, losses, weights []float32) (float64, error)
}

// Trainer owns this rank's part of the model, its optimizer, its data and
// the communication of one training step.
type Trainer struct {
	Opts   Options
	Comms  Comms
	Model  *model.GPT
	Opt    *optim.AdamW
	Loader *data.Loader
	// Source, when set, is read instead of Loader (which may then be nil;
	// checkpoints then record no loader position).
	Source Batches
	Engine *gemm.Engine
	Sched  optim.Schedule
	Pipe   *pipeline.Schedule
	Step   int // optimizer steps taken
	Trace  *trace.Recorder

	// Objective, when set, replaces the mean next-token loss.
	Objective Objective
	// Scaler is fp16's dynamic loss scaling (nil for fp32 and bf16).
	Scaler *optim.LossScaler
	// CheckpointFiles, when set, writes more files into each checkpoint
	// directory before it is sealed (the run's tokenizer); rank 0 calls it.
	CheckpointFiles func(dir string) error

	bucketer      *dpdata.Bucketer
	zero          *zero.Sharder      // ZeRO-2/3 (nil otherwise)
	subComms      []*collective.Comm // communicators the trainer made (hybrid sharding), closed by Close
	flopsPerToken float64
	rows, micro   int     // rows per rank per step; rows per micro-batch
	inputs        []int32 // rows x Seq tokens of this step
	targets       []int32 // rows x Seq next tokens
	acts          []*model.Acts
	recvAct       [][]float32 // per activation slot: hidden state received from the previous stage
	gradIn        []float32   // gradient received from the next stage
	chunks        *chunkBufs  // virtual stages: the buffers of several model chunks (nil: one chunk)
	sendGrad      [][]float32 // per slot: gradient sent to the previous stage
	sender        *orderedSender
	lossSum       float64
	// pipeline accounting for the measured bubble: compute time inside the
	// schedule, summed over steps
	pipeCompute time.Duration
	// each step's time in the schedule on this rank (seconds): the step's
	// makespan is the largest over the stages (MeasuredBubble)
	pipeSteps []float32
	// from each step's first compute to its last on this rank, summed
	pipeWindow time.Duration
	scalars    [3]float32         // step-level reductions: target count, loss, squared norm
	exec       *stageExec         // reused every step
	fwdProg    *pipeline.Schedule // Forward's program: GPipe's forward half
	weights    []float32          // per-position loss weights of a micro-batch (Objective)
	head       *headTrainer       // SetHead's objective, parameters and optimizer
}

// StepStats summarizes one optimizer step.
type StepStats struct {
	Step     int     `json:"step"` // 1-based number of the step just taken
	Loss     float64 `json:"loss"`
	LR       float64 `json:"lr"`
	GradNorm float64 `json:"grad_norm"`
	Tokens   int     `json:"tokens"` // global tokens in the step
	Seconds  float64 `json:"step_seconds"`
	TokensPS float64 `json:"tokens_per_s"`
	FLOPsPS  float64 `json:"flops_per_s"` // whole job

	// LossScale is fp16's loss scale after the step (0 otherwise); Skipped
	// says the step's gradients overflowed and the optimizer did not run.
	LossScale float64 `json:"loss_scale,omitempty"`
	Skipped   bool    `json:"skipped,omitempty"`
}

// New builds this rank's freshly initialized part of the model; comms may
// be nil for a single process. The loader must yield RowsPerRank rows.
func New(opts Options, loader *data.Loader, comms *Comms) (*Trainer, error) {
	opts = opts.normalize()
	if opts.Micro == 0 {
		opts.Micro = 1
	}
	c := Comms{Mesh: mesh.Mesh{DP: 1, TP: 1, PP: 1}}
	if comms != nil {
		c = *comms
	}
	if err := opts.Validate(c.Mesh); err != nil {
		return nil, err
	}
	e := gemm.New(opts.Threads)
	if opts.KernelForce != "" {
		var err error
		if e, err = gemm.NewNamed(opts.Threads, opts.KernelForce); err != nil {
			return nil, err
		}
	}
	layout, err := opts.layout(tensor.FromComm(c.TP), c.Mesh, c.Coord.PP)
	if err != nil {
		return nil, err
	}
	var alloc model.Alloc
	paged := opts.zeroStage() >= 2 && !opts.Frozen
	if paged {
		alloc = pages.Alloc[float32] // ZeRO-2/3 hand pages back (parallel/zero)
	}
	m, err := model.NewShardedIn(opts.Model, layout, opts.RowsPerRank(c.Mesh)/opts.Micro, opts.Seq, e, alloc)
	if err != nil {
		return nil, err
	}
	fresh := opts.zeroStage() == 3 && !opts.Frozen && opts.Adapt == nil
	if !fresh {
		m.Init(opts.Seed) // ZeRO-3 initializes unit by unit instead (parallel/zero)
	}
	return newOn(m, opts, loader, c, fresh, paged)
}

// NewOn builds a trainer around m, a model already built, laid out as this
// rank's stage and tensor-parallel shard of comms' mesh (opts.Model is
// taken from m), with rows of at least one micro-batch of opts.Seq
// positions. PPO builds its four models first and runs each through a
// trainer made so.
func NewOn(m *model.GPT, opts Options, comms *Comms) (*Trainer, error) {
	opts = opts.normalize()
	if opts.Micro == 0 {
		opts.Micro = 1
	}
	c := Comms{Mesh: mesh.Mesh{DP: 1, TP: 1, PP: 1}}
	if comms != nil {
		c = *comms
	}
	opts.Model = m.Config
	if err := opts.Validate(c.Mesh); err != nil {
		return nil, err
	}
	l := m.Layout
	if l.First != (c.Coord.PP == 0) || l.Last != (c.Coord.PP == c.Mesh.PP-1) || l.TP.Size() != c.TP.Size() {
		return nil, fmt.Errorf("trainer: the model is not laid out as this rank's stage %d of %d over %d tensor-parallel ranks", c.Coord.PP, c.Mesh.PP, c.TP.Size())
	}
	if m.Chunks() != opts.virtual() {
		return nil, fmt.Errorf("trainer: the model holds %d chunks per stage, the options ask for %d virtual stages", m.Chunks(), opts.virtual())
	}
	if rows := opts.RowsPerRank(c.Mesh) / opts.Micro; m.MaxB < rows || m.MaxT < opts.Seq {
		return nil, fmt.Errorf("trainer: the model holds %d rows of %d positions, a micro-batch is %d of %d", m.MaxB, m.MaxT, rows, opts.Seq)
	}
	return newOn(m, opts, nil, c, false, false)
}

// newOn is the common part of New and NewOn; fresh says m's parameters
// are still to be drawn from opts.Seed (ZeRO-3 does it unit by unit),
// paged that its flat buffers are already discardable pages.
func newOn(m *model.GPT, opts Options, loader *data.Loader, c Comms, fresh, paged bool) (*Trainer, error) {
	e := m.Engine()
	layout := m.Layout
	t := &Trainer{Opts: opts, Comms: c, Loader: loader, Engine: e, Sched: opts.lrSchedule()}
	t.rows = opts.RowsPerRank(c.Mesh)
	t.micro = t.rows / opts.Micro
	t.Model = m
	var err error
	if opts.zeroStage() >= 2 && !opts.Frozen {
		// shard before the precision copy exists, so ZeRO-3 never holds a
		// whole one; fine-tuning's Adapt (loading base weights) runs first
		if opts.Adapt != nil {
			if opts.zeroStage() == 3 && !paged {
				// the weights Adapt loads (LoRA's frozen base among them)
				// go into pages ZeRO-3 can hand back
				data, err := pages.Alloc[float32](m.Params.Count())
				if err != nil {
					return nil, err
				}
				copy(data, m.Params.Data) // Adapt may load only some weights
				if err := m.SetParamBuffers(data, m.Params.Grad); err != nil {
					return nil, err
				}
				paged = true
			}
			if err := opts.Adapt(m); err != nil {
				return nil, err
			}
			opts.Adapt = nil
		}
		if err := t.startZero(fresh, paged); err != nil {
			return nil, err
		}
	}
	switch opts.Precision {
	case "bf16":
		m.SetBF16(true)
	case "fp16":
		m.SetFP16(true)
		t.Scaler = optim.NewLossScaler()
		if opts.LossScale != nil {
			ls := *opts.LossScale
			t.Scaler = &ls
		}
	}
	if opts.Adapt != nil {
		if err := opts.Adapt(m); err != nil {
			return nil, err
		}
	}
	if t.Pipe, err = opts.pipeSchedule(c.Mesh.PP); err != nil {
		return nil, err
	}
	var segs []optim.Segment
	for _, p := range m.Params.List {
		decay := p.Decay
		if opts.DecayEmbed && (strings.HasPrefix(p.Name, "wte.") || strings.HasPrefix(p.Name, "wpe.")) {
			decay = true
		}
		segs = append(segs, optim.Segment{Offset: p.Offset, Size: p.Size(), Decay: decay})
	}
	segs = mergeSegments(segs)
	if c.DP.Size() > 1 && !opts.Frozen && t.zero == nil {
		if t.bucketer, err = dpdata.NewBucketer(c.DP, m.Params.Grad, opts.DP); err != nil {
			return nil, err
		}
		if opts.DP.ZeRO1 {
			segs = optim.Restrict(segs, t.bucketer.Owned())
		}
	}
	if t.zero != nil {
		segs = optim.Restrict(segs, t.zero.Owned())
	}
	if !opts.Frozen {
		if t.Opt, err = optim.NewAdamW(opts.AdamW, m.Params.Count(), segs); err != nil {
			return nil, err
		}
		t.Opt.Threads = e.Threads() // the update is memory-bound: use every compute thread
	}
	// global FLOPs per token of the whole model (MFU is judged for the job)
	t.flopsPerToken = FLOPsPerToken(opts.Model, ParamCount(opts.Model), opts.Seq)
	t.inputs = make([]int32, t.rows*opts.Seq)
	t.targets = make([]int32, t.rows*opts.Seq)
	hidden := t.micro * opts.Seq * opts.Model.NEmbd
	if t.Pipe.Chunks() > 1 {
		if err := t.allocChunks(hidden); err != nil {
			return nil, err
		}
		if c.PP.Size() > 1 {
			t.sender = newOrderedSender(c.PP, t.Trace)
		}
		return t, nil
	}
	slots := t.Pipe.InFlight(c.Coord.PP)
	for i := 0; i < slots; i++ {
		a, err := m.NewActsRecompute(t.micro, opts.Seq, opts.Recompute)
		if err != nil {
			return nil, err
		}
		t.acts = append(t.acts, a)
		if !layout.First {
			t.recvAct = append(t.recvAct, make([]float32, hidden))
			t.sendGrad = append(t.sendGrad, make([]float32, hidden))
		}
	}
	if !layout.Last {
		t.gradIn = make([]float32, hidden)
	}
	if c.PP.Size() > 1 {
		t.sender = newOrderedSender(c.PP, t.Trace)
	}
	return t, nil
}

// ParamCount is the number of parameters of the whole (unsharded) model,
// from the shapes alone: building a model here would leave its buffers
// behind as garbage, which the next allocation to reuse them zeroes into
// resident memory (a peak RSS that varied by multiples of the parameters).
func ParamCount(cfg model.Config) int {
	shapes, err := model.ParamShapes(cfg, model.Full(cfg))
	if err != nil {
		return 0
	}
	n := 0
	for _, p := range shapes {
		n += p.Size()
	}
	return n
}

// mergeSegments joins neighbouring segments with the same decay setting so
// the optimizer loops over few long runs.
func mergeSegments(in []optim.Segment) []optim.Segment {
	var out []optim.Segment
	for _, s := range in {
		if n := len(out); n > 0 && out[n-1].Decay == s.Decay && out[n-1].Offset+out[n-1].Size == s.Offset {
			out[n-1].Size += s.Size
			continue
		}
		out = append(out, s)
	}
	return out
}

// FLOPsPerToken is the training FLOPs per token used for MFU.
func (t *Trainer) FLOPsPerToken() float64 { return t.flopsPerToken }

// ActivationBytes is the memory of the activation slots this stage keeps.
func (t *Trainer) ActivationBytes() int64 {
	var n int64
	for _, a := range t.acts {
		n += a.Bytes()
	}
	return n
}

// TrainStep runs one optimizer step: Micro micro-batches through this rank's
// pipeline stage on the schedule, gradient reduction across data-parallel
// ranks (overlapped with backward), the tied embedding's gradient summed
// between first and last stage, global-norm clipping and AdamW.
func (t *Trainer) TrainStep(ctx context.Context) (StepStats, error) {
	start := time.Now()
	step := t.Step + 1
	st, err := t.trainStep(ctx)
	if err != nil {
		return StepStats{}, fmt.Errorf("step %d: %w", step, err)
	}
	st.Seconds = time.Since(start).Seconds()
	st.TokensPS = float64(st.Tokens) / st.Seconds
	st.FLOPsPS = float64(st.Tokens) * t.flopsPerToken / st.Seconds
	return st, nil
}

func (t *Trainer) trainStep(ctx context.Context) (StepStats, error) {
	o, c, m := t.Opts, t.Comms, t.Model
	var src Batches = t.Loader
	if t.Source != nil {
		src = t.Source
	}
	if err := src.Next(t.inputs, t.targets); err != nil {
		return StepStats{}, err
	}
	// The loss is the mean over every counted target of the global batch;
	// every rank needs that count before its first backward.
	local := 0
	for _, y := range t.targets {
		if y != model.IgnoreIndex {
			local++
		}
	}
	if t.Objective != nil {
		local = t.Objective.Units(t.targets)
	}
	if t.head != nil {
		if t.Objective != nil {
			return StepStats{}, fmt.Errorf("both an Objective and a head objective are set")
		}
		local = t.head.obj.Units(t.targets)
		clear(t.head.grads)
	}
	total := t.scalars[0:1]
	total[0] = float32(local)
	if err := allReduce(ctx, c.DP, total, collective.Sum); err != nil {
		return StepStats{}, fmt.Errorf("target count: %w", err)
	}
	if total[0] == 0 {
		return StepStats{}, fmt.Errorf("every target of the batch is ignored")
	}
	scale := float32(1 / float64(total[0]))
	if t.Scaler != nil {
		scale *= float32(t.Scaler.Scale) // the optimizer sees gradients divided back
	}
	// the reduced-precision weight copies follow the float32 master weights
	// (which a checkpoint load may have replaced since the last step)
	m.SyncBF16()
	m.SyncFP16()

	m.Params.ResetGrad() // backward overwrites each gradient first (no clearing pass)
	if t.bucketer != nil {
		t.bucketer.Reset()
	}
	if t.zero != nil {
		t.zero.Reset()
	}
	t.lossSum = 0
	var stepArgs map[string]any
	if t.Trace != nil {
		stepArgs = map[string]any{"step": t.Step + 1}
	}
	end := t.Trace.Begin("step", "step", trace.LaneCompute, stepArgs)
	if err := t.runSchedule(ctx, scale); err != nil {
		return StepStats{}, err
	}
	if err := t.reduceGradients(ctx); err != nil {
		return StepStats{}, err
	}
	if err := t.reduceHead(ctx, scale); err != nil {
		return StepStats{}, err
	}
	norm, err := t.gradNorm(ctx)
	if err != nil {
		return StepStats{}, err
	}
	endOpt := t.Trace.Begin("optimizer", "compute", trace.LaneCompute, nil)
	// fp16: the norm is of the scaled gradients, and is Inf or NaN on every
	// rank as soon as any rank's gradients overflowed (its square sums are
	// reduced over every group holding different gradients).
	unscale, skipped := float32(1), false
	if t.Scaler != nil {
		s := t.Scaler.Scale
		skipped = t.Scaler.Update(!math.IsNaN(norm) && !math.IsInf(norm, 0))
		norm /= s
		unscale = float32(1 / s)
	}
	clip := optim.ClipScale(norm, o.GradClip)
	lr := t.Sched.At(t.Step)
	if !skipped {
		// clipping (and fp16 unscaling) fused into the update: one pass
		// over the gradients fewer, same bits
		params, grads := m.Params.Data, m.Params.Grad
		if t.zero != nil {
			params, grads = t.zero.Params(), t.zero.Grad()
		}
		t.Opt.UpdateScaled(params, grads, lr, clip*unscale)
		if t.head != nil {
			optim.Scale(t.head.grads, clip*unscale)
			t.head.opt.Update(t.head.params, t.head.grads, lr)
		}
	}
	if t.bucketer != nil && !skipped {
		if err := t.bucketer.GatherParams(ctx, m.Params.Data); err != nil {
			return StepStats{}, err
		}
	}
	if t.zero != nil && (!skipped || t.zero.Stage() == 3) {
		// ZeRO-2 gathers the updated pieces; ZeRO-3 hands back whatever
		// is still gathered (stale now: the next forward gathers anew)
		if err := t.zero.GatherParams(ctx); err != nil {
			return StepStats{}, err
		}
	}
	// and again after the update, so evaluation and generation between
	// steps see the new weights
	m.SyncBF16()
	m.SyncFP16()
	endOpt()
	t.Step++
	// The loss lives on the last stage; sum it over stages (others add 0)
	// and data-parallel ranks so every rank reports the same number.
	loss := t.scalars[1:2]
	loss[0] = float32(t.lossSum)
	if err := allReduce(ctx, c.PP, loss, collective.Sum); err != nil {
		return StepStats{}, fmt.Errorf("loss: %w", err)
	}
	if err := allReduce(ctx, c.DP, loss, collective.Sum); err != nil {
		return StepStats{}, fmt.Errorf("loss: %w", err)
	}
	end()
	mean := float64(loss[0]) / float64(total[0])
	if math.IsNaN(mean) || math.IsInf(mean, 0) {
		return StepStats{}, fmt.Errorf("loss is %v (diverged; lower --lr?)", mean)
	}
	st := StepStats{Step: t.Step, Loss: mean, LR: lr, GradNorm: norm, Tokens: o.Batch * o.Seq, Skipped: skipped}
	if t.Scaler != nil {
		st.LossScale = t.Scaler.Scale
	}
	return st, nil
}

// allReduce reduces buf over c, skipping the call for a group of one (a
// nil communicator is one: see collective.Comm).
func allReduce(ctx context.Context, c *collective.Comm, buf []float32, op collective.Op) error {
	if c.Size() == 1 {
		return nil
	}
	return c.AllReduce(ctx, collective.F32(buf), op)
}

// reduceGradients finishes the data-parallel reduction after backward. The
// tied embedding's gradient (the buffer's tail on the first and last
// stage) is summed between the two stages first, then its buckets go out.
func (t *Trainer) reduceGradients(ctx context.Context) error {
	c, m := t.Comms, t.Model
	if c.Embed.Size() > 1 && t.zero == nil {
		end := t.Trace.Begin("tied-embedding allreduce", "comm", trace.LaneComm, nil)
		err := c.Embed.AllReduce(ctx, collective.F32(m.Params.Grad[m.TiedOffset:]), collective.Sum)
		end()
		if err != nil {
			return fmt.Errorf("tied embedding gradient: %w", err)
		}
	}
	if t.zero != nil {
		return t.finishZero(ctx)
	}
	if t.bucketer == nil {
		return nil
	}
	return t.bucketer.Finish(ctx)
}

// gradNorm is the global gradient norm: each rank sums the squares of the
// gradients it counts (shards once, replicated tensors on one TP rank, with
// ZeRO-1 only its own chunks), and the sums are added over the groups that
// hold different gradients.
func (t *Trainer) gradNorm(ctx context.Context) (float64, error) {
	c, ps := t.Comms, t.Model.Params
	var ss float64
	sharded := t.bucketer != nil && t.Opts.DP.ZeRO1
	owned, grads, over := [][2]int(nil), ps.Grad, c.DP
	if sharded {
		owned = t.bucketer.Owned()
	}
	if t.zero != nil {
		sharded, owned, grads, over = true, t.zero.Owned(), t.zero.Grad(), t.zero.ShardComm()
	}
	if sharded {
		for _, p := range ps.List {
			if !p.InNorm {
				continue
			}
			for _, r := range owned {
				lo, hi := max(p.Offset, r[0]), min(p.Offset+p.Size(), r[1])
				for _, g := range grads[max(lo, 0):max(hi, lo)] {
					ss += float64(g) * float64(g)
				}
			}
		}
	} else {
		ss = ps.NormSumSquares()
	}
	ss += t.headSumSquares()
	buf := t.scalars[2:3]
	buf[0] = float32(ss)
	for _, g := range []*collective.Comm{c.TP, c.PP} {
		if err := allReduce(ctx, g, buf, collective.Sum); err != nil {
			return 0, fmt.Errorf("gradient norm: %w", err)
		}
	}
	if sharded {
		if err := allReduce(ctx, over, buf, collective.Sum); err != nil {
			return 0, fmt.Errorf("gradient norm: %w", err)
		}
	}
	return math.Sqrt(float64(buf[0])), nil
}

// Evaluate returns the mean loss over steps batches read sequentially from
// loader (positions with ignored targets excluded) and the tokens counted,
// for a single-stage model.
func Evaluate(ctx context.Context, m *model.GPT, loader *data.Loader, B, T, steps int) (float64, int, error) {
	in, tg := make([]int32, B*T), make([]int32, B*T)
	var sum float64
	var count int
	for i := 0; i < steps; i++ {
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		if err := loader.Next(in, tg); err != nil {
			return 0, 0, fmt.Errorf("eval batch %d: %w", i, err)
		}
		s, c, err := m.Forward(in, tg, B, T)
		if err != nil {
			return 0, 0, fmt.Errorf("eval batch %d: %w", i, err)
		}
		sum += s
		count += c
	}
	if count == 0 {
		return 0, 0, fmt.Errorf("eval: no positions counted")
	}
	return sum / float64(count), count, nil
}

// SetTrace records this rank's schedule into r (nil stops recording).
func (t *Trainer) SetTrace(r *trace.Recorder) {
	t.Trace = r
	if t.zero != nil {
		t.zero.SetTrace(r)
	}
	if t.sender != nil {
		t.sender.tr = r
	}
	if t.bucketer != nil {
		var mu sync.Mutex
		begun := map[int]time.Time{}
		bytes := map[int]int{}
		t.bucketer.OnStart = func(b, n int) {
			mu.Lock()
			begun[b], bytes[b] = time.Now(), n
			mu.Unlock()
		}
		t.bucketer.OnDone = func(b int) {
			mu.Lock()
			t0, n := begun[b], bytes[b]
			mu.Unlock()
			r.Add("allreduce", "comm", trace.LaneComm, t0, time.Now(), map[string]any{"bucket": b, "bytes": n})
		}
	}
}

// Bubble is a pipeline's measured idle fraction over the steps so far,
// two ways.
type Bubble struct {
	// Makespan is the idle share as TheoreticalBubble counts it: 1 -
	// (forward+backward time of every stage) / (stages x the steps'
	// makespans), a step's makespan being the longest of the stages' times
	// in its schedule (they start together: the previous step ended in an
	// all-reduce over them). A stage waiting for its first input or done
	// early is idle until the step's last stage finishes.
	Makespan float64
	// Window is the idle time between each stage's first and last compute
	// of a step, over the stages x the steps' makespans: the waits inside
	// the schedule only, without the fill and drain at its ends.
	Window float64
}

// MeasuredBubble is the pipeline's Bubble. All-reduces over the pipeline
// group: every stage calls it.
func (t *Trainer) MeasuredBubble(ctx context.Context) (Bubble, error) {
	sums := []float32{float32(t.pipeCompute.Seconds()), float32(t.pipeWindow.Seconds())}
	if err := allReduce(ctx, t.Comms.PP, sums, collective.Sum); err != nil {
		return Bubble{}, fmt.Errorf("measured bubble: %w", err)
	}
	spans := append([]float32(nil), t.pipeSteps...)
	if err := allReduce(ctx, t.Comms.PP, spans, collective.Max); err != nil {
		return Bubble{}, fmt.Errorf("measured bubble: %w", err)
	}
	var makespan float64
	for _, s := range spans {
		makespan += float64(s)
	}
	if makespan == 0 {
		return Bubble{}, nil
	}
	all := float64(t.Comms.PP.Size()) * makespan
	compute, window := float64(sums[0]), float64(sums[1])
	return Bubble{Makespan: 1 - compute/all, Window: (window - compute) / all}, nil
}

// MicroRows is the number of sequences in one micro-batch on this rank.
func (t *Trainer) MicroRows() int { return t.micro }

// Close stops background goroutines.
func (t *Trainer) Close() {
	t.sender.Close()
	for _, c := range t.subComms {
		c.Close()
	}
}
