package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/finetune"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
)

// rmState is a reward-model checkpoint's trainer_state.json: the scalar
// head lives there, next to the transformer's model.safetensors.
type rmState struct {
	Step       int                 `json:"step"`
	Seed       uint64              `json:"seed"`
	RewardHead finetune.RewardHead `json:"reward_head"`
}

// runRMTrain trains a reward model on {"prompt","chosen","rejected"} pairs,
// in one process or data-parallel over --nproc N, and reports pairwise
// accuracy on the held-out tail.
func runRMTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f ftFlags
	fs := newFlags("rm train", stderr)
	f.register(fs, "rm", `{"prompt","chosen","rejected"} per line`, 1e-3)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if f.loraRank > 0 {
		return usageError{"rm train: --lora-rank is not supported yet"}
	}
	if f.launch.TP > 1 || f.launch.PP > 1 {
		return usageError{"rm train splits the data only (--nproc N with data parallelism); --tp/--pp are not supported yet"}
	}
	return f.run(ctx, "rm train", args, func(ctx context.Context, d *distributed) error {
		return rmTrainLoop(ctx, &f, d, stdout, stderr)
	}, stdout, stderr)
}

// rmTrainLoop trains the reward model on this process's share of every
// step (the whole step in one process).
func rmTrainLoop(ctx context.Context, f *ftFlags, dist *distributed, stdout, stderr io.Writer) error {
	rank, m, _, comms, logf := runInfo(dist, stderr)
	lead := rank == 0
	opts, err := f.options(m)
	if err != nil {
		return err
	}
	tok, err := loadTokenizer(f.tokenizerDir)
	if err != nil {
		return err
	}
	recs, err := f.readRecords(finetune.Pair, logf)
	if err != nil {
		return err
	}
	all, err := finetune.EncodeRewardPairs(finetune.NewEncoder(tok), recs, f.seq)
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

	rm, err := f.rewardModel(opts.Model, f.batch/m.DP)
	if err != nil {
		return err
	}
	adam := optim.DefaultAdamW()
	adam.WeightDecay = f.wd
	rt, err := finetune.NewRewardTrainer(rm, adam, optim.Schedule{Peak: f.lr, Warmup: f.warmup, Total: f.steps, MinFrac: f.minLRFrac}, f.clip)
	if err != nil {
		return err
	}
	if comms != nil {
		rt.DP = comms.DP
	}
	mw, err := f.openMetrics(lead)
	if err != nil {
		return err
	}
	defer mw.Close()
	// Each step takes --batch pairs from an endless stream of (shuffled)
	// epochs over the training pairs.
	order, pos := []int{}, 0
	rng := rand.New(rand.NewPCG(f.seed, 1))
	pairs := make([]int, f.batch)
	start := time.Now()
	var loss, acc float64
	for rt.Step < f.steps {
		for i := range pairs {
			if pos == len(order) {
				order, pos = rng.Perm(train.Rows/2), 0
				if !f.shuffle {
					for j := range order {
						order[j] = j
					}
				}
			}
			pairs[i] = order[pos]
			pos++
		}
		if loss, acc, err = rt.TrainStep(ctx, train, pairs); err != nil {
			return fmt.Errorf("step %d: %w", rt.Step+1, err)
		}
		if err := mw.Write(map[string]any{"step": rt.Step, "loss": loss, "accuracy": acc, "lr": rt.Sched.At(rt.Step - 1)}); err != nil {
			return err
		}
		if dist != nil {
			dist.job.report(rt.Step, map[string]float64{"loss": loss})
		}
		if lead && (rt.Step == 1 || rt.Step%10 == 0 || rt.Step == f.steps) {
			fmt.Fprintf(stdout, "step %d/%d loss %.4f batch accuracy %.2f\n", rt.Step, f.steps, loss, acc)
		}
	}
	if !lead {
		return nil // data-parallel replicas are equal: rank 0 writes
	}
	dir, err := checkpoint.Save(f.out, rt.Step, rm.GPT, nil, rmState{Step: rt.Step, Seed: f.seed, RewardHead: rm.Head}, f.keep)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "done: %d steps in %s, final loss %.4f, checkpoint %s\n", f.steps, time.Since(start).Round(time.Millisecond), loss, dir)
	if held.Rows > 0 {
		hacc, _, err := rm.PairAccuracy(ctx, held)
		if err != nil {
			return err
		}
		if err := mw.Write(map[string]any{"step": rt.Step, "held_accuracy": hacc, "held_out": held.Rows / 2}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "held-out pairwise accuracy %.1f%% on %d pairs\n", 100*hacc, held.Rows/2)
	}
	return nil
}

// rewardModel builds the transformer from --ckpt (or a fresh --model) with
// a fresh head, for batches of up to pairs pairs.
func (f *ftFlags) rewardModel(cfg model.Config, pairs int) (*finetune.RewardModel, error) {
	m, err := model.New(cfg, 2*max(1, pairs), f.seq, gemm.New(f.threads))
	if err != nil {
		return nil, err
	}
	if f.ckpt != "" {
		if err := checkpoint.LoadModel(f.ckpt, m); err != nil {
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
	f := ftFlags{ckpt: *ckpt, dataPath: *dataPath, onBad: *onBad, seq: *seq, threads: *threads, steps: 1}
	if err := f.check("rm score"); err != nil {
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
	tok, err := loadTokenizer(*tokDir)
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
