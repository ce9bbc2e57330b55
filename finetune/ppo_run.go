package finetune

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"

	"github.com/strand-ml/strand/progress"
	"github.com/strand-ml/strand/trainer"
)

// PPORun drives PPO in the run loop (trainer.Stepper): every step draws
// Batch prompts from Prompts with a seeded sampler (the same global batch
// on every rank; TrainStep takes this rank's share) and takes one PPO
// step. The sampler's state is saved with every checkpoint, so a resumed
// run draws the prompts an uninterrupted one would.
type PPORun struct {
	P       *PPO
	Prompts [][]int32
	Batch   int      // prompts per step, over all data-parallel ranks
	Place   PPOPlace // this rank's place in the job, for checkpoints

	pcg   *rand.PCG
	rng   *rand.Rand
	batch [][]int32
}

// NewPPORun returns the run of p over prompts, batch per step, with the
// prompt sampler seeded by seed.
func NewPPORun(p *PPO, prompts [][]int32, batch int, seed uint64, place PPOPlace) *PPORun {
	pcg := rand.NewPCG(seed, 2)
	return &PPORun{P: p, Prompts: prompts, Batch: batch, Place: place, pcg: pcg, rng: rand.New(pcg), batch: make([][]int32, batch)}
}

// ppoRunState is what PPORun keeps in a checkpoint beyond PPO's own
// state: the position of the sampler drawing each step's prompts.
type ppoRunState struct {
	PromptRNG []byte `json:"prompt_rng"` // rand.PCG's binary state
}

// Step implements trainer.Stepper.
func (r *PPORun) Step(ctx context.Context) (trainer.Record, error) {
	for i := range r.batch {
		r.batch[i] = r.Prompts[r.rng.IntN(len(r.Prompts))]
	}
	s, err := r.P.TrainStep(ctx, r.batch)
	if err != nil {
		return trainer.Record{}, fmt.Errorf("step %d: %w", r.P.Step+1, err)
	}
	return trainer.Record{
		Stats:  trainer.StepStats{Step: r.P.Step},
		NoLoss: true,
		Fields: []progress.Field{
			{Name: "reward", Value: s.Reward, Format: "%.3f"},
			{Name: "kl", Value: s.KL, Format: "%.3f"},
			{Name: "policy_loss", Value: s.PolicyLoss},
			{Name: "value_loss", Value: s.ValueLoss},
			{Name: "clip_frac", Value: s.ClipFrac, Format: "%.3f"},
			{Name: "length", Value: s.Length, Format: "%.1f"},
		},
	}, nil
}

// Done implements trainer.Stepper.
func (r *PPORun) Done() int { return r.P.Step }

// Save implements trainer.Stepper.
func (r *PPORun) Save(ctx context.Context, run string, keep int) (string, error) {
	state, err := r.pcg.MarshalBinary()
	if err != nil {
		return "", err
	}
	return r.P.Save(ctx, run, keep, r.Place, ppoRunState{PromptRNG: state})
}

// Restore implements trainer.Stepper.
func (r *PPORun) Restore(_ context.Context, dir string) error {
	st, err := r.P.Restore(dir)
	if err != nil {
		return err
	}
	var rs ppoRunState
	if err := json.Unmarshal(st.Run, &rs); err != nil {
		return fmt.Errorf("checkpoint %s: prompt sampler: %w", dir, err)
	}
	if err := r.pcg.UnmarshalBinary(rs.PromptRNG); err != nil {
		return fmt.Errorf("checkpoint %s: prompt sampler: %w", dir, err)
	}
	return nil
}
