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
// rank's rollout rows is one micro-batch walked through the stages by the
// program of parallel/pipeline's GPipe schedule (checked there): its
// forward half for sampling, log-probs, values and scores, its backward
// half for the training passes. The last stage alone sees logits and
// hidden states: it samples the tokens (broadcast to the other stages),
// computes advantages, losses and the heads' gradients; the other stages
// only run their blocks, and every rank ends a step with the last stage's
// statistics.

// stagePasses walks passes of a model through this rank's pipeline stage.
type stagePasses struct {
	pp            *collective.Comm
	stage, stages int
	fwd, bwd      *pipeline.Schedule // GPipe's one-micro-batch program, split in halves
	in, dOut      []float32          // received activation and output gradient
}

func newStagePasses(pp *collective.Comm) (*stagePasses, error) {
	n := groupSize(pp)
	full, err := pipeline.New(pipeline.GPipe, n, 1)
	if err != nil {
		return nil, err
	}
	fwd := &pipeline.Schedule{Name: "forward", Stages: n, Micro: 1, Steps: make([][]pipeline.Action, n)}
	bwd := &pipeline.Schedule{Name: "backward", Stages: n, Micro: 1, Steps: make([][]pipeline.Action, n)}
	for st, prog := range full.Steps {
		for _, a := range prog {
			switch a.Kind {
			case pipeline.Forward, pipeline.SendAct, pipeline.RecvAct:
				fwd.Steps[st] = append(fwd.Steps[st], a)
			default:
				bwd.Steps[st] = append(bwd.Steps[st], a)
			}
		}
	}
	return &stagePasses{pp: pp, stage: groupRank(pp), stages: n, fwd: fwd, bwd: bwd}, nil
}

// forward runs m's stage on rows (B, T), receiving its input from the
// previous stage and sending its output to the next; the last stage ends
// with logits (and per-token losses when targets are given) in a.
func (s *stagePasses) forward(ctx context.Context, m *model.GPT, a *model.Acts, rows, targets []int32, B, T int) error {
	return pipeline.Run(ctx, s.fwd, s.stage, &stagePass{s: s, m: m, a: a, rows: rows, targets: targets, B: B, T: T})
}

// backward runs m's stage backward after forward: the last stage from the
// loss weights or head gradient set on a, the others from the gradient the
// next stage sends; each sends its input gradient to the previous stage.
func (s *stagePasses) backward(ctx context.Context, m *model.GPT, a *model.Acts, B, T int) error {
	return pipeline.Run(ctx, s.bwd, s.stage, &stagePass{s: s, m: m, a: a, B: B, T: T})
}

// stagePass is pipeline.Stage for one pass of one model.
type stagePass struct {
	s             *stagePasses
	m             *model.GPT
	a             *model.Acts
	rows, targets []int32
	B, T          int
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
	s := p.s
	n := p.B * p.T * p.m.Config.NEmbd // the residual stream between stages
	switch act.Kind {
	case pipeline.RecvAct:
		s.in = resize(s.in, n)
		if err := s.pp.Recv(ctx, collective.F32(s.in), s.stage-1); err != nil {
			return fmt.Errorf("receive activations from stage %d: %w", s.stage-1, err)
		}
	case pipeline.Forward:
		var in []float32
		if !p.m.Layout.First {
			in = s.in[:n]
		}
		_, _, err := p.m.ForwardActs(ctx, p.a, p.rows, in, p.targets, p.B, p.T)
		return err
	case pipeline.SendAct:
		if err := s.pp.Send(ctx, collective.F32(p.a.Output()), s.stage+1); err != nil {
			return fmt.Errorf("send activations to stage %d: %w", s.stage+1, err)
		}
	case pipeline.RecvGrad:
		s.dOut = resize(s.dOut, n)
		if err := s.pp.Recv(ctx, collective.F32(s.dOut), s.stage+1); err != nil {
			return fmt.Errorf("receive gradient from stage %d: %w", s.stage+1, err)
		}
	case pipeline.Backward:
		var dOut []float32
		if !p.m.Layout.Last {
			dOut = s.dOut[:n]
		}
		return p.m.BackwardActs(ctx, p.a, dOut, 1)
	case pipeline.SendGrad:
		if err := s.pp.Send(ctx, collective.F32(p.m.DInput(p.a)), s.stage-1); err != nil {
			return fmt.Errorf("send gradient to stage %d: %w", s.stage-1, err)
		}
	}
	return nil
}

// NewStageRewardModel wraps one pipeline stage of a reward model with head
// h for PPO's reward and value models (NewRewardModel needs the whole
// model; PPO reads the head on the last stage through its own passes).
func NewStageRewardModel(m *model.GPT, h RewardHead) (*RewardModel, error) {
	C := m.Config.NEmbd
	if len(h.Weight) != C {
		return nil, fmt.Errorf("reward head of width %d for a model of width %d", len(h.Weight), C)
	}
	rm := &RewardModel{GPT: m, acts: m.NewActs(m.MaxB, m.MaxT), dHead: make([]float32, C+1),
		dHid: make([]float32, m.MaxB*m.MaxT*C)}
	return rm, rm.SetHead(h)
}

// broadcastLast replaces buf on every stage with the last stage's values.
func broadcastLast(ctx context.Context, pp *collective.Comm, buf []float32) error {
	n := groupSize(pp)
	if n == 1 {
		return nil
	}
	return pp.Broadcast(ctx, collective.F32(buf), n-1)
}
