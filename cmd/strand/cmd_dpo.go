package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/strand-ml/strand/finetune"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/progress"
	"github.com/strand-ml/strand/trainer"
)

// dpoFlags configure `strand dpo`: direct preference optimization of a
// (usually SFT) checkpoint on {"prompt","chosen","rejected"} pairs against
// a frozen copy of itself as the reference.
type dpoFlags struct {
	ftFlags
	beta float64
}

func (f *dpoFlags) register(fs *flag.FlagSet) {
	f.ftFlags.register(fs, "dpo", `{"prompt","chosen","rejected"} per line`, 1e-4)
	fs.Float64Var(&f.beta, "beta", 0.1, "DPO temperature: strength of the implicit KL penalty to the reference")
	f.registerTrainer(fs)
}

func runDPO(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f dpoFlags
	fs := newFlags("dpo", stderr)
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !(f.beta > 0) {
		return usageError{fmt.Sprintf("--beta %g must be positive", f.beta)}
	}
	return f.launchOrRun(ctx, "dpo", args, func(ctx context.Context, d *distributed) error {
		return dpoLoop(ctx, &f, d, stdout, stderr)
	}, stdout, stderr)
}

// referenceModel is the frozen reference: the starting checkpoint (or the
// same fresh initialization the trainer draws), whole, in this process.
// Only last-stage ranks build it, to compute every row's log-prob once.
func (f *dpoFlags) referenceModel(opts trainer.Options) (*model.GPT, error) {
	ref, err := model.New(opts.Model, 8, opts.Seq, gemm.New(max(1, f.threads)))
	if err != nil {
		return nil, err
	}
	if f.ckpt != "" {
		return ref, finetune.LoadWeights(f.ckpt, ref)
	}
	ref.Init(opts.Seed)
	return ref, nil
}

// dpoLoop trains this process's part of the policy on the run loop.
func dpoLoop(ctx context.Context, f *dpoFlags, dist *distributed, stdout, stderr io.Writer) error {
	rank, m, coord, comms, logf := runInfo(dist, stderr)
	opts, pairsPerStep, enc, recs, err := f.pairJob(m, logf)
	if err != nil {
		return err
	}
	all, err := finetune.EncodePairs(enc, recs, f.seq)
	if err != nil {
		return err
	}
	if err := checkVocab(all.Inputs, f.vocabSize); err != nil {
		return err
	}
	nHeld := f.heldOut(all.Pairs)
	train, held := all.Slice(0, all.Pairs-nHeld), all.Slice(all.Pairs-nHeld, all.Pairs)
	logf("dpo: %d training pairs, %d held out, rows of %d (%d completions truncated), beta %g\n", train.Pairs, held.Pairs, f.seq, all.Truncated, f.beta)
	tr, err := f.newTrainer(opts, comms, logf)
	if err != nil {
		return err
	}
	defer tr.Close()
	// Reference log-probs, computed once where the objective runs.
	// Resuming, they are recomputed from the starting checkpoint (--ckpt),
	// not from the policy being resumed.
	var refTrain, refHeld []float64
	if tr.Model.Layout.Last || (rank == 0 && m.TP == 1 && m.PP == 1) {
		if refTrain, refHeld, err = f.referenceLogProbs(ctx, opts, train, held); err != nil {
			return err
		}
	}
	batches, err := finetune.NewDPOBatches(train, refTrain, f.beta, finetune.BatchConfig{
		Batch: opts.RowsPerRank(m), DPRank: coord.DP, DPSize: m.DP, Shuffle: f.shuffle, Seed: f.seed})
	if err != nil {
		return err
	}
	tr.Source, tr.Objective = batches, batches
	logf("dpo: mesh %v | %d pairs per step | %d steps\n", m, pairsPerStep, f.run.steps)
	rc := f.loopConfig(tr, dist, stdout, stderr)
	if m.PP == 1 && held.Pairs > 0 && refHeld != nil {
		// every rank: the policy's held-out log-probs run over its TP
		// group (rank 0 alone would wait for its peers forever)
		rc.Hooks.Finish = func(ctx context.Context, _ trainer.Summary) (map[string]any, []string, error) {
			return heldOutMargin(ctx, tr.Model, held, refHeld)
		}
	}
	_, err = runLoop(ctx, f.trainerSteps(tr, rank, dist, dpoFields(batches, comms)), rc, dist)
	return err
}

// referenceLogProbs are the frozen reference's log-probs of the training
// and held-out rows.
func (f *dpoFlags) referenceLogProbs(ctx context.Context, opts trainer.Options, train, held *finetune.PairData) (refTrain, refHeld []float64, err error) {
	ref, err := f.referenceModel(opts)
	if err != nil {
		return nil, nil, err
	}
	if refTrain, err = finetune.LogProbs(ctx, ref, train); err != nil {
		return nil, nil, err
	}
	refHeld, err = finetune.LogProbs(ctx, ref, held)
	return refTrain, refHeld, err
}

// dpoFields are a DPO step's statistics. They live on the last stage: sum
// them over stages (the others add zeros) and data-parallel ranks.
func dpoFields(batches *finetune.DPOBatches, comms *trainer.Comms) func(context.Context, trainer.StepStats) ([]progress.Field, error) {
	stats := make([]float32, 5)
	return func(ctx context.Context, _ trainer.StepStats) ([]progress.Field, error) {
		s := batches.Stats
		copy(stats, []float32{float32(s.Pairs), float32(s.Correct), float32(s.Margin), float32(s.RewardChosen), float32(s.RewardRejected)})
		if comms != nil {
			if err := trainer.SumOver(ctx, stats, comms.PP, comms.DP); err != nil {
				return nil, err
			}
		}
		P := float64(stats[0])
		return []progress.Field{
			{Name: "reward_margin", Value: float64(stats[2]) / P},
			{Name: "reward_accuracy", Value: float64(stats[1]) / P, Format: "%.2f"},
			{Name: "reward_chosen", Value: float64(stats[3]) / P},
			{Name: "reward_rejected", Value: float64(stats[4]) / P},
		}, nil
	}
}

// heldOutMargin compares the policy's chosen-over-rejected margin on the
// held-out pairs with the reference's.
func heldOutMargin(ctx context.Context, policy *model.GPT, held *finetune.PairData, refHeld []float64) (map[string]any, []string, error) {
	pol, err := finetune.LogProbs(ctx, policy, held)
	if err != nil {
		return nil, nil, err
	}
	m0, a0 := finetune.PairMargin(refHeld)
	m1, a1 := finetune.PairMargin(pol)
	rec := map[string]any{"held_out": held.Pairs, "held_margin_ref": m0, "held_margin": m1, "held_accuracy_ref": a0, "held_accuracy": a1}
	line := fmt.Sprintf("held-out chosen-over-rejected log-prob margin %.3f -> %.3f (pairs preferred %.1f%% -> %.1f%%) on %d pairs",
		m0, m1, 100*a0, 100*a1, held.Pairs)
	return rec, []string{line}, nil
}
