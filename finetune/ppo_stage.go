package finetune

import (
	"context"
	"fmt"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/model"
)

// NewStageRewardModel wraps one pipeline stage of a reward model with head
// h for PPO's reward and value models (NewRewardModel needs the whole
// model; PPO runs them through its trainers, which hold the activations,
// so none are allocated here: Rewards and Backward refuse).
func NewStageRewardModel(m *model.GPT, h RewardHead) (*RewardModel, error) {
	C := m.Config.NEmbd
	if len(h.Weight) != C {
		return nil, fmt.Errorf("reward head of width %d for a model of width %d", len(h.Weight), C)
	}
	rm := &RewardModel{GPT: m, dHead: make([]float32, C+1)}
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
