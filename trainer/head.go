package trainer

import (
	"context"
	"fmt"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/optim"
)

// HeadObjective replaces the language-model head on the last pipeline
// stage with a head of the caller's own on the final hidden states
// (fine-tuning: the reward model's scalar head at each completion's
// closing EOS). The step's loss is the sum of HeadForward's results over
// the global batch divided by the sum of Units.
//
// The head's parameters live outside the model, one full copy on every
// rank of the job. Only last-stage ranks compute their gradient; the
// trainer zeros it each step, scales it like the model's, sums it over the
// data-parallel and the pipeline group (the other stages add zeros, so
// every rank takes the same update and rank 0 can checkpoint it), counts
// it once in the global clipping norm, updates it with its own AdamW
// (no weight decay) and saves it with its moments in trainer_state.json.
// Under tensor parallelism the final hidden state is replicated, so the
// TP ranks of the last stage compute bit-identical head gradients.
//
// The forward stops at the final hidden states (model's SetHiddenOnly): no
// LM logits are computed, and the backward starts from the head gradient
// (the tied embedding gets no head gradient).
type HeadObjective interface {
	// Units is the number of loss units (e.g. preference pairs) in this
	// rank's rows of the step (targets: rows x Seq); every rank calls it.
	Units(targets []int32) int
	// HeadParams are the head's parameters and their gradient buffer, of
	// equal length; the trainer owns their updates.
	HeadParams() (params, grads []float32)
	// HeadForward is called on the last stage after the forward of the
	// micro-batch starting at row (of this rank's step rows), with the
	// final hidden states after ln_f (micro x Seq, C). It returns the
	// micro-batch's summed loss, fills dHidden (micro x Seq, C, zeroed by
	// the caller) with d(summed loss)/d(hidden) and adds
	// d(summed loss)/d(params) to the gradient buffer.
	HeadForward(row int, hidden, dHidden []float32) (float64, error)
}

// HeadState is a head objective's parameters and AdamW state in a
// checkpoint's trainer_state.json (float32 values survive JSON exactly).
type HeadState struct {
	Params []float32 `json:"params"`
	M      []float32 `json:"exp_avg"`
	V      []float32 `json:"exp_avg_sq"`
	Step   int       `json:"step"`
}

// headTrainer is the trainer's side of a HeadObjective.
type headTrainer struct {
	obj    HeadObjective
	params []float32
	grads  []float32
	opt    *optim.AdamW
	dHid   []float32 // (micro*Seq, C) scratch on the last stage
}

// SetHead installs a head objective. Call it on every rank, before the
// first step and before Restore; it cannot be combined with Objective.
func (t *Trainer) SetHead(h HeadObjective) error {
	if h == nil {
		return fmt.Errorf("head objective: nil")
	}
	if t.Objective != nil {
		return fmt.Errorf("head objective: the trainer already has an Objective on the LM head")
	}
	p, g := h.HeadParams()
	if len(p) == 0 || len(p) != len(g) {
		return fmt.Errorf("head objective: %d parameters with %d gradients", len(p), len(g))
	}
	opt, err := optim.NewAdamW(t.Opts.AdamW, len(p), []optim.Segment{{Offset: 0, Size: len(p)}})
	if err != nil {
		return fmt.Errorf("head objective: %w", err)
	}
	ht := &headTrainer{obj: h, params: p, grads: g, opt: opt}
	if t.Model.Layout.Last {
		ht.dHid = make([]float32, t.micro*t.Opts.Seq*t.Opts.Model.NEmbd)
	}
	t.head = ht
	for _, a := range t.acts {
		a.SetHiddenOnly(true)
	}
	return nil
}

// HeadAdamW is the head objective's optimizer (nil without one): callers
// that checkpoint the head themselves (PPO's value head) save and restore
// its moments.
func (t *Trainer) HeadAdamW() *optim.AdamW {
	if t.head == nil {
		return nil
	}
	return t.head.opt
}

// SetHiddenOnly makes every forward of this trainer stop at the final
// hidden states (no LM logits): for a model read through a head of the
// caller's own in Forward passes (PPO's reward model).
func (t *Trainer) SetHiddenOnly() {
	for _, a := range t.acts {
		a.SetHiddenOnly(true)
	}
}

// headForward runs the head on a last-stage micro-batch and makes its
// hidden-state gradient (times scale, as the LM loss would be) the start
// of the backward.
func (t *Trainer) headForward(row int, slot int, scale float32) (float64, error) {
	a, ht := t.acts[slot], t.head
	hid := a.Hidden()
	dh := ht.dHid[:len(hid)]
	clear(dh)
	sum, err := ht.obj.HeadForward(row, hid, dh)
	if err != nil {
		return 0, err
	}
	optim.Scale(dh, scale)
	a.SetHeadGrad(dh)
	return sum, nil
}

// reduceHead scales the head's gradient like the model's and sums it over
// the data-parallel and pipeline groups.
func (t *Trainer) reduceHead(ctx context.Context, scale float32) error {
	if t.head == nil {
		return nil
	}
	g := t.head.grads
	optim.Scale(g, scale)
	for _, c := range []*collective.Comm{t.Comms.DP, t.Comms.PP} {
		if err := allReduce(ctx, c, g, collective.Sum); err != nil {
			return fmt.Errorf("head gradient: %w", err)
		}
	}
	return nil
}

// headSumSquares is this rank's share of the head gradient in the global
// norm: counted on the last stage's TP rank 0 (and, under ZeRO-1, whose
// norm is also summed over data-parallel ranks, on DP rank 0 only).
func (t *Trainer) headSumSquares() float64 {
	if t.head == nil || !t.Model.Layout.Last || t.Comms.Coord.TP != 0 {
		return 0
	}
	if t.bucketer != nil && t.Opts.DP.ZeRO1 && t.Comms.Coord.DP != 0 {
		return 0
	}
	if t.zero != nil && t.zero.ShardComm().Rank() != 0 {
		return 0 // the sums are added over the shard group: count the head once
	}
	return optim.SumSquares(t.head.grads)
}

// headState copies the head's parameters and moments.
func (t *Trainer) headState() *HeadState {
	if t.head == nil {
		return nil
	}
	ht := t.head
	return &HeadState{Params: append([]float32(nil), ht.params...), M: append([]float32(nil), ht.opt.M...),
		V: append([]float32(nil), ht.opt.V...), Step: ht.opt.Step}
}

// restoreHead loads the head from a checkpoint's state.
func (t *Trainer) restoreHead(dir string, hs *HeadState) error {
	if t.head == nil {
		return nil
	}
	ht := t.head
	if hs == nil {
		return fmt.Errorf("checkpoint %s: no head state (written without a head objective)", dir)
	}
	n := len(ht.params)
	if len(hs.Params) != n || len(hs.M) != n || len(hs.V) != n {
		return fmt.Errorf("checkpoint %s: head state of %d/%d/%d values for a head of %d", dir, len(hs.Params), len(hs.M), len(hs.V), n)
	}
	copy(ht.params, hs.Params)
	copy(ht.opt.M, hs.M)
	copy(ht.opt.V, hs.V)
	ht.opt.Step = hs.Step
	return nil
}
