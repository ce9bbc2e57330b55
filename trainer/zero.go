package trainer

import (
	"context"
	"fmt"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/parallel/zero"
	"github.com/strand-ml/strand/trace"
)

// startZero shards the model's gradients (ZeRO-2) and parameters (ZeRO-3)
// over the data-parallel group, or over shard groups of Opts.ShardGroup
// ranks with the pieces all-reduced across groups (hybrid sharding). With
// fresh the parameters are drawn from the seed unit by unit.
func (t *Trainer) startZero(fresh, paged bool) error {
	o, dp := t.Opts, t.Comms.DP
	shard, replica := dp, (*collective.Comm)(nil)
	if n := o.ShardGroup; n > 0 && n < dp.Size() {
		var err error
		if shard, replica, err = dp.Subgroups(n, "shard"); err != nil {
			return fmt.Errorf("hybrid sharding: %w", err)
		}
		t.subComms = append(t.subComms, shard, replica)
	}
	t.Model.SetUnitMin(o.ZeroMinUnit)
	z, err := zero.New(t.Model, shard, replica, zero.Options{Stage: o.zeroStage(), KeepGathered: o.KeepGathered, Seed: o.Seed, Init: fresh, Paged: paged,
		Precision: model.Precision(o.Precision), FullRecompute: o.Recompute == model.RecomputeFull})
	if err != nil {
		return err
	}
	t.zero = z
	return nil
}

// finishZero ends the step's gradient reduction under ZeRO-2/3: the last
// reduce-scatters, then the tied embedding's owned piece summed between
// the first and last stage (both cut wte alike: the same unit length over
// the same shard group).
func (t *Trainer) finishZero(ctx context.Context) error {
	if err := t.zero.Finish(ctx); err != nil {
		return err
	}
	c := t.Comms
	if c.Embed.Size() <= 1 {
		return nil
	}
	end := t.Trace.Begin("tied-embedding allreduce", "comm", trace.LaneComm, nil)
	defer end()
	for _, piece := range t.zero.PiecesFrom(t.Model.TiedOffset) {
		if err := c.Embed.AllReduce(ctx, collective.F32(piece), collective.Sum); err != nil {
			return fmt.Errorf("tied embedding gradient: %w", err)
		}
	}
	return nil
}

// MaterializeParams makes Model.Params.Data hold every parameter of this
// rank's shard of the model: under ZeRO-3 it gathers every unit (held
// until the next step); otherwise it does nothing. Every data-parallel
// rank calls it together.
func (t *Trainer) MaterializeParams(ctx context.Context) error {
	if t.zero == nil {
		return nil
	}
	return t.zero.GatherAll(ctx)
}
