package finetune

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
	"github.com/strand-ml/strand/parallel/pipeline"
	"github.com/strand-ml/strand/trainer"
)

// PPOConfig configures RLHF with PPO.
type PPOConfig struct {
	MaxNew      int     // tokens sampled per prompt (EOS ends a completion earlier)
	Epochs      int     // PPO epochs over each batch of rollouts
	Clip        float64 // policy ratio clip range (0.2)
	ValueClip   float64 // value clip range (0.2)
	KLCoef      float64 // per-token KL penalty to the reference policy (0.05)
	Gamma       float64 // discount (1)
	Lambda      float64 // GAE lambda (0.95)
	Temperature float64 // sampling temperature (1)
	LR          float64 // AdamW learning rate of policy and value model
	GradClip    float64 // max gradient norm per model (1)
	Seed        uint64  // sampling seed
	// Micro splits every pass over a rank's rows into this many
	// micro-batches of consecutive rows, pipelined over the stages by
	// GPipe's program (0 or 1: one micro-batch). It must divide the rows
	// per rank; gradients accumulate over the micro-batches.
	Micro int `json:",omitempty"`
	// Zero, ShardGroup and KeepGathered shard the policy's and the value
	// model's training state as trainer.Options says (ZeRO 1-3); the
	// frozen reference and reward model stay replicated.
	Zero         int  `json:",omitempty"`
	ShardGroup   int  `json:",omitempty"`
	KeepGathered bool `json:",omitempty"`
	ZeroMinUnit  int  `json:",omitempty"`
}

// PPO is RLHF: a policy sampled on prompts, a frozen reference policy (KL
// penalty), a frozen reward model scoring each completion at its closing
// EOS, and a value model (a RewardModel read at every position) trained
// alongside the policy.
//
// Each model runs on a trainer.Trainer over one communicator set: the
// rollout, log-prob, value and score passes are the trainers' Forward
// passes, and the PPO epochs are ordinary training steps of the policy
// (the clipped surrogate as a trainer.Objective on the per-token losses)
// and of the value model (the clipped value loss as a
// trainer.HeadObjective), so gradient reduction, the global norm and
// clipping, the optimizer and the pipeline executor are the trainer's.
//
// It runs in one process (NewPPO) or on any DP x TP x PP mesh
// (NewPPOParallel): every data-parallel rank samples and scores its share
// of each step's prompts, advantages are whitened with the global mean and
// spread, and gradients are summed over the data-parallel group, so every
// rank takes the same step. Completion i of a step is sampled from a
// generator seeded by (Seed, step, i) with i the prompt's index in the
// global batch, so the run does not depend on the layout beyond float
// rounding.
type PPO struct {
	Cfg    PPOConfig
	Policy *model.GPT
	Ref    *model.GPT
	Reward *RewardModel
	Value  *RewardModel
	EOS    int32
	Step   int
	Comms  trainer.Comms
	// CheckpointFiles, when set, writes more files into each checkpoint
	// directory before it is sealed (the run's tokenizer); rank 0 calls it.
	CheckpointFiles func(dir string) error

	T                          int // row length: prompt + completion
	policy, ref, reward, value *trainer.Trainer
	surrogate                  *ppoSurrogate
	valueLoss                  *ppoValueLoss
	src                        *rolloutSource
	optP, optV, optH           *optim.AdamW // the policy's, the value model's and the value head's
}

// PPOStats summarize one PPO step.
type PPOStats struct {
	Reward     float64 `json:"reward"`      // mean reward-model score of the sampled completions
	KL         float64 `json:"kl"`          // mean per-sequence sum of log pi - log ref over sampled tokens
	PolicyLoss float64 `json:"policy_loss"` // last epoch's
	ValueLoss  float64 `json:"value_loss"`
	ClipFrac   float64 `json:"clip_frac"`
	Tokens     int     `json:"tokens"` // sampled tokens
	Length     float64 `json:"length"` // mean completion length
}

// NewPPO checks the models (whole, one process, rows of T positions, one
// row per prompt of a step) and prepares their trainers.
func NewPPO(policy, ref *model.GPT, reward, value *RewardModel, eos int32, T int, cfg PPOConfig) (*PPO, error) {
	return NewPPOParallel(policy, ref, reward, value, eos, T, cfg, nil)
}

// NewPPOParallel is NewPPO over a job's communicators (nil: one process):
// the models hold this rank's tensor-parallel shard of its pipeline stage
// (reward and value model from NewStageRewardModel when split) with one
// row per prompt of this rank's data-parallel share of a step. Every rank
// of the job calls TrainStep with the same global batch.
func NewPPOParallel(policy, ref *model.GPT, reward, value *RewardModel, eos int32, T int, cfg PPOConfig, comms *trainer.Comms) (*PPO, error) {
	if reward == nil || value == nil || policy == nil || ref == nil {
		return nil, fmt.Errorf("ppo: policy, reference, reward and value model are all required")
	}
	c := trainer.Comms{Mesh: mesh.Mesh{DP: 1, TP: 1, PP: 1}}
	if comms != nil {
		c = *comms
	}
	rows := policy.MaxB
	for _, m := range []*model.GPT{ref, reward.GPT, value.GPT} {
		if m.MaxB != rows {
			return nil, fmt.Errorf("ppo: models must hold %d rows of %d positions", rows, T)
		}
	}
	switch {
	case cfg.MaxNew <= 0 || cfg.MaxNew >= T:
		return nil, fmt.Errorf("ppo: %d new tokens must be in 1..%d", cfg.MaxNew, T-1)
	case cfg.Epochs <= 0:
		return nil, fmt.Errorf("ppo: %d epochs must be positive", cfg.Epochs)
	case !(cfg.Temperature > 0) || !(cfg.LR > 0):
		return nil, fmt.Errorf("ppo: temperature %g and learning rate %g must be positive", cfg.Temperature, cfg.LR)
	case cfg.Micro < 0 || cfg.Micro > 0 && rows%cfg.Micro != 0:
		return nil, fmt.Errorf("ppo: %d micro-batches do not divide the models' %d rows per rank", cfg.Micro, rows)
	}
	adam := optim.DefaultAdamW()
	adam.WeightDecay = 0
	// A constant learning rate (no schedule: Steps 0), the models' own
	// clipping; the passes run GPipe's program, whose forward half is
	// each Forward pass.
	opts := trainer.Options{Batch: rows * c.Mesh.DP, Seq: T, Micro: max(cfg.Micro, 1), Schedule: pipeline.GPipe,
		LR: cfg.LR, GradClip: cfg.GradClip, AdamW: adam, Zero: cfg.Zero, ShardGroup: cfg.ShardGroup, KeepGathered: cfg.KeepGathered, ZeroMinUnit: cfg.ZeroMinUnit}
	frozen := opts
	frozen.Frozen, frozen.Zero, frozen.ShardGroup, frozen.KeepGathered, frozen.ZeroMinUnit = true, 0, 0, false, 0
	p := &PPO{Cfg: cfg, Policy: policy, Ref: ref, Reward: reward, Value: value, EOS: eos, T: T, Comms: c}
	var err error
	for _, b := range []struct {
		tr   **trainer.Trainer
		m    *model.GPT
		opts trainer.Options
	}{{&p.policy, policy, opts}, {&p.ref, ref, frozen}, {&p.reward, reward.GPT, frozen}, {&p.value, value.GPT, opts}} {
		if *b.tr, err = trainer.NewOn(b.m, b.opts, &c); err != nil {
			return nil, fmt.Errorf("ppo: %w", err)
		}
	}
	p.reward.SetHiddenOnly()
	p.src = &rolloutSource{}
	p.surrogate = &ppoSurrogate{p: p}
	p.policy.Source, p.policy.Objective = p.src, p.surrogate
	p.valueLoss = newPPOValueLoss(p)
	p.value.Source = p.src
	if err := p.value.SetHead(p.valueLoss); err != nil {
		return nil, fmt.Errorf("ppo: %w", err)
	}
	p.optP, p.optV, p.optH = p.policy.Opt, p.value.Opt, p.value.HeadAdamW()
	return p, nil
}

// Close stops the trainers' background senders.
func (p *PPO) Close() {
	for _, t := range []*trainer.Trainer{p.policy, p.ref, p.reward, p.value} {
		t.Close()
	}
}

// rollout is one batch of sampled completions.
type rollout struct {
	B          int
	rows       []int32 // (B, T) prompt + completion, EOS padded
	targets    []int32 // (B, T) the completion's tokens at the positions predicting them
	start, end []int   // completion tokens are rows[start:end] of each row
}

// tokens returns the flat per-token values of per-position x (B*T) in
// rollout order (row by row, completion tokens in order).
func (r *rollout) tokens(x []float32, T int) []float64 {
	var out []float64
	for b := 0; b < r.B; b++ {
		for i := r.start[b]; i < r.end[b]; i++ {
			out = append(out, float64(x[b*T+i-1]))
		}
	}
	return out
}

// promptRNG is the sampler of the step's prompt with global index i: the
// same stream whichever rank samples it.
func (p *PPO) promptRNG(i int) *rand.Rand {
	return rand.New(rand.NewPCG(p.Cfg.Seed^0x990, uint64(p.Step)<<32|uint64(i)))
}

// sample draws completions with the policy for prompts, this rank's share
// of the step's batch starting at global index first.
func (p *PPO) sample(ctx context.Context, prompts [][]int32, first int) (*rollout, error) {
	T, V := p.T, p.Policy.Config.VocabSize
	B := len(prompts)
	r := &rollout{B: B, rows: make([]int32, B*T), targets: make([]int32, B*T), start: make([]int, B), end: make([]int, B)}
	for i := range r.rows {
		r.rows[i], r.targets[i] = p.EOS, ignoreIndex
	}
	done := make([]bool, B)
	rngs := make([]*rand.Rand, B)
	for b, pr := range prompts {
		if len(pr) == 0 {
			return nil, fmt.Errorf("ppo: prompt %d is empty", first+b)
		}
		if len(pr) > T-p.Cfg.MaxNew {
			pr = pr[len(pr)-(T-p.Cfg.MaxNew):] // keep the prompt's end
		}
		copy(r.rows[b*T:], pr)
		r.start[b], r.end[b] = len(pr), len(pr)
		rngs[b] = p.promptRNG(first + b)
	}
	probs := make([]float64, V)
	last := p.Policy.Layout.Last
	g := newLogitGather(p.Comms.TP, B, V)
	// the tokens drawn (as float32: exact for any vocabulary below 2^24),
	// sampled on the last stage and broadcast to the others
	drawn := make([]float32, B)
	// Each step forwards only the positions up to the longest unfinished
	// row (Tc), not all T: attention is causal, so a row's next-token
	// logits do not depend on the positions after it. Every stage derives
	// Tc from the same r.end (the drawn tokens are broadcast).
	compact := make([]int32, B*T)
	at := make([]int, B)
	for s := 0; s < p.Cfg.MaxNew && slices.Contains(done, false); s++ {
		Tc := 0
		for b := range B {
			if !done[b] {
				Tc = max(Tc, r.end[b])
			}
		}
		for b := range B {
			copy(compact[b*Tc:(b+1)*Tc], r.rows[b*T:b*T+Tc])
			// a finished row may be longer than Tc: its logits are not used
			at[b] = b*Tc + min(r.end[b], Tc) - 1
		}
		err := p.policy.Forward(ctx, trainer.Pass{Rows: compact[:B*Tc], T: Tc, Last: func(_ context.Context, j int, a *model.Acts) error {
			g.collect(a, at, j*p.policy.MicroRows()*Tc)
			return nil
		}})
		if err != nil {
			return nil, fmt.Errorf("ppo sampling: %w", err)
		}
		if last {
			if err := p.draw(ctx, g, r, done, rngs, probs, drawn); err != nil {
				return nil, fmt.Errorf("ppo sampling: %w", err)
			}
		}
		if err := broadcastLast(ctx, p.Comms.PP, drawn); err != nil {
			return nil, fmt.Errorf("ppo sampling: tokens to the pipeline stages: %w", err)
		}
		for b := 0; b < B; b++ {
			if done[b] {
				continue
			}
			tok := int32(drawn[b])
			r.rows[b*T+r.end[b]] = tok
			r.targets[b*T+r.end[b]-1] = tok
			r.end[b]++
			if tok == p.EOS || r.end[b] == T {
				done[b] = true
			}
		}
	}
	return r, nil
}

// draw samples the next token of every unfinished row from the gathered
// logits of the last forward into drawn.
func (p *PPO) draw(ctx context.Context, g *logitGather, r *rollout, done []bool, rngs []*rand.Rand, probs []float64, drawn []float32) error {
	V := p.Policy.Config.VocabSize
	logits, err := g.gather(ctx)
	if err != nil {
		return err
	}
	for b := 0; b < r.B; b++ {
		if done[b] {
			continue
		}
		row := logits[b*V:][:V]
		mx := math.Inf(-1)
		for _, v := range row {
			mx = math.Max(mx, float64(v))
		}
		var z float64
		for i, v := range row {
			probs[i] = math.Exp((float64(v) - mx) / p.Cfg.Temperature)
			z += probs[i]
		}
		u, tok := rngs[b].Float64()*z, V-1
		for i, q := range probs {
			if u -= q; u <= 0 {
				tok = i
				break
			}
		}
		drawn[b] = float32(tok)
	}
	return nil
}

// logitGather assembles full-vocabulary logit rows from the
// tensor-parallel ranks' vocabulary shards (rank i holds ids
// [i*V/n, (i+1)*V/n)); with one rank it only copies.
type logitGather struct {
	tp   *collective.Comm
	n, V int
	buf  []float32 // (n, B, V/n): rank i's shard of every row
	out  []float32 // (B, V)
}

func newLogitGather(tp *collective.Comm, B, V int) *logitGather {
	return &logitGather{tp: tp, n: tp.Size(), V: V, buf: make([]float32, B*V), out: make([]float32, B*V)}
}

// collect copies, from a micro-batch's activations a whose first flat
// position is base, this rank's logit shard of every row b whose
// position at[b] lies in it.
func (g *logitGather) collect(a *model.Acts, at []int, base int) {
	Vl, B := g.V/g.n, len(at)
	mine := g.buf[g.tp.Rank()*B*Vl:][:B*Vl]
	logits := a.Logits()
	for b, n := range at {
		if k := n - base; k >= 0 && (k+1)*Vl <= len(logits) {
			copy(mine[b*Vl:(b+1)*Vl], logits[k*Vl:(k+1)*Vl])
		}
	}
}

// gather returns the full logits (B, V) of the collected rows.
func (g *logitGather) gather(ctx context.Context) ([]float32, error) {
	B := len(g.out) / g.V
	Vl := g.V / g.n
	if err := g.tp.AllGather(ctx, collective.F32(g.buf[:g.n*B*Vl])); err != nil {
		return nil, fmt.Errorf("gather logits over %d tensor-parallel ranks: %w", g.n, err)
	}
	for r := 0; r < g.n; r++ {
		for b := 0; b < B; b++ {
			copy(g.out[b*g.V+r*Vl:][:Vl], g.buf[(r*B+b)*Vl:][:Vl])
		}
	}
	return g.out, nil
}

// tokenLogProbs runs tr's model on the rollout with its completion
// targets and returns the per-token log-probs (nil off the last stage).
func (p *PPO) tokenLogProbs(ctx context.Context, tr *trainer.Trainer, r *rollout) ([]float64, error) {
	T := p.T
	losses := make([]float32, r.B*T)
	per := tr.MicroRows() * T
	err := tr.Forward(ctx, trainer.Pass{Rows: r.rows, Targets: r.targets, T: T, Last: func(_ context.Context, j int, a *model.Acts) error {
		copy(losses[j*per:(j+1)*per], a.Losses())
		return nil
	}})
	if err != nil || !tr.Model.Layout.Last {
		return nil, err
	}
	lp := r.tokens(losses, T)
	for i := range lp {
		lp[i] = -lp[i]
	}
	return lp, nil
}

// values runs the value model and returns the value of the state before
// each completion token (nil off the last pipeline stage).
func (p *PPO) values(ctx context.Context, r *rollout) ([]float64, error) {
	var at []int
	for b := 0; b < r.B; b++ {
		for i := r.start[b]; i < r.end[b]; i++ {
			at = append(at, b*p.T+i-1)
		}
	}
	return p.headAt(ctx, p.value, p.Value.Head, r, at)
}

// scores are the reward model's scores of the completions, read at each
// row's closing EOS (the last token when the completion was cut); nil off
// the last pipeline stage.
func (p *PPO) scores(ctx context.Context, r *rollout) ([]float64, error) {
	at := make([]int, r.B)
	for b := range at {
		at[b] = b*p.T + r.end[b] - 1
	}
	return p.headAt(ctx, p.reward, p.Reward.Head, r, at)
}

// headAt runs tr's model on the rollout and reads the scalar head h at the
// given increasing flat positions (row*T + position), as
// RewardModel.Rewards does.
func (p *PPO) headAt(ctx context.Context, tr *trainer.Trainer, h RewardHead, r *rollout, at []int) ([]float64, error) {
	C, per := tr.Model.Config.NEmbd, tr.MicroRows()*p.T
	out := make([]float64, len(at))
	k := 0
	err := tr.Forward(ctx, trainer.Pass{Rows: r.rows, T: p.T, Last: func(_ context.Context, j int, a *model.Acts) error {
		hid := a.Hidden()
		for ; k < len(at) && at[k] < (j+1)*per; k++ {
			out[k] = h.score(hid[(at[k]-j*per)*C:][:C])
		}
		return nil
	}})
	if err != nil || !tr.Model.Layout.Last {
		return nil, err
	}
	return out, nil
}

// score is the head's value on one final hidden state (float64 sums).
func (h RewardHead) score(hid []float32) float64 {
	s := float64(h.Bias)
	for i, w := range h.Weight {
		s += float64(w) * float64(hid[i])
	}
	return s
}

// TrainStep samples completions for the prompts, scores them, and runs
// Epochs of PPO on policy and value model. prompts is the step's global
// batch: with a data-parallel group of n ranks, rank r takes prompts
// [r*len/n, (r+1)*len/n) (one per model row), and the returned statistics
// are the global ones (identical on every rank).
func (p *PPO) TrainStep(ctx context.Context, prompts [][]int32) (PPOStats, error) {
	var st PPOStats
	dp := p.Comms.DP
	nDP := dp.Size()
	if len(prompts)%nDP != 0 || len(prompts)/nDP != p.Policy.MaxB {
		return st, fmt.Errorf("ppo: %d prompts per step over %d data-parallel ranks, the models hold %d per rank", len(prompts), nDP, p.Policy.MaxB)
	}
	k := len(prompts) / nDP
	first := dp.Rank() * k
	r, err := p.sample(ctx, prompts[first:first+k], first)
	if err != nil {
		return st, err
	}
	oldLP, err := p.tokenLogProbs(ctx, p.policy, r)
	if err != nil {
		return st, err
	}
	refLP, err := p.tokenLogProbs(ctx, p.ref, r)
	if err != nil {
		return st, err
	}
	oldV, err := p.values(ctx, r)
	if err != nil {
		return st, err
	}
	score, err := p.scores(ctx, r)
	if err != nil {
		return st, err
	}
	var adv, ret []float64
	if p.Policy.Layout.Last {
		if adv, ret, err = p.advantages(ctx, r, oldLP, refLP, oldV, score, len(prompts), &st); err != nil {
			return st, err
		}
	}
	p.src.r = r
	p.surrogate.set(r, oldLP, adv)
	p.valueLoss.set(r, oldV, ret)
	for e := 0; e < p.Cfg.Epochs; e++ {
		if err := p.epoch(ctx, &st); err != nil {
			return st, fmt.Errorf("ppo epoch %d: %w", e, err)
		}
	}
	p.Step++
	if err := p.shareStats(ctx, &st); err != nil {
		return st, err
	}
	if math.IsNaN(st.PolicyLoss) || math.IsNaN(st.ValueLoss) {
		return st, fmt.Errorf("ppo: loss is NaN (diverged; lower --lr?)")
	}
	return st, nil
}

// epoch is one PPO epoch: a training step of the policy on the clipped
// surrogate and one of the value model on the clipped value loss, over
// the rollout.
func (p *PPO) epoch(ctx context.Context, st *PPOStats) error {
	p.surrogate.clipped = 0
	ps, err := p.policy.TrainStep(ctx)
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	// the clipped tokens are counted on the last stage
	cf := []float64{float64(p.surrogate.clipped)}
	if err := sumFloat64(ctx, p.Comms.DP, cf); err != nil {
		return fmt.Errorf("policy clip fraction: %w", err)
	}
	st.PolicyLoss, st.ClipFrac = ps.Loss, cf[0]/max(float64(st.Tokens), 1)
	vs, err := p.value.TrainStep(ctx)
	if err != nil {
		return fmt.Errorf("value: %w", err)
	}
	st.ValueLoss = vs.Loss
	p.valueLoss.syncHead()
	return nil
}

// advantages (last pipeline stage) turns the rollout's log-probs, values
// and scores into whitened advantages and returns, and fills st's rollout
// statistics over the global batch of nPrompts.
func (p *PPO) advantages(ctx context.Context, r *rollout, oldLP, refLP, oldV, score []float64, nPrompts int, st *PPOStats) (adv, ret []float64, err error) {
	// per-token rewards: the KL penalty everywhere, the score at the end
	var sumScore, sumKL float64
	n := 0
	for b := 0; b < r.B; b++ {
		m := r.end[b] - r.start[b]
		rew := make([]float64, m)
		for t := 0; t < m; t++ {
			kl := oldLP[n+t] - refLP[n+t]
			rew[t] = -p.Cfg.KLCoef * kl
			sumKL += kl
		}
		rew[m-1] += score[b]
		a, rt := GAE(rew, oldV[n:n+m], p.Cfg.Gamma, p.Cfg.Lambda)
		adv, ret = append(adv, a...), append(ret, rt...)
		sumScore += score[b]
		n += m
	}
	var sumAdv float64
	for _, a := range adv {
		sumAdv += a
	}
	// global statistics: [score, KL, tokens, advantage] summed over DP
	g := []float64{sumScore, sumKL, float64(n), sumAdv}
	if err := sumFloat64(ctx, p.Comms.DP, g); err != nil {
		return nil, nil, fmt.Errorf("ppo step statistics: %w", err)
	}
	B, N := float64(nPrompts), g[2]
	st.Reward, st.KL, st.Tokens, st.Length = g[0]/B, g[1]/B, int(N), N/B
	if err := p.whiten(ctx, adv, g[3]/N, N); err != nil {
		return nil, nil, err
	}
	return adv, ret, nil
}

// shareStats gives every pipeline stage the last stage's statistics (a
// no-op without a pipeline split).
func (p *PPO) shareStats(ctx context.Context, st *PPOStats) error {
	if p.Comms.PP.Size() == 1 {
		return nil
	}
	v := []float64{st.Reward, st.KL, st.PolicyLoss, st.ValueLoss, st.ClipFrac, float64(st.Tokens), st.Length}
	if !p.Policy.Layout.Last {
		clear(v)
	}
	if err := sumFloat64(ctx, p.Comms.PP, v); err != nil {
		return fmt.Errorf("ppo statistics over the pipeline stages: %w", err)
	}
	*st = PPOStats{Reward: v[0], KL: v[1], PolicyLoss: v[2], ValueLoss: v[3], ClipFrac: v[4], Tokens: int(v[5]), Length: v[6]}
	return nil
}

// whiten is Whiten over the global batch's N advantages with the given
// mean: this rank's adv shifted and scaled by the global mean and spread.
func (p *PPO) whiten(ctx context.Context, adv []float64, mean, N float64) error {
	if N < 2 {
		return nil
	}
	sq := []float64{0}
	for _, a := range adv {
		sq[0] += (a - mean) * (a - mean)
	}
	if err := sumFloat64(ctx, p.Comms.DP, sq); err != nil {
		return fmt.Errorf("ppo advantage spread: %w", err)
	}
	std := math.Sqrt(sq[0] / N)
	if std < 1e-8 {
		return nil
	}
	for i := range adv {
		adv[i] = (adv[i] - mean) / std
	}
	return nil
}
