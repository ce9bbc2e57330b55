package trainer

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
)

// Options configure a training run. Zero values of optional fields take the
// defaults documented on each field.
type Options struct {
	Model       model.Config
	Batch       int     // sequences per micro-batch
	Seq         int     // tokens per sequence
	Accum       int     // micro-batches per optimizer step (default 1)
	Steps       int     // total optimizer steps (for the schedule)
	LR          float64 // peak learning rate
	Warmup      int     // warm-up steps
	MinLRFrac   float64 // final LR as a fraction of LR
	GradClip    float64 // max global gradient norm; 0 disables
	AdamW       optim.AdamWConfig
	DecayEmbed  bool   // apply weight decay to embeddings too
	Seed        uint64 // parameter init and data order
	Shuffle     bool   // shuffle window order per epoch (false: sequential, llm.c style)
	Threads     int    // compute goroutines (0: all cores)
	KernelForce string // force a GEMM kernel by name ("" picks the best)
}

// Validate reports the first bad option.
func (o Options) Validate() error {
	if err := o.Model.Validate(); err != nil {
		return err
	}
	switch {
	case o.Batch <= 0:
		return fmt.Errorf("batch %d must be positive", o.Batch)
	case o.Seq <= 0:
		return fmt.Errorf("sequence length %d must be positive", o.Seq)
	case o.Accum < 0:
		return fmt.Errorf("gradient accumulation %d must not be negative", o.Accum)
	case o.Steps < 0:
		return fmt.Errorf("steps %d must not be negative", o.Steps)
	case o.GradClip < 0:
		return fmt.Errorf("gradient clip %g must not be negative", o.GradClip)
	case o.Model.Position == model.PosLearned && o.Seq > o.Model.NPositions:
		return fmt.Errorf("sequence length %d exceeds the model's %d learned positions", o.Seq, o.Model.NPositions)
	}
	if err := o.schedule().Validate(); err != nil {
		return err
	}
	return o.AdamW.Validate()
}

func (o Options) schedule() optim.Schedule {
	return optim.Schedule{Peak: o.LR, Warmup: o.Warmup, Total: o.Steps, MinFrac: o.MinLRFrac}
}

// Trainer owns a model, its optimizer and a data loader.
type Trainer struct {
	Opts   Options
	Model  *model.GPT
	Opt    *optim.AdamW
	Loader *data.Loader
	Engine *gemm.Engine
	Sched  optim.Schedule
	Step   int // optimizer steps taken

	flopsPerToken   float64
	inputs, targets [][]int32 // per micro-batch
}

// StepStats summarizes one optimizer step.
type StepStats struct {
	Step     int     `json:"step"` // 1-based number of the step just taken
	Loss     float64 `json:"loss"`
	LR       float64 `json:"lr"`
	GradNorm float64 `json:"grad_norm"`
	Tokens   int     `json:"tokens"`
	Seconds  float64 `json:"step_seconds"`
	TokensPS float64 `json:"tokens_per_s"`
	FLOPsPS  float64 `json:"flops_per_s"`
}

// New builds a freshly initialized model for opts (use LoadCheckpoint-style
// helpers on the returned Model to start from saved weights).
func New(opts Options, loader *data.Loader) (*Trainer, error) {
	if opts.Accum == 0 {
		opts.Accum = 1
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	e := gemm.New(opts.Threads)
	if opts.KernelForce != "" {
		var err error
		if e, err = gemm.NewNamed(opts.Threads, opts.KernelForce); err != nil {
			return nil, err
		}
	}
	m, err := model.New(opts.Model, opts.Batch, opts.Seq, e)
	if err != nil {
		return nil, err
	}
	m.Init(opts.Seed)
	var segs []optim.Segment
	for _, p := range m.Params.List {
		decay := p.Decay
		if opts.DecayEmbed && (strings.HasPrefix(p.Name, "wte.") || strings.HasPrefix(p.Name, "wpe.")) {
			decay = true
		}
		segs = append(segs, optim.Segment{Offset: p.Offset, Size: p.Size(), Decay: decay})
	}
	opt, err := optim.NewAdamW(opts.AdamW, m.Params.Count(), mergeSegments(segs))
	if err != nil {
		return nil, err
	}
	t := &Trainer{Opts: opts, Model: m, Opt: opt, Loader: loader, Engine: e, Sched: opts.schedule()}
	t.flopsPerToken = FLOPsPerToken(opts.Model, m.Params.Count(), opts.Seq)
	for i := 0; i < opts.Accum; i++ {
		t.inputs = append(t.inputs, make([]int32, opts.Batch*opts.Seq))
		t.targets = append(t.targets, make([]int32, opts.Batch*opts.Seq))
	}
	return t, nil
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

// TrainStep runs one optimizer step over Accum micro-batches.
func (t *Trainer) TrainStep(ctx context.Context) (StepStats, error) {
	start := time.Now()
	o := t.Opts
	B, T := o.Batch, o.Seq
	// Load every micro-batch first, so the loss normalization (the number of
	// counted targets in the whole step) is known before any backward.
	total := 0
	for i := range t.inputs {
		if err := t.Loader.Next(t.inputs[i], t.targets[i]); err != nil {
			return StepStats{}, fmt.Errorf("step %d: %w", t.Step+1, err)
		}
		for _, y := range t.targets[i] {
			if y != model.IgnoreIndex {
				total++
			}
		}
	}
	if total == 0 {
		return StepStats{}, fmt.Errorf("step %d: every target of the batch is ignored", t.Step+1)
	}
	scale := float32(1 / float64(total))
	t.Model.Params.ZeroGrad()
	var lossSum float64
	for i := range t.inputs {
		if err := ctx.Err(); err != nil {
			return StepStats{}, fmt.Errorf("step %d: %w", t.Step+1, err)
		}
		s, _, err := t.Model.Forward(t.inputs[i], t.targets[i], B, T)
		if err != nil {
			return StepStats{}, fmt.Errorf("step %d: %w", t.Step+1, err)
		}
		lossSum += s
		t.Model.Backward(scale)
	}
	loss := lossSum / float64(total)
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return StepStats{}, fmt.Errorf("step %d: loss is %v (diverged; lower --lr?)", t.Step+1, loss)
	}
	norm := optim.GradNorm(t.Model.Params.Grad)
	optim.Scale(t.Model.Params.Grad, optim.ClipScale(norm, o.GradClip))
	lr := t.Sched.At(t.Step)
	t.Opt.Update(t.Model.Params.Data, t.Model.Params.Grad, lr)
	t.Step++
	secs := time.Since(start).Seconds()
	tokens := B * T * o.Accum
	return StepStats{
		Step: t.Step, Loss: loss, LR: lr, GradNorm: norm, Tokens: tokens, Seconds: secs,
		TokensPS: float64(tokens) / secs, FLOPsPS: float64(tokens) * t.flopsPerToken / secs,
	}, nil
}

// Evaluate returns the mean loss over steps batches read sequentially from
// loader (positions with ignored targets excluded) and the tokens counted.
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
