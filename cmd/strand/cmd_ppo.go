package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/finetune"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/parallel/pipeline"
	"github.com/strand-ml/strand/parallel/tensor"
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
	f.ftFlags.registerTrainer(fs)
	fs.StringVar(&f.rm, "rm", "", "reward-model checkpoint (strand rm train); it also initializes the value model")
	fs.IntVar(&f.maxNew, "max-new", 8, "tokens sampled per prompt (EOS ends a completion earlier)")
	fs.IntVar(&f.epochs, "ppo-epochs", 2, "PPO epochs over each batch of rollouts")
	fs.Float64Var(&f.ratioClip, "clip", 0.2, "policy ratio clip range")
	fs.Float64Var(&f.vclip, "value-clip", 0.2, "value clip range")
	fs.Float64Var(&f.kl, "kl-coef", 0.05, "per-token KL penalty to the reference policy")
	fs.Float64Var(&f.gamma, "gamma", 1, "discount")
	fs.Float64Var(&f.lambda, "lambda", 0.95, "GAE lambda")
	fs.Float64Var(&f.temp, "temperature", 1, "sampling temperature")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := f.check("ppo"); err != nil {
		return err
	}
	if f.rm == "" {
		return usageError{"ppo: --rm REWARD_CHECKPOINT is required"}
	}
	if f.zero1 {
		return usageError{"ppo: --zero1 is not supported (each rank keeps all optimizer state)"}
	}
	// Every PPO pass runs its micro-batches by GPipe: a training pass's
	// losses need all its forwards before any backward.
	var schedErr error
	fs.Visit(func(fl *flag.Flag) {
		if fl.Name == "schedule" && !strings.EqualFold(f.schedule, pipeline.GPipe) {
			schedErr = usageError{fmt.Sprintf("--schedule %s: PPO runs each pass's micro-batches by %s (its losses need every forward before any backward)", f.schedule, pipeline.GPipe)}
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
	return f.run(ctx, "ppo", args, func(ctx context.Context, d *distributed) error {
		return ppoLoop(ctx, &f, d, stdout, stderr)
	}, stdout, stderr)
}

// ppoLoop runs PPO on this process's part of the job: its data-parallel
// share of every step's prompts and its tensor-parallel shard of its
// pipeline stage of the four models (the whole job in one process). It
// checkpoints everything a run needs (finetune.PPO.Save, plus the prompt
// sampler) every --ckpt-every steps and at the end, and continues from the
// newest checkpoint under --resume.
func ppoLoop(ctx context.Context, f *ppoFlags, dist *distributed, stdout, stderr io.Writer) error {
	rank, m, coord, comms, logf := runInfo(dist, stderr)
	lead := rank == 0
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
	tok, err := loadTokenizer(f.tokenizerDir)
	if err != nil {
		return err
	}
	recs, err := f.readRecords(finetune.Prompts, logf)
	if err != nil {
		return err
	}
	enc := finetune.NewEncoder(tok)
	var prompts [][]int32
	for _, r := range recs {
		var p []int32
		for _, id := range tok.Encode([]byte(r.Prompt)) {
			p = append(p, int32(id))
		}
		if err := checkVocab(p, f.vocabSize); err != nil {
			return fmt.Errorf("line %d: %w", r.Line, err)
		}
		prompts = append(prompts, p)
	}
	var pc finetune.PPOComms
	if comms != nil {
		pc = finetune.PPOComms{DP: comms.DP, TP: comms.TP, PP: comms.PP, Embed: comms.Embed}
	}
	// Every rank holds this rank's pipeline stage of every model (its
	// layers split evenly over --pp), split over the TP group, with rows
	// for this rank's share of the step's prompts.
	// load is checkpoint.LoadModel, or loadRewardWeights for the reward
	// model (which merges a LoRA reward model's adapters into its base).
	gpt := func(dir string, c model.Config, load func(string, *model.GPT) error) (*model.GPT, error) {
		bounds, err := model.StageBounds(c.NLayer, m.PP, nil)
		if err != nil {
			return nil, usageError{fmt.Sprintf("ppo: %v", err)}
		}
		layout := model.Stage(tensor.FromComm(pc.TP), bounds, coord.PP)
		g, err := model.NewSharded(c, layout, f.batch/m.DP, f.seq, gemm.New(f.threads))
		if err != nil {
			return nil, err
		}
		if dir == "" {
			g.Init(f.seed)
			return g, nil
		}
		return g, load(dir, g)
	}
	policy, err := gpt(f.ckpt, cfg, checkpoint.LoadModel)
	if err != nil {
		return err
	}
	// LoRA: adapters on the policy become its trainable parameters (and
	// all its checkpoints hold); the reference is the frozen base.
	lc, err := f.lora()
	if err != nil {
		return err
	}
	if lc != nil {
		if err := policy.EnableLoRA(*lc, f.seed); err != nil {
			return err
		}
		logf("lora: rank %d, alpha %g on %v: %d trainable policy parameters on this rank (base frozen: %d)\n",
			lc.Rank, lc.Alpha, lc.Targets, policy.Params.Count(), policy.LoRA.Base.Count())
		if lead {
			base := f.ckpt
			if base != "" {
				if base, err = filepath.Abs(base); err != nil {
					return err
				}
			}
			if err := os.MkdirAll(f.out, 0o755); err != nil {
				return err
			}
			if err := writeAdapterConfig(f.out, adapterConfig{LoRAConfig: *lc, Base: base}); err != nil {
				return err
			}
		}
	}
	ref, err := gpt(f.ckpt, cfg, checkpoint.LoadModel)
	if err != nil {
		return err
	}
	rmDir, _, err := checkpoint.Resolve(f.rm)
	if err != nil {
		return err
	}
	rmCfg, err := checkpoint.ReadConfig(rmDir)
	if err != nil {
		return err
	}
	var st rmState
	if err := checkpoint.LoadTrainerState(rmDir, &st); err != nil || len(st.RewardHead.Weight) == 0 {
		return fmt.Errorf("%s: not a reward-model checkpoint (train one with strand rm train)", rmDir)
	}
	var models [2]*finetune.RewardModel
	for i := range models {
		g, err := gpt(rmDir, rmCfg, loadRewardWeights)
		if err != nil {
			return err
		}
		if models[i], err = finetune.NewStageRewardModel(g, st.RewardHead); err != nil {
			return err
		}
	}
	p, err := finetune.NewPPOParallel(policy, ref, models[0], models[1], enc.EOS, f.seq, finetune.PPOConfig{
		MaxNew: f.maxNew, Epochs: f.epochs, Clip: f.ratioClip, ValueClip: f.vclip, KLCoef: f.kl, Gamma: f.gamma, Lambda: f.lambda,
		Temperature: f.temp, LR: f.lr, GradClip: f.clip, Seed: f.seed, Micro: f.micro}, pc)
	if err != nil {
		return err
	}
	logf("ppo: mesh %v | %d prompts, %d per step (%d micro-batches per rank), up to %d new tokens, %d epochs, kl %g\n", m, len(prompts), f.batch, f.micro, f.maxNew, f.epochs, f.kl)
	mw, err := f.openMetrics(lead)
	if err != nil {
		return err
	}
	defer mw.Close()
	// Every rank draws the same global batch; TrainStep takes this rank's
	// share. The sampler's state is saved with every checkpoint.
	pcg := rand.NewPCG(f.seed, 2)
	rng := rand.New(pcg)
	if f.resume {
		dir, err := resumeCheckpoint(f.out, logf)
		if err != nil {
			return err
		}
		if dir != "" {
			st, err := p.Restore(dir)
			if err != nil {
				return err
			}
			var rs ppoRunState
			if err := json.Unmarshal(st.Run, &rs); err != nil {
				return fmt.Errorf("checkpoint %s: prompt sampler: %w", dir, err)
			}
			if err := pcg.UnmarshalBinary(rs.PromptRNG); err != nil {
				return fmt.Errorf("checkpoint %s: prompt sampler: %w", dir, err)
			}
			logf("resumed from %s (step %d, written under %s)\n", dir, st.Step, st.Layout)
			if err := f.logResume(mw, st.Step, m); err != nil {
				return err
			}
		}
	}
	var place finetune.PPOPlace
	place.Mesh = m
	if dist != nil {
		place = finetune.PPOPlace{Rank: dist.job.rank, Mesh: m, Coord: dist.comms.Coord, Barrier: dist.job.barrier}
	}
	batch := make([][]int32, f.batch)
	start := time.Now()
	last, dir := f.lastStep(), ""
	for p.Step < last {
		for i := range batch {
			batch[i] = prompts[rng.IntN(len(prompts))]
		}
		s, err := p.TrainStep(ctx, batch)
		if err != nil {
			return fmt.Errorf("step %d: %w", p.Step+1, err)
		}
		if err := mw.Write(map[string]any{"step": p.Step, "reward": s.Reward, "kl": s.KL, "policy_loss": s.PolicyLoss,
			"value_loss": s.ValueLoss, "clip_frac": s.ClipFrac, "length": s.Length}); err != nil {
			return err
		}
		if dist != nil {
			dist.job.report(p.Step, map[string]float64{"reward": s.Reward, "kl": s.KL})
		}
		if lead && (p.Step == 1 || p.Step%10 == 0 || p.Step == last) {
			fmt.Fprintf(stdout, "step %d/%d reward %.3f kl %.3f policy loss %.4f value loss %.4f length %.1f\n",
				p.Step, f.steps, s.Reward, s.KL, s.PolicyLoss, s.ValueLoss, s.Length)
		}
		if f.saveDue(p.Step) {
			state, err := pcg.MarshalBinary()
			if err != nil {
				return err
			}
			if dir, err = p.Save(ctx, f.out, f.keep, place, ppoRunState{PromptRNG: state}); err != nil {
				return err
			}
		}
	}
	if lead {
		fmt.Fprintf(stdout, "done: step %d of %d in %s, checkpoint %s\n", p.Step, f.steps, time.Since(start).Round(time.Millisecond), dir)
	}
	return nil
}

// ppoRunState is what strand ppo keeps in a checkpoint beyond PPO's own
// state: the position of the sampler drawing each step's prompts.
type ppoRunState struct {
	PromptRNG []byte `json:"prompt_rng"` // rand.PCG's binary state
}
