package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/finetune"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/progress"
	"github.com/strand-ml/strand/trainer"
)

// rmState is a reward-model checkpoint's trainer_state.json as its readers
// (rm score, ppo --rm) see it: the scalar head lives there under
// "reward_head", next to the transformer's weights in any layout. (The
// trainer also records the head with its optimizer moments under "head",
// for --resume.)
type rmState struct {
	Step       int                 `json:"step"`
	Seed       uint64              `json:"seed"`
	RewardHead finetune.RewardHead `json:"reward_head"`
}

// runRMTrain trains a reward model on {"prompt","chosen","rejected"} pairs
// on the trainer: one process or any DP x TP x PP mesh (--nproc, --dp,
// --tp, --pp), and reports pairwise accuracy on the held-out tail. With
// --lora-rank (on --ckpt BASE) its checkpoints hold the adapters and the
// head; rm score and ppo --rm merge them into the base (finetune.LoadWeights).
func runRMTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f ftFlags
	fs := newFlags("rm train", stderr)
	f.register(fs, "rm", `{"prompt","chosen","rejected"} per line`, 1e-3)
	f.registerTrainer(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if f.loraRank > 0 && f.ckpt == "" {
		// rm score and ppo --rm merge the adapters into the base they were
		// trained on, which must be a checkpoint they can load.
		return usageError{"--lora-rank needs --ckpt BASE (the adapters are merged into it when the reward model is loaded)"}
	}
	return f.launchOrRun(ctx, "rm train", args, func(ctx context.Context, d *distributed) error {
		return rmTrainLoop(ctx, &f, d, stdout, stderr)
	}, stdout, stderr)
}

// rmTrainLoop trains this process's part of the reward model on the run
// loop: the transformer's stage and shard like pre-training, and the
// scalar head (replicated) through the trainer's head objective.
func rmTrainLoop(ctx context.Context, f *ftFlags, dist *distributed, stdout, stderr io.Writer) error {
	rank, m, coord, comms, logf := runInfo(dist, stderr)
	opts, pairsPerStep, enc, recs, err := f.pairJob(m, logf)
	if err != nil {
		return err
	}
	all, err := finetune.EncodeRewardPairs(enc, recs, f.seq)
	if err != nil {
		return err
	}
	if err := checkVocab(all.Inputs, f.vocabSize); err != nil {
		return err
	}
	P := all.Rows / 2
	nHeld := f.heldOut(P)
	train, held := all.Slice(0, 2*(P-nHeld)), all.Slice(2*(P-nHeld), all.Rows)
	logf("rm: %d training pairs, %d held out, rows of %d (%d completions truncated)\n", P-nHeld, nHeld, f.seq, all.Truncated)
	tr, err := f.newTrainer(opts, comms, logf)
	if err != nil {
		return err
	}
	defer tr.Close()
	batches, err := f.rewardBatches(train, opts.Model.NEmbd, finetune.BatchConfig{
		Batch: opts.RowsPerRank(m), DPRank: coord.DP, DPSize: m.DP, Shuffle: f.shuffle, Seed: f.seed}, logf)
	if err != nil {
		return err
	}
	tr.Source = batches
	if err := tr.SetHead(batches); err != nil {
		return err
	}
	logf("rm: mesh %v | %d pairs per step | %d steps\n", m, pairsPerStep, f.run.steps)
	rc := f.loopConfig(tr, dist, stdout, stderr)
	if rank == 0 && held.Rows > 0 {
		rc.Hooks.Finish = func(ctx context.Context, sum trainer.Summary) (map[string]any, []string, error) {
			return f.heldOutAccuracy(ctx, sum.Checkpoint, opts.Model, max(1, pairsPerStep/m.DP), batches.Head(), held)
		}
	}
	steps := f.trainerSteps(tr, rank, dist, rmFields(batches, comms))
	// The head is the same on every rank; rank 0 records it for rm score
	// and ppo --rm.
	steps.Extra = func() map[string]any { return map[string]any{"reward_head": batches.Head()} }
	_, err = runLoop(ctx, steps, rc, dist)
	return err
}

// rewardBatches are the reward model's batches and head; starting from a
// reward model (--ckpt), its head too (every rank reads the same file, so
// the copies stay equal).
func (f *ftFlags) rewardBatches(train *finetune.RewardRows, width int, bc finetune.BatchConfig, logf func(string, ...any)) (*finetune.RewardBatches, error) {
	batches, err := finetune.NewRewardBatches(train, width, f.seed, bc)
	if err != nil || f.ckpt == "" {
		return batches, err
	}
	var st rmState
	if checkpoint.LoadTrainerState(f.ckpt, &st) == nil && len(st.RewardHead.Weight) > 0 {
		if err := batches.SetHead(st.RewardHead); err != nil {
			return nil, fmt.Errorf("%s: %w", f.ckpt, err)
		}
		logf("reward head from %s\n", f.ckpt)
	}
	return batches, nil
}

// rmFields is a reward-model step's batch accuracy. It lives on the last
// stage: sum it over stages (the others add zeros) and data-parallel ranks.
func rmFields(batches *finetune.RewardBatches, comms *trainer.Comms) func(context.Context, trainer.StepStats) ([]progress.Field, error) {
	stats := make([]float32, 2)
	return func(ctx context.Context, _ trainer.StepStats) ([]progress.Field, error) {
		stats[0], stats[1] = float32(batches.Stats.Pairs), float32(batches.Stats.Correct)
		if comms != nil {
			if err := trainer.SumOver(ctx, stats, comms.PP, comms.DP); err != nil {
				return nil, err
			}
		}
		return []progress.Field{{Name: "accuracy", Value: float64(stats[1]) / float64(stats[0]), Format: "%.2f"}}, nil
	}
}

// heldOutAccuracy is the pairwise accuracy on the held-out pairs of the
// whole model read back from the checkpoint dir, whatever the layout it
// was trained in.
func (f *ftFlags) heldOutAccuracy(ctx context.Context, dir string, cfg model.Config, pairs int, head finetune.RewardHead, held *finetune.RewardRows) (map[string]any, []string, error) {
	rm, err := f.rewardModel(cfg, pairs)
	if err != nil {
		return nil, nil, err
	}
	if err := finetune.LoadWeights(dir, rm.GPT); err != nil {
		return nil, nil, err
	}
	if err := rm.SetHead(head); err != nil {
		return nil, nil, err
	}
	hacc, _, err := rm.PairAccuracy(ctx, held)
	if err != nil {
		return nil, nil, err
	}
	return map[string]any{"held_accuracy": hacc, "held_out": held.Rows / 2},
		[]string{fmt.Sprintf("held-out pairwise accuracy %.1f%% on %d pairs", 100*hacc, held.Rows/2)}, nil
}

// rewardModel builds the transformer from --ckpt (or a fresh --model) with
// a fresh head, for batches of up to pairs pairs.
func (f *ftFlags) rewardModel(cfg model.Config, pairs int) (*finetune.RewardModel, error) {
	m, err := model.New(cfg, 2*max(1, pairs), f.seq, gemm.New(f.threads))
	if err != nil {
		return nil, err
	}
	if f.ckpt != "" {
		if err := finetune.LoadWeights(f.ckpt, m); err != nil {
			return nil, err
		}
	} else {
		m.Init(f.seed)
	}
	return finetune.NewRewardModel(m, f.seed)
}

func checkVocab(ids []int32, vocab int) error {
	for _, id := range ids {
		if int(id) >= vocab {
			return fmt.Errorf("token %d outside the model's vocabulary of %d", id, vocab)
		}
	}
	return nil
}

// runRMScore scores preference pairs with a trained reward model: one JSON
// line per pair with both rewards, then the pairwise accuracy.
func runRMScore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("rm score", stderr)
	ckpt := fs.String("ckpt", "", "reward-model checkpoint or run directory (from strand rm train)")
	dataPath := fs.String("data", "", `JSONL file: {"prompt","chosen","rejected"} per line`)
	tokDir := fs.String("tokenizer", "", "BPE tokenizer directory (default: bytes, ids 0-255)")
	onBad := fs.String("on-bad-record", "fail", "malformed JSONL line: skip (report its line number and count it) or fail")
	seq := fs.Int("seq", 0, "positions per row (default: the model's positions)")
	threads := fs.Int("threads", 0, "compute goroutines (default: all cores)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *ckpt == "" || *dataPath == "" {
		return usageError{"rm score: --ckpt and --data are required"}
	}
	f := ftFlags{ckpt: *ckpt, dataPath: *dataPath, onBad: *onBad, seq: *seq, threads: *threads}
	if err := f.checkData("rm score"); err != nil {
		return err
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	var st rmState
	if err := checkpoint.LoadTrainerState(f.ckpt, &st); err != nil {
		return fmt.Errorf("%s: not a reward-model checkpoint: %w", f.ckpt, err)
	}
	if len(st.RewardHead.Weight) == 0 {
		return fmt.Errorf("%s: not a reward-model checkpoint (no reward_head in its trainer state; train one with strand rm train)", f.ckpt)
	}
	rm, err := f.rewardModel(cfg, 4)
	if err != nil {
		return err
	}
	if err := rm.SetHead(st.RewardHead); err != nil {
		return fmt.Errorf("%s: %w", f.ckpt, err)
	}
	tok, err := loadTokenizer(*tokDir, f.ckpt)
	if err != nil {
		return err
	}
	recs, err := f.readRecords(finetune.Pair, func(format string, a ...any) { fmt.Fprintf(stderr, format, a...) })
	if err != nil {
		return err
	}
	d, err := finetune.EncodeRewardPairs(finetune.NewEncoder(tok), recs, f.seq)
	if err != nil {
		return err
	}
	if err := checkVocab(d.Inputs, f.vocabSize); err != nil {
		return err
	}
	acc, rewards, err := rm.PairAccuracy(ctx, d)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	for i := 0; i < d.Rows/2; i++ {
		if err := enc.Encode(map[string]any{"line": d.Lines[2*i], "chosen": rewards[2*i], "rejected": rewards[2*i+1]}); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "pairwise accuracy %.1f%% on %d pairs\n", 100*acc, d.Rows/2)
	return nil
}
