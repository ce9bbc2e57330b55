package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/finetune"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
)

// ppoFlags configure `strand ppo`: RLHF of a policy checkpoint against a
// reward model (strand rm train) on a file of prompts, in one process.
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
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := f.check("ppo"); err != nil {
		return err
	}
	if f.rm == "" {
		return usageError{"ppo: --rm REWARD_CHECKPOINT is required"}
	}
	if f.launch.Launching() && f.launch.World() > 1 {
		return usageError{"ppo runs in one process (--nproc > 1 is not supported yet)"}
	}
	if _, err := f.lora(); err != nil || f.loraRank > 0 {
		return usageError{"ppo: --lora-rank is not supported yet"}
	}
	cfg, err := f.config()
	if err != nil {
		return err
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, format, a...) }
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
	gpt := func(dir string, c model.Config) (*model.GPT, error) {
		m, err := model.New(c, f.batch, f.seq, gemm.New(f.threads))
		if err != nil {
			return nil, err
		}
		if dir == "" {
			m.Init(f.seed)
			return m, nil
		}
		return m, checkpoint.LoadModel(dir, m)
	}
	policy, err := gpt(f.ckpt, cfg)
	if err != nil {
		return err
	}
	ref, err := gpt(f.ckpt, cfg)
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
		m, err := gpt(rmDir, rmCfg)
		if err != nil {
			return err
		}
		if models[i], err = finetune.NewRewardModel(m, f.seed); err != nil {
			return err
		}
		if err := models[i].SetHead(st.RewardHead); err != nil {
			return err
		}
	}
	p, err := finetune.NewPPO(policy, ref, models[0], models[1], enc.EOS, f.seq, finetune.PPOConfig{
		MaxNew: f.maxNew, Epochs: f.epochs, Clip: f.ratioClip, ValueClip: f.vclip, KLCoef: f.kl, Gamma: f.gamma, Lambda: f.lambda,
		Temperature: f.temp, LR: f.lr, GradClip: f.clip, Seed: f.seed})
	if err != nil {
		return err
	}
	logf("ppo: %d prompts, %d per step, up to %d new tokens, %d epochs, kl %g\n", len(prompts), f.batch, f.maxNew, f.epochs, f.kl)
	mw, err := f.openMetrics(true)
	if err != nil {
		return err
	}
	defer mw.Close()
	rng := rand.New(rand.NewPCG(f.seed, 2))
	batch := make([][]int32, f.batch)
	start := time.Now()
	for p.Step < f.steps {
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
		if p.Step == 1 || p.Step%10 == 0 || p.Step == f.steps {
			fmt.Fprintf(stdout, "step %d/%d reward %.3f kl %.3f policy loss %.4f value loss %.4f length %.1f\n",
				p.Step, f.steps, s.Reward, s.KL, s.PolicyLoss, s.ValueLoss, s.Length)
		}
	}
	dir, err := checkpoint.Save(f.out, p.Step, policy, nil, nil, f.keep)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "done: %d steps in %s, policy checkpoint %s\n", f.steps, time.Since(start).Round(time.Millisecond), dir)
	return nil
}
