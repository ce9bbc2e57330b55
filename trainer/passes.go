package trainer

import (
	"context"
	"fmt"

	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/parallel/pipeline"
)

// Passes a caller drives itself (evaluation; PPO's sampling, log-probs,
// values and scores) run through the same stage executor as a training
// step, by the forward half of GPipe's program over the trainer's
// micro-batches.

// Pass is one forward pass over this rank's rows.
type Pass struct {
	Rows    []int32 // (B, T): B rows of T positions, B the trainer's rows per rank
	Targets []int32 // (B, T) next tokens for per-position losses; nil for none
	T       int     // positions per row, at most the trainer's Seq
	// Last, when set, runs on the last pipeline stage after the forward of
	// each micro-batch (rows [micro*b, (micro+1)*b) of the pass), with its
	// activations (logits, losses, hidden states): read what is needed
	// there, a later micro-batch may reuse them.
	Last func(ctx context.Context, micro int, a *model.Acts) error
}

// Forward runs p through this rank's stage: every rank of the pipeline
// calls it together.
func (t *Trainer) Forward(ctx context.Context, p Pass) error {
	B := t.rows
	switch {
	case p.T <= 0 || p.T > t.Opts.Seq:
		return fmt.Errorf("forward pass: %d positions per row, the trainer holds 1..%d", p.T, t.Opts.Seq)
	case len(p.Rows) != B*p.T || p.Targets != nil && len(p.Targets) != B*p.T:
		return fmt.Errorf("forward pass: %d tokens and %d targets for %d rows of %d", len(p.Rows), len(p.Targets), B, p.T)
	}
	if t.fwdProg == nil && t.chunks != nil {
		t.fwdProg = t.chunks.fwdProg // the interleaved program's forward half
	}
	if t.fwdProg == nil {
		full, err := pipeline.New(pipeline.GPipe, t.Comms.Mesh.PP, t.Opts.Micro)
		if err != nil {
			return err
		}
		t.fwdProg, _ = pipeline.Halves(full)
	}
	if t.exec == nil {
		t.exec = &stageExec{t: t, pendingAct: map[int]*sendJob{}, pendingGrad: map[int]*sendJob{}}
	}
	ex := t.exec
	ex.scale, ex.inputs, ex.targets, ex.b, ex.T = 1, p.Rows, p.Targets, t.micro, p.T
	ex.last = p.Last
	if ex.last == nil {
		ex.last = func(context.Context, int, *model.Acts) error { return nil }
	}
	clear(ex.pendingAct)
	if t.chunks != nil {
		t.chunks.reset(len(t.recvAct))
	}
	compute := t.pipeCompute // passes are not the step's bubble
	defer func() { t.pipeCompute = compute }()
	err := pipeline.Run(ctx, t.fwdProg, t.Comms.Coord.PP, ex)
	if t.sender != nil {
		if ferr := t.sender.flush(ctx); err == nil {
			err = ferr
		}
	}
	return err
}
