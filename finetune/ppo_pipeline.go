package finetune

import (
	"context"
	"fmt"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/parallel/pipeline"
)

// PPO over pipeline stages. Every rank holds the same stage of all four
// models (policy, reference, reward, value). Each pass of a model over the
// rank's rollout rows is split into PPOConfig.Micro micro-batches of
// consecutive rows, walked through the stages by the program of
// parallel/pipeline's GPipe schedule (checked there): its forward half for
// sampling, log-probs, values and scores, its backward half for the
// training passes, so a stage works on micro-batch m+1 while the next
// works on m. GPipe, not 1F1B: a training pass's losses need every
// micro-batch's forward (the clipped surrogate is a mean over the rank's
// tokens), so all forwards come before any backward. The last stage alone
// sees logits and hidden states: it samples the tokens (broadcast to the
// other stages), computes advantages, losses and the heads' gradients; the
// other stages only run their blocks, and every rank ends a step with the
// last stage's statistics. Gradients accumulate over the micro-batches,
// so a step takes the same update as with one micro-batch (up to the
// order of float additions).

// stagePasses walks passes of a model through this rank's pipeline stage.
type stagePasses struct {
	pp            *collective.Comm
	stage, stages int
	micro         int                // micro-batches per pass
	fwd, bwd      *pipeline.Schedule // GPipe's program for micro micro-batches, split in halves
	in, dOut      []float32          // received activation and output gradient (one micro-batch)
}

func newStagePasses(pp *collective.Comm, micro int) (*stagePasses, error) {
	n := pp.Size()
	full, err := pipeline.New(pipeline.GPipe, n, micro)
	if err != nil {
		return nil, err
	}
	fwd, bwd := pipeline.Halves(full)
	return &stagePasses{pp: pp, stage: pp.Rank(), stages: n, micro: micro, fwd: fwd, bwd: bwd}, nil
}

// passActs are one model's activations for a pass over a rank's rows: one
// model.Acts per micro-batch, micro-batch j holding rows [j*b, (j+1)*b).
// Flat positions n = row*T + position of the whole pass map to
// (micro-batch, local position) by at.
type passActs struct {
	micro []*model.Acts
	b, t  int       // rows per micro-batch and positions of the last forward
	buf   []float32 // concatenated losses
}

// newPassActs allocates m's activations for micro micro-batches of
// m.MaxB/micro rows of T positions.
func newPassActs(m *model.GPT, micro, T int) *passActs {
	pa := &passActs{micro: make([]*model.Acts, micro)}
	for j := range pa.micro {
		pa.micro[j] = m.NewActs(m.MaxB/micro, T)
	}
	return pa
}

// at returns the micro-batch holding flat position n and n's position in it.
func (pa *passActs) at(n int) (*model.Acts, int) {
	per := pa.b * pa.t
	return pa.micro[n/per], n % per
}

// hidden is the last stage's final hidden state (C values) at flat
// position n.
func (pa *passActs) hidden(n, C int) []float32 {
	a, k := pa.at(n)
	return a.Hidden()[k*C:][:C]
}

// losses are the per-position losses (B*T) of the last forward with
// targets, micro-batches in order.
func (pa *passActs) losses() []float32 {
	pa.buf = pa.buf[:0]
	for _, a := range pa.micro {
		pa.buf = append(pa.buf, a.Losses()...)
	}
	return pa.buf
}

// setLossWeights gives each micro-batch its part of the per-position loss
// weights w (B*T); nil clears them.
func (pa *passActs) setLossWeights(w []float32) {
	per := pa.b * pa.t
	for j, a := range pa.micro {
		if w == nil {
			a.SetLossWeights(nil)
			continue
		}
		a.SetLossWeights(w[j*per : (j+1)*per])
	}
}

// setHeadGrad gives each micro-batch its part of the gradient dh (B*T, C)
// of a custom head; nil clears it.
func (pa *passActs) setHeadGrad(dh []float32, C int) {
	per := pa.b * pa.t * C
	for j, a := range pa.micro {
		if dh == nil {
			a.SetHeadGrad(nil)
			continue
		}
		a.SetHeadGrad(dh[j*per : (j+1)*per])
	}
}

// split checks that B rows split into the passes' micro-batches and
// returns the rows per micro-batch.
func (s *stagePasses) split(B int) (int, error) {
	if B%s.micro != 0 {
		return 0, fmt.Errorf("ppo: %d rows per rank do not split into %d micro-batches", B, s.micro)
	}
	return B / s.micro, nil
}

// forward runs m's stage on rows (B, T), each micro-batch receiving its
// input from the previous stage and sending its output to the next; the
// last stage ends with logits (and per-token losses when targets are
// given) in a.
func (s *stagePasses) forward(ctx context.Context, m *model.GPT, a *passActs, rows, targets []int32, B, T int) error {
	b, err := s.split(B)
	if err != nil {
		return err
	}
	a.b, a.t = b, T
	return pipeline.Run(ctx, s.fwd, s.stage, &stagePass{s: s, m: m, a: a, rows: rows, targets: targets, b: b, T: T})
}

// backward runs m's stage backward after forward: the last stage from the
// loss weights or head gradient set on a, the others from the gradients
// the next stage sends; each sends its input gradients to the previous
// stage. Parameter gradients accumulate over the micro-batches.
func (s *stagePasses) backward(ctx context.Context, m *model.GPT, a *passActs, B, T int) error {
	b, err := s.split(B)
	if err != nil {
		return err
	}
	return pipeline.Run(ctx, s.bwd, s.stage, &stagePass{s: s, m: m, a: a, b: b, T: T})
}

// stagePass is pipeline.Stage for one pass of one model.
type stagePass struct {
	s             *stagePasses
	m             *model.GPT
	a             *passActs
	rows, targets []int32 // the whole pass's (B, T)
	b, T          int     // rows per micro-batch
}

// resize returns buf with n values, reallocated when too small.
func resize(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}

// Do implements pipeline.Stage.
func (p *stagePass) Do(ctx context.Context, act pipeline.Action) error {
	s, j := p.s, act.Micro
	n := p.b * p.T * p.m.Config.NEmbd // the residual stream between stages
	a := p.a.micro[j]
	switch act.Kind {
	case pipeline.RecvAct:
		s.in = resize(s.in, n)
		if err := s.pp.Recv(ctx, collective.F32(s.in), s.stage-1); err != nil {
			return fmt.Errorf("receive activations of micro-batch %d from stage %d: %w", j, s.stage-1, err)
		}
	case pipeline.Forward:
		var in []float32
		if !p.m.Layout.First {
			in = s.in[:n]
		}
		per := p.b * p.T
		rows := p.rows[j*per : (j+1)*per]
		var targets []int32
		if p.targets != nil {
			targets = p.targets[j*per : (j+1)*per]
		}
		_, _, err := p.m.ForwardActs(ctx, a, rows, in, targets, p.b, p.T)
		return err
	case pipeline.SendAct:
		if err := s.pp.Send(ctx, collective.F32(a.Output()), s.stage+1); err != nil {
			return fmt.Errorf("send activations of micro-batch %d to stage %d: %w", j, s.stage+1, err)
		}
	case pipeline.RecvGrad:
		s.dOut = resize(s.dOut, n)
		if err := s.pp.Recv(ctx, collective.F32(s.dOut), s.stage+1); err != nil {
			return fmt.Errorf("receive gradient of micro-batch %d from stage %d: %w", j, s.stage+1, err)
		}
	case pipeline.Backward:
		var dOut []float32
		if !p.m.Layout.Last {
			dOut = s.dOut[:n]
		}
		return p.m.BackwardActs(ctx, a, dOut, 1)
	case pipeline.SendGrad:
		if err := s.pp.Send(ctx, collective.F32(p.m.DInput(a)), s.stage-1); err != nil {
			return fmt.Errorf("send gradient of micro-batch %d to stage %d: %w", j, s.stage-1, err)
		}
	}
	return nil
}

// NewStageRewardModel wraps one pipeline stage of a reward model with head
// h for PPO's reward and value models (NewRewardModel needs the whole
// model; PPO reads the head on the last stage through its own passes and
// holds the activations, one per micro-batch, so none are allocated here:
// Rewards and Backward refuse).
func NewStageRewardModel(m *model.GPT, h RewardHead) (*RewardModel, error) {
	C := m.Config.NEmbd
	if len(h.Weight) != C {
		return nil, fmt.Errorf("reward head of width %d for a model of width %d", len(h.Weight), C)
	}
	rm := &RewardModel{GPT: m, dHead: make([]float32, C+1),
		dHid: make([]float32, m.MaxB*m.MaxT*C)}
	return rm, rm.SetHead(h)
}

// broadcastLast replaces buf on every stage with the last stage's values.
func broadcastLast(ctx context.Context, pp *collective.Comm, buf []float32) error {
	n := pp.Size()
	if n == 1 {
		return nil
	}
	return pp.Broadcast(ctx, collective.F32(buf), n-1)
}
