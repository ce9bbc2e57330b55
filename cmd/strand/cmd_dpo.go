package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/finetune"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
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
	return f.run(ctx, "dpo", args, func(ctx context.Context, d *distributed) error {
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
		return ref, checkpoint.LoadModel(f.ckpt, ref)
	}
	ref.Init(opts.Seed)
	return ref, nil
}

// dpoLoop trains this process's part of the policy.
func dpoLoop(ctx context.Context, f *dpoFlags, dist *distributed, stdout, stderr io.Writer) error {
	rank, m, coord, comms, logf := runInfo(dist, stderr)
	lead := rank == 0
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
	var refTrain, refHeld []float64
	if tr.Model.Layout.Last || (lead && m.TP == 1 && m.PP == 1) {
		ref, err := f.referenceModel(opts)
		if err != nil {
			return err
		}
		if refTrain, err = finetune.LogProbs(ctx, ref, train); err != nil {
			return err
		}
		if refHeld, err = finetune.LogProbs(ctx, ref, held); err != nil {
			return err
		}
	}
	batches, err := finetune.NewDPOBatches(train, refTrain, f.beta, finetune.BatchConfig{
		Batch: opts.RowsPerRank(m), DPRank: coord.DP, DPSize: m.DP, Shuffle: f.shuffle, Seed: f.seed})
	if err != nil {
		return err
	}
	tr.Source, tr.Objective = batches, batches
	// Resuming, the reference log-probs above are recomputed from the
	// starting checkpoint (--ckpt), not from the policy being resumed.
	dir, err := f.resumeFrom(tr, logf)
	if err != nil {
		return err
	}
	logf("dpo: mesh %v | %d pairs per step | %d steps\n", m, pairsPerStep, f.steps)
	mw, err := f.openMetrics(lead)
	if err != nil {
		return err
	}
	defer mw.Close()
	if err := f.logResume(mw, tr.Step, m); err != nil {
		return err
	}
	start := time.Now()
	var last trainer.StepStats
	stats := make([]float32, 5)
	for tr.Step < f.lastStep() {
		st, err := tr.TrainStep(ctx)
		if err != nil {
			return err
		}
		last = st
		// DPO metrics live on the last stage: sum them over stages (the
		// others add zeros) and data-parallel ranks.
		s := batches.Stats
		copy(stats, []float32{float32(s.Pairs), float32(s.Correct), float32(s.Margin), float32(s.RewardChosen), float32(s.RewardRejected)})
		if comms != nil {
			for _, c := range []*collective.Comm{comms.PP, comms.DP} {
				if c == nil || c.Size() == 1 {
					continue
				}
				if err := c.AllReduce(ctx, collective.F32(stats), collective.Sum); err != nil {
					return fmt.Errorf("dpo metrics: %w", err)
				}
			}
		}
		P := float64(stats[0])
		acc, margin := float64(stats[1])/P, float64(stats[2])/P
		if dist != nil {
			dist.job.report(st.Step, map[string]float64{"loss": st.Loss, "step_seconds": st.Seconds})
		}
		if lead {
			rec := map[string]any{"step": st.Step, "loss": st.Loss, "lr": st.LR, "grad_norm": st.GradNorm, "step_seconds": st.Seconds,
				"reward_margin": margin, "reward_accuracy": acc, "reward_chosen": float64(stats[3]) / P, "reward_rejected": float64(stats[4]) / P}
			if err := mw.Write(rec); err != nil {
				return err
			}
			if st.Step == 1 || st.Step%10 == 0 || st.Step == f.steps {
				fmt.Fprintf(stdout, "step %d/%d loss %.4f reward margin %.4f accuracy %.2f lr %.2e\n", st.Step, f.steps, st.Loss, margin, acc, st.LR)
			}
		}
		if f.saveDue(st.Step) {
			if dir, err = f.save(ctx, tr, rank, dist); err != nil {
				return err
			}
		}
	}
	if !lead {
		return nil
	}
	fmt.Fprintf(stdout, "done: step %d/%d in %s, final loss %.4f, checkpoint %s\n", tr.Step, f.steps, time.Since(start).Round(time.Millisecond), last.Loss, dir)
	if held.Pairs > 0 && refHeld != nil {
		pol, err := finetune.LogProbs(ctx, tr.Model, held)
		if err != nil {
			return err
		}
		m0, a0 := finetune.PairMargin(refHeld)
		m1, a1 := finetune.PairMargin(pol)
		if err := mw.Write(map[string]any{"step": tr.Step, "held_out": held.Pairs, "held_margin_ref": m0, "held_margin": m1,
			"held_accuracy_ref": a0, "held_accuracy": a1}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "held-out chosen-over-rejected log-prob margin %.3f -> %.3f (pairs preferred %.1f%% -> %.1f%%) on %d pairs\n",
			m0, m1, 100*a0, 100*a1, held.Pairs)
	}
	return nil
}
