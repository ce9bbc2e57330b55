package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/finetune"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/parallel/pipeline"
	"github.com/strand-ml/strand/parallel/tensor"
	"github.com/strand-ml/strand/tokenizer"
	"github.com/strand-ml/strand/trainer"
)

// ppoFlags configure `strand ppo`: RLHF of a policy checkpoint against a
// reward model (strand rm train) on a file of prompts, in one process or
// over --nproc N processes (data-, tensor- and pipeline-parallel).
type ppoFlags struct {
	ftFlags
	rm                  string
	maxNew, epochs      int
	ratioClip, vclip    float64
	kl                  float64
	gamma, lambda, temp float64
}

func runPPO(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f ppoFlags
	fs := newFlags("ppo", stderr)
	f.ftFlags.register(fs, "ppo", `{"prompt": ...} per line (other fields ignored)`, 1e-5)
	fs.StringVar(&f.rm, "rm", "", "reward-model checkpoint (strand rm train); it also initializes the value model")
	fs.IntVar(&f.maxNew, "max-new", 8, "tokens sampled per prompt (EOS ends a completion earlier)")
	fs.IntVar(&f.epochs, "ppo-epochs", 2, "PPO epochs over each batch of rollouts")
	fs.Float64Var(&f.ratioClip, "clip", 0.2, "policy ratio clip range")
	fs.Float64Var(&f.vclip, "value-clip", 0.2, "value clip range")
	fs.Float64Var(&f.kl, "kl-coef", 0.05, "per-token KL penalty to the reference policy")
	fs.Float64Var(&f.gamma, "gamma", 1, "discount")
	fs.Float64Var(&f.lambda, "lambda", 0.95, "GAE lambda")
	fs.Float64Var(&f.temp, "temperature", 1, "sampling temperature")
	ppoSchedule(fs, &f.ftFlags)
	f.shard.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := f.check("ppo"); err != nil {
		return err
	}
	if f.rm == "" {
		return usageError{"ppo: --rm REWARD_CHECKPOINT is required"}
	}
	// Every PPO pass runs its micro-batches by GPipe: a training pass's
	// losses need all its forwards before any backward.
	var schedErr error
	fs.Visit(func(fl *flag.Flag) {
		if fl.Name == "schedule" && !strings.EqualFold(f.schedule, pipeline.GPipe) {
			schedErr = usageError{fmt.Sprintf("--schedule %s: PPO runs each pass's micro-batches by %s (its losses need every forward before any backward)", f.schedule, pipeline.GPipe)}
		}
		if fl.Name == "virtual-stages" && f.virtual != 1 {
			schedErr = usageError{fmt.Sprintf("--virtual-stages %d: PPO runs %s, one model chunk per stage (virtual stages need --schedule %s, whose backwards interleave with the forwards)", f.virtual, pipeline.GPipe, pipeline.Interleaved)}
		}
	})
	if schedErr != nil {
		return schedErr
	}
	if _, err := f.lora(); err != nil {
		return err
	}
	if _, _, err := checkpoint.Resolve(f.rm); err != nil { // before any worker starts
		return fmt.Errorf("--rm: %w", err)
	}
	return f.launchOrRun(ctx, "ppo", args, func(ctx context.Context, d *distributed) error {
		return ppoLoop(ctx, &f, d, stdout, stderr)
	}, stdout, stderr)
}

// ppoLoop runs PPO on this process's part of the job on the run loop: its
// data-parallel share of every step's prompts and its tensor-parallel
// shard of its pipeline stage of the four models (the whole job in one
// process). Checkpoints hold everything a run needs (finetune.PPO.Save,
// plus the prompt sampler).
func ppoLoop(ctx context.Context, f *ppoFlags, dist *distributed, stdout, stderr io.Writer) error {
	rank, m, coord, comms, logf := runInfo(dist, stderr)
	if f.batch%m.DP != 0 {
		return usageError{fmt.Sprintf("ppo: --batch %d does not split over %d data-parallel ranks", f.batch, m.DP)}
	}
	if k := f.batch / m.DP; f.micro <= 0 || k%f.micro != 0 {
		return usageError{fmt.Sprintf("--microbatches %d does not divide the %d prompts per data-parallel rank (--batch %d over %d ranks)", f.micro, k, f.batch, m.DP)}
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	prompts, tok, err := f.prompts(logf)
	if err != nil {
		return err
	}
	p, err := f.newPPO(cfg, m, coord, comms, finetune.NewEncoder(tok).EOS, logf)
	if err != nil {
		return err
	}
	defer p.Close()
	p.CheckpointFiles = tokenizerFiles(tok) // every checkpoint carries its tokenizer
	logf("ppo: mesh %v | %d prompts, %d per step (%d micro-batches per rank), up to %d new tokens, %d epochs, kl %g\n", m, len(prompts), f.batch, f.micro, f.maxNew, f.epochs, f.kl)
	place := finetune.PPOPlace{Mesh: m}
	if dist != nil {
		place = finetune.PPOPlace{Rank: rank, Mesh: m, Coord: coord, Barrier: dist.job.barrier}
	}
	rc := f.run.config(dist, f.launch.LogFormat, stdout, stderr)
	if p.Policy.LoRA != nil {
		rc.Hooks.Saved = f.adapterSaved(p.Policy.LoRA.Config)
	}
	_, err = runLoop(ctx, finetune.NewPPORun(p, prompts, f.batch, f.seed, place), rc, dist)
	return err
}

// prompts reads and encodes the prompt file with the run's tokenizer,
// which it returns too.
func (f *ppoFlags) prompts(logf func(string, ...any)) ([][]int32, tokenizer.Tokenizer, error) {
	tok, err := loadTokenizer(f.tokenizerDir, f.ckpt)
	if err != nil {
		return nil, nil, err
	}
	recs, err := f.readRecords(finetune.Prompts, logf)
	if err != nil {
		return nil, nil, err
	}
	var prompts [][]int32
	for _, r := range recs {
		var p []int32
		for _, id := range tok.Encode([]byte(r.Prompt)) {
			p = append(p, int32(id))
		}
		if err := checkVocab(p, f.vocabSize); err != nil {
			return nil, nil, fmt.Errorf("line %d: %w", r.Line, err)
		}
		prompts = append(prompts, p)
	}
	return prompts, tok, nil
}

// newPPO builds this rank's stage of the four models (policy, reference,
// reward and value model, the last two from --rm) and PPO over them.
// Every rank holds its pipeline stage of every model (layers split evenly
// over --pp), split over the TP group, with rows for this rank's share of
// the step's prompts.
func (f *ppoFlags) newPPO(cfg model.Config, m mesh.Mesh, coord mesh.Coord, comms *trainer.Comms, eos int32, logf func(string, ...any)) (*finetune.PPO, error) {
	var tp *collective.Comm // a group of one without a job
	if comms != nil {
		tp = comms.TP
	}
	// load is finetune.LoadWeights (which merges a LoRA checkpoint's
	// adapters into their base).
	gpt := func(dir string, c model.Config, load func(string, *model.GPT) error) (*model.GPT, error) {
		bounds, err := model.StageBounds(c.NLayer, m.PP, nil)
		if err != nil {
			return nil, usageError{fmt.Sprintf("ppo: %v", err)}
		}
		g, err := model.NewSharded(c, model.Stage(tensor.FromComm(tp), bounds, coord.PP), f.batch/m.DP, f.seq, gemm.New(f.threads))
		if err != nil {
			return nil, err
		}
		if dir == "" {
			g.Init(f.seed)
			return g, nil
		}
		return g, load(dir, g)
	}
	policy, err := gpt(f.ckpt, cfg, finetune.LoadWeights)
	if err != nil {
		return nil, err
	}
	if err := f.policyLoRA(policy, logf); err != nil {
		return nil, err
	}
	ref, err := gpt(f.ckpt, cfg, finetune.LoadWeights)
	if err != nil {
		return nil, err
	}
	rmDir, rmCfg, head, err := rewardCheckpoint(f.rm)
	if err != nil {
		return nil, err
	}
	var models [2]*finetune.RewardModel
	for i := range models {
		g, err := gpt(rmDir, rmCfg, finetune.LoadWeights)
		if err != nil {
			return nil, err
		}
		if models[i], err = finetune.NewStageRewardModel(g, head); err != nil {
			return nil, err
		}
	}
	return finetune.NewPPOParallel(policy, ref, models[0], models[1], eos, f.seq, finetune.PPOConfig{
		MaxNew: f.maxNew, Epochs: f.epochs, Clip: f.ratioClip, ValueClip: f.vclip, KLCoef: f.kl, Gamma: f.gamma, Lambda: f.lambda,
		Temperature: f.temp, LR: f.lr, GradClip: f.clip, Seed: f.seed, Micro: f.micro,
		Zero: f.shard.stage(), ShardGroup: f.shard.shardGroup, KeepGathered: !f.shard.reshardAfterForward, ZeroMinUnit: f.shard.minUnit}, comms)
}

// policyLoRA makes adapters on the policy its trainable parameters (and
// all its checkpoints hold) under --lora-rank; the reference stays the
// frozen base.
func (f *ppoFlags) policyLoRA(policy *model.GPT, logf func(string, ...any)) error {
	lc, err := f.lora()
	if err != nil || lc == nil {
		return err
	}
	if err := policy.EnableLoRA(*lc, f.seed); err != nil {
		return err
	}
	logf("lora: rank %d, alpha %g on %v: %d trainable policy parameters on this rank (base frozen: %d)\n",
		lc.Rank, lc.Alpha, lc.Targets, policy.Params.Count(), policy.LoRA.Base.Count())
	return nil
}

// rewardCheckpoint resolves a reward-model checkpoint (strand rm train):
// its directory, configuration and scalar head.
func rewardCheckpoint(path string) (string, model.Config, finetune.RewardHead, error) {
	dir, _, err := checkpoint.Resolve(path)
	if err != nil {
		return "", model.Config{}, finetune.RewardHead{}, err
	}
	cfg, err := readConfig(dir)
	if err != nil {
		return "", cfg, finetune.RewardHead{}, err
	}
	var st rmState
	if err := checkpoint.LoadTrainerState(dir, &st); err != nil || len(st.RewardHead.Weight) == 0 {
		return "", cfg, finetune.RewardHead{}, fmt.Errorf("%s: not a reward-model checkpoint (train one with strand rm train)", dir)
	}
	return dir, cfg, st.RewardHead, nil
}
