package main

import (
	"flag"
	"fmt"

	"github.com/strand-ml/strand/trainer"
)

// shardFlags are the ZeRO options of every command that trains on the
// trainer (train, sft, dpo, rm train).
type shardFlags struct {
	zero                int
	zero1               bool
	shardGroup          int
	reshardAfterForward bool
	minUnit             int
}

func (s *shardFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&s.zero, "zero", 0, "ZeRO stage over the data-parallel ranks: 0 replicated (DDP), 1 optimizer state sharded, 2 and gradients, 3 and parameters (gathered layer by layer, prefetched)")
	fs.BoolVar(&s.zero1, "zero1", false, "alias of --zero 1")
	fs.IntVar(&s.shardGroup, "shard-group", 0, "with --zero 2 or 3: shard within groups of N data-parallel ranks (e.g. one node's) and replicate across groups (default: one group of all)")
	fs.IntVar(&s.minUnit, "zero-min-unit", 0, "with --zero 2 or 3: the fewest parameters a unit holds; a block's quarters (attention and MLP input and output) below it merge (default 1048576: a small model moves whole blocks, gpt2 quarters)")
	fs.BoolVar(&s.reshardAfterForward, "reshard-after-forward", true, "with --zero 3: hand each layer's gathered parameters back after its forward and gather them again for backward (false: keep them until backward, ZeRO-2's communication for more memory)")
}

// stage is the ZeRO stage the flags ask for (--zero1 is 1; a conflict
// between the two is reported by apply or, for ppo, by the trainer).
func (s shardFlags) stage() int {
	if s.zero1 && s.zero == 0 {
		return 1
	}
	return s.zero
}

// apply sets the ZeRO options of o.
func (s shardFlags) apply(o *trainer.Options) error {
	stage := s.stage()
	if s.zero1 && stage != 1 {
		return usageError{fmt.Sprintf("--zero1 is --zero 1, and --zero %d was given too", s.zero)}
	}
	o.Zero, o.DP.ZeRO1 = stage, stage == 1
	o.ShardGroup = s.shardGroup
	o.KeepGathered = !s.reshardAfterForward
	o.ZeroMinUnit = s.minUnit
	return nil
}
