package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"time"

	"github.com/strand-ml/strand/checkpoint"
	"github.com/strand-ml/strand/finetune"
	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/parallel/tensor"
)

// ppoFlags configure `strand ppo`: RLHF of a policy checkpoint against a
// reward model (strand rm train) on a file of prompts, in one process or
// over --nproc N processes (data- and tensor-parallel).
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
	if f.launch.PP > 1 {
		return usageError{"ppo: --pp > 1 is not supported (the models run whole on each rank: use --dp and --tp)"}
	}
	if _, err := f.lora(); err != nil || f.loraRank > 0 {
		return usageError{"ppo: --lora-rank is not supported yet"}
	}
	if _, _, err := checkpoint.Resolve(f.rm); err != nil { // before any worker starts
		return fmt.Errorf("--rm: %w", err)
	}
	return f.run(ctx, "ppo", args, func(ctx context.Context, d *distributed) error {
		return ppoLoop(ctx, &f, d, stdout, stderr)
	}, stdout, stderr)
}

// ppoLoop runs PPO on this process's part of the job: its data-parallel
// share of every step's prompts and its tensor-parallel shard of the four
// models (the whole job in one process).
func ppoLoop(ctx context.Context, f *ppoFlags, dist *distributed, stdout, stderr io.Writer) error {
	rank, m, _, comms, logf := runInfo(dist, stderr)
	lead := rank == 0
	if f.batch%m.DP != 0 {
		return usageError{fmt.Sprintf("ppo: --batch %d does not split over %d data-parallel ranks", f.batch, m.DP)}
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
		pc = finetune.PPOComms{DP: comms.DP, TP: comms.TP}
	}
	// Every model is whole on each rank but split over the TP group, with
	// rows for this rank's share of the step's prompts.
	layout := model.Stage(tensor.FromComm(pc.TP), []int{0, cfg.NLayer}, 0)
	gpt := func(dir string, c model.Config) (*model.GPT, error) {
		layout.EndBlock = c.NLayer
		g, err := model.NewSharded(c, layout, f.batch/m.DP, f.seq, gemm.New(f.threads))
		if err != nil {
			return nil, err
		}
		if dir == "" {
			g.Init(f.seed)
			return g, nil
		}
		return g, checkpoint.LoadModel(dir, g)
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
		g, err := gpt(rmDir, rmCfg)
		if err != nil {
			return err
		}
		if models[i], err = finetune.NewRewardModel(g, f.seed); err != nil {
			return err
		}
		if err := models[i].SetHead(st.RewardHead); err != nil {
			return err
		}
	}
	p, err := finetune.NewPPOParallel(policy, ref, models[0], models[1], enc.EOS, f.seq, finetune.PPOConfig{
		MaxNew: f.maxNew, Epochs: f.epochs, Clip: f.ratioClip, ValueClip: f.vclip, KLCoef: f.kl, Gamma: f.gamma, Lambda: f.lambda,
		Temperature: f.temp, LR: f.lr, GradClip: f.clip, Seed: f.seed}, pc)
	if err != nil {
		return err
	}
	logf("ppo: mesh %v | %d prompts, %d per step, up to %d new tokens, %d epochs, kl %g\n", m, len(prompts), f.batch, f.maxNew, f.epochs, f.kl)
	mw, err := f.openMetrics(lead)
	if err != nil {
		return err
	}
	defer mw.Close()
	// Every rank draws the same global batch; TrainStep takes this rank's share.
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
		if dist != nil {
			dist.job.report(p.Step, map[string]float64{"reward": s.Reward, "kl": s.KL})
		}
		if lead && (p.Step == 1 || p.Step%10 == 0 || p.Step == f.steps) {
			fmt.Fprintf(stdout, "step %d/%d reward %.3f kl %.3f policy loss %.4f value loss %.4f length %.1f\n",
				p.Step, f.steps, s.Reward, s.KL, s.PolicyLoss, s.ValueLoss, s.Length)
		}
	}
	dir, err := saveModel(ctx, f.out, p.Step, f.keep, policy, m, dist)
	if err != nil {
		return err
	}
	if lead {
		fmt.Fprintf(stdout, "done: %d steps in %s, policy checkpoint %s\n", f.steps, time.Since(start).Round(time.Millisecond), dir)
	}
	return nil
}

// saveModel writes m, this rank's part of a model of mesh msh with no
// pipeline split, as the weights-only checkpoint of step under
// run/checkpoints; every rank calls it. Without tensor parallelism rank 0
// writes model.safetensors; otherwise every dp=0 rank writes its shard into
// a shared temporary directory and rank 0 writes the index and seals the
// checkpoint once every rank has passed the barrier (the trainer's sharded
// format, loadable onto any layout).
func saveModel(ctx context.Context, run string, step, keep int, m *model.GPT, msh mesh.Mesh, dist *distributed) (string, error) {
	rank, coord := 0, mesh.Coord{}
	sync := func() error { return nil }
	if dist != nil {
		rank, coord = dist.job.rank, dist.comms.Coord
		sync = func() error { return dist.job.barrier(ctx) }
	}
	if msh.PP != 1 {
		return "", fmt.Errorf("checkpoint: %d pipeline stages: save a whole model per rank", msh.PP)
	}
	var path string
	var err error
	if msh.TP == 1 {
		if rank == 0 {
			if path, err = checkpoint.Save(run, step, m, nil, nil, keep); err != nil {
				return "", err
			}
		}
		return path, sync()
	}
	tmp := checkpoint.TempDir(run, step)
	if rank == 0 {
		os.RemoveAll(tmp)
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return "", fmt.Errorf("checkpoint: %w", err)
		}
	}
	if err := sync(); err != nil {
		return "", fmt.Errorf("checkpoint step %d: %w", step, err)
	}
	if coord.DP == 0 {
		if err := checkpoint.WriteShard(tmp, coord, m, nil, nil, 0); err != nil {
			return "", fmt.Errorf("checkpoint step %d: %w", step, err)
		}
	}
	if err := sync(); err != nil {
		return "", fmt.Errorf("checkpoint step %d: %w", step, err)
	}
	if rank == 0 {
		if err := checkpoint.WriteIndex(tmp, step, msh, m.Config); err != nil {
			return "", err
		}
		if path, err = checkpoint.Seal(run, tmp, step, keep); err != nil {
			return "", err
		}
	}
	return path, sync()
}
