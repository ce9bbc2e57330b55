package finetune

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
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
}

// PPO is RLHF: a policy sampled on prompts, a frozen reference policy (KL
// penalty), a frozen reward model scoring each completion at its closing
// EOS, and a value model (a RewardModel read at every position) trained
// alongside the policy.
//
// It runs in one process (NewPPO) or data- and tensor-parallel
// (NewPPOParallel): every data-parallel rank samples and scores its share
// of each step's prompts, advantages are whitened with the global mean and
// spread, and policy and value gradients are summed over the data-parallel
// group, so every rank takes the same step. Completion i of a step is
// sampled from a generator seeded by (Seed, step, i) with i the prompt's
// index in the global batch, so the run does not depend on the layout
// beyond float rounding.
type PPO struct {
	Cfg    PPOConfig
	Policy *model.GPT
	Ref    *model.GPT
	Reward *RewardModel
	Value  *RewardModel
	EOS    int32
	Step   int
	Comms  PPOComms
	// CheckpointFiles, when set, writes more files into each checkpoint
	// directory before it is sealed (the run's tokenizer); rank 0 calls it.
	CheckpointFiles func(dir string) error

	T          int // row length: prompt + completion
	pass       *stagePasses
	optP, optV *optim.AdamW
	optH       *optim.AdamW
	head       []float32
	// activations of policy, reference, reward and value model, one
	// model.Acts per micro-batch
	pa, ra, rwa, va *passActs
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

// NewPPO checks the models (whole, one process, rows of at least T
// positions and batches of at least one row per prompt) and prepares AdamW.
func NewPPO(policy, ref *model.GPT, reward, value *RewardModel, eos int32, T int, cfg PPOConfig) (*PPO, error) {
	return NewPPOParallel(policy, ref, reward, value, eos, T, cfg, PPOComms{})
}

// NewPPOParallel is NewPPO over communicators: the models hold this rank's
// tensor-parallel shard (built on comms.TP) of its pipeline stage (comms.PP's
// rank; reward and value model from NewStageRewardModel when split) with
// rows for its data-parallel share of a step's prompts. Every rank of the
// job calls TrainStep with the same global batch.
func NewPPOParallel(policy, ref *model.GPT, reward, value *RewardModel, eos int32, T int, cfg PPOConfig, comms PPOComms) (*PPO, error) {
	if reward == nil || value == nil || policy == nil || ref == nil {
		return nil, fmt.Errorf("ppo: policy, reference, reward and value model are all required")
	}
	stage, stages := comms.PP.Rank(), comms.PP.Size()
	for _, m := range []*model.GPT{policy, ref, reward.GPT, value.GPT} {
		if m.Layout.First != (stage == 0) || m.Layout.Last != (stage == stages-1) {
			return nil, fmt.Errorf("ppo: every model must be laid out as pipeline stage %d of %d (this rank's)", stage, stages)
		}
		if tp := m.Layout.TP.Size(); tp != comms.TP.Size() {
			return nil, fmt.Errorf("ppo: a model split over %d tensor-parallel ranks, the TP group has %d", tp, comms.TP.Size())
		}
		if m.MaxT < T || m.MaxB != policy.MaxB {
			return nil, fmt.Errorf("ppo: models must hold %d rows of %d positions", policy.MaxB, T)
		}
	}
	switch {
	case cfg.MaxNew <= 0 || cfg.MaxNew >= T:
		return nil, fmt.Errorf("ppo: %d new tokens must be in 1..%d", cfg.MaxNew, T-1)
	case cfg.Epochs <= 0:
		return nil, fmt.Errorf("ppo: %d epochs must be positive", cfg.Epochs)
	case !(cfg.Temperature > 0) || !(cfg.LR > 0):
		return nil, fmt.Errorf("ppo: temperature %g and learning rate %g must be positive", cfg.Temperature, cfg.LR)
	case cfg.Micro < 0 || cfg.Micro > 0 && policy.MaxB%cfg.Micro != 0:
		return nil, fmt.Errorf("ppo: %d micro-batches do not divide the models' %d rows per rank", cfg.Micro, policy.MaxB)
	}
	micro := max(cfg.Micro, 1)
	adam := optim.DefaultAdamW()
	adam.WeightDecay = 0
	all := func(ps *model.Params) []optim.Segment { return []optim.Segment{{Offset: 0, Size: ps.Count()}} }
	optP, err := optim.NewAdamW(adam, policy.Params.Count(), all(policy.Params))
	if err != nil {
		return nil, err
	}
	optV, err := optim.NewAdamW(adam, value.GPT.Params.Count(), all(value.GPT.Params))
	if err != nil {
		return nil, err
	}
	C := value.GPT.Config.NEmbd
	optH, err := optim.NewAdamW(adam, C+1, []optim.Segment{{Offset: 0, Size: C + 1}})
	if err != nil {
		return nil, err
	}
	pass, err := newStagePasses(comms.PP, micro)
	if err != nil {
		return nil, err
	}
	return &PPO{Cfg: cfg, Policy: policy, Ref: ref, Reward: reward, Value: value, EOS: eos, T: T, Comms: comms, pass: pass,
		optP: optP, optV: optV, optH: optH, head: make([]float32, C+1),
		pa: newPassActs(policy, micro, T), ra: newPassActs(ref, micro, T),
		rwa: newPassActs(reward.GPT, micro, T), va: newPassActs(value.GPT, micro, T)}, nil
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
	var g *logitGather
	if last {
		g = newLogitGather(p.Comms.TP, B, V)
	}
	// the tokens drawn (as float32: exact for any vocabulary below 2^24),
	// sampled on the last stage and broadcast to the others
	drawn := make([]float32, B)
	// Each step forwards only the positions up to the longest unfinished
	// row (Tc), not all T: attention is causal, so a row's next-token
	// logits do not depend on the positions after it. Every stage derives
	// Tc from the same r.end (the drawn tokens are broadcast).
	compact := make([]int32, B*T)
	for s := 0; s < p.Cfg.MaxNew && slices.Contains(done, false); s++ {
		Tc := 0
		for b := range B {
			if !done[b] {
				Tc = max(Tc, r.end[b])
			}
		}
		for b := range B {
			copy(compact[b*Tc:(b+1)*Tc], r.rows[b*T:b*T+Tc])
		}
		if err := p.pass.forward(ctx, p.Policy, p.pa, compact[:B*Tc], nil, B, Tc); err != nil {
			return nil, fmt.Errorf("ppo sampling: %w", err)
		}
		if last {
			if err := p.draw(ctx, g, r, Tc, done, rngs, probs, drawn); err != nil {
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

// draw samples the next token of every unfinished row from the last
// stage's logits (of a forward over Tc positions per row) into drawn.
func (p *PPO) draw(ctx context.Context, g *logitGather, r *rollout, Tc int, done []bool, rngs []*rand.Rand, probs []float64, drawn []float32) error {
	V := p.Policy.Config.VocabSize
	at := make([]int, r.B)
	for b := range at {
		// a finished row may be longer than Tc: its logits are not used
		at[b] = b*Tc + min(r.end[b], Tc) - 1
	}
	logits, err := g.rows(ctx, p.pa, at)
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
	n := tp.Size()
	return &logitGather{tp: tp, n: n, V: V, buf: make([]float32, B*V), out: make([]float32, B*V)}
}

// rows returns the full logits (len(at), V) at the flat positions at of
// the last forward of a (this rank's logits are (N, V/n)).
func (g *logitGather) rows(ctx context.Context, a *passActs, at []int) ([]float32, error) {
	Vl, B := g.V/g.n, len(at)
	mine := g.buf[g.tp.Rank()*B*Vl:][:B*Vl]
	for b, n := range at {
		acts, k := a.at(n)
		copy(mine[b*Vl:(b+1)*Vl], acts.Logits()[k*Vl:(k+1)*Vl])
	}
	if g.n > 1 {
		if err := g.tp.AllGather(ctx, collective.F32(g.buf[:g.n*B*Vl])); err != nil {
			return nil, fmt.Errorf("gather logits over %d tensor-parallel ranks: %w", g.n, err)
		}
	}
	for r := 0; r < g.n; r++ {
		for b := 0; b < B; b++ {
			copy(g.out[b*g.V+r*Vl:][:Vl], g.buf[(r*B+b)*Vl:][:Vl])
		}
	}
	return g.out[:B*g.V], nil
}

// tokenLogProbs runs m on the rollout with its completion targets and
// returns the per-token log-probs (nil off the last pipeline stage).
func (p *PPO) tokenLogProbs(ctx context.Context, m *model.GPT, a *passActs, r *rollout) ([]float64, error) {
	if err := p.pass.forward(ctx, m, a, r.rows, r.targets, r.B, p.T); err != nil {
		return nil, err
	}
	if !m.Layout.Last {
		return nil, nil
	}
	lp := r.tokens(a.losses(), p.T)
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
	return p.headAt(ctx, p.Value, p.va, r, at)
}

// scores are the reward model's scores of the completions, read at each
// row's closing EOS (the last token when the completion was cut); nil off
// the last pipeline stage.
func (p *PPO) scores(ctx context.Context, r *rollout) ([]float64, error) {
	at := make([]int, r.B)
	for b := range at {
		at[b] = b*p.T + r.end[b] - 1
	}
	return p.headAt(ctx, p.Reward, p.rwa, r, at)
}

// headAt runs rm on the rollout (activations in a) and reads its scalar
// head at the given flat positions (row*T + position), as
// RewardModel.Rewards does.
func (p *PPO) headAt(ctx context.Context, rm *RewardModel, a *passActs, r *rollout, at []int) ([]float64, error) {
	if err := p.pass.forward(ctx, rm.GPT, a, r.rows, nil, r.B, p.T); err != nil {
		return nil, err
	}
	if !rm.GPT.Layout.Last {
		return nil, nil
	}
	C := rm.GPT.Config.NEmbd
	out := make([]float64, len(at))
	for k, n := range at {
		h := a.hidden(n, C)
		s := float64(rm.Head.Bias)
		for i, w := range rm.Head.Weight {
			s += float64(w) * float64(h[i])
		}
		out[k] = s
	}
	return out, nil
}

// TrainStep samples completions for the prompts, scores them, and runs
// Epochs of PPO on policy and value model. prompts is the step's global
// batch: with a data-parallel group of n ranks, rank r takes prompts
// [r*len/n, (r+1)*len/n), and the returned statistics are the global ones
// (identical on every rank).
func (p *PPO) TrainStep(ctx context.Context, prompts [][]int32) (PPOStats, error) {
	var st PPOStats
	dp := p.Comms.DP
	nDP := dp.Size()
	if len(prompts) == 0 || len(prompts)%nDP != 0 || len(prompts)/nDP > p.Policy.MaxB {
		return st, fmt.Errorf("ppo: %d prompts per step over %d data-parallel ranks, the models hold %d per rank", len(prompts), nDP, p.Policy.MaxB)
	}
	k := len(prompts) / nDP
	if _, err := p.pass.split(k); err != nil {
		return st, fmt.Errorf("%w (%d prompts over %d data-parallel ranks)", err, len(prompts), nDP)
	}
	first := dp.Rank() * k
	r, err := p.sample(ctx, prompts[first:first+k], first)
	if err != nil {
		return st, err
	}
	oldLP, err := p.tokenLogProbs(ctx, p.Policy, p.pa, r)
	if err != nil {
		return st, err
	}
	refLP, err := p.tokenLogProbs(ctx, p.Ref, p.ra, r)
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
	var share float64
	if p.Policy.Layout.Last {
		if adv, ret, share, err = p.advantages(ctx, r, oldLP, refLP, oldV, score, len(prompts), &st); err != nil {
			return st, err
		}
	}
	for e := 0; e < p.Cfg.Epochs; e++ {
		if err := p.policyEpoch(ctx, r, oldLP, adv, share, &st); err != nil {
			return st, fmt.Errorf("ppo policy epoch %d: %w", e, err)
		}
		if err := p.valueEpoch(ctx, r, oldV, ret, share, &st); err != nil {
			return st, fmt.Errorf("ppo value epoch %d: %w", e, err)
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

// advantages (last pipeline stage) turns the rollout's log-probs, values
// and scores into whitened advantages and returns, fills st's rollout
// statistics over the global batch of nPrompts, and returns this rank's
// share of the batch's tokens.
func (p *PPO) advantages(ctx context.Context, r *rollout, oldLP, refLP, oldV, score []float64, nPrompts int, st *PPOStats) (adv, ret []float64, share float64, err error) {
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
		return nil, nil, 0, fmt.Errorf("ppo step statistics: %w", err)
	}
	B, N := float64(nPrompts), g[2]
	st.Reward, st.KL, st.Tokens, st.Length = g[0]/B, g[1]/B, int(N), N/B
	if err := p.whiten(ctx, adv, g[3]/N, N); err != nil {
		return nil, nil, 0, err
	}
	// Each rank's losses are its tokens' share of the global token mean:
	// scaled by n/N, the summed gradients are those of the global mean.
	return adv, ret, float64(n) / N, nil
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

// gradNorm is the global norm of m's gradients plus extra (a head's on
// the last stage, identical on every tensor-parallel rank): each rank's
// share (replicated tensors counted on TP rank 0, the tied embedding on the
// first stage) summed over the TP group, then over the pipeline stages.
func (p *PPO) gradNorm(ctx context.Context, m *model.GPT, extra []float32) (float64, error) {
	ss := []float64{m.Params.NormSumSquares()}
	if err := sumFloat64(ctx, p.Comms.TP, ss); err != nil {
		return 0, fmt.Errorf("gradient norm: %w", err)
	}
	ss[0] += optim.SumSquares(extra)
	if err := sumFloat64(ctx, p.Comms.PP, ss); err != nil {
		return 0, fmt.Errorf("gradient norm over the pipeline stages: %w", err)
	}
	return math.Sqrt(ss[0]), nil
}

// reduceGrads sums m's gradients: the tied embedding's between the first
// and last pipeline stage (Comms.Embed), then everything over DP.
func (p *PPO) reduceGrads(ctx context.Context, m *model.GPT) error {
	if p.Comms.Embed.Size() > 1 && m.TiedOffset < len(m.Params.Grad) { // LoRA adapters hold no embedding
		if err := allReduceSum(ctx, p.Comms.Embed, m.Params.Grad[m.TiedOffset:]); err != nil {
			return fmt.Errorf("tied embedding gradient: %w", err)
		}
	}
	if err := allReduceSum(ctx, p.Comms.DP, m.Params.Grad); err != nil {
		return fmt.Errorf("gradient all-reduce: %w", err)
	}
	return nil
}

// policyEpoch is one PPO epoch of the policy: the clipped surrogate's
// gradient (last stage) as per-token loss weights, backward over the
// stages, summed, clipped and applied.
func (p *PPO) policyEpoch(ctx context.Context, r *rollout, oldLP, adv []float64, share float64, st *PPOStats) error {
	m, T := p.Policy, p.T
	newLP, err := p.tokenLogProbs(ctx, m, p.pa, r)
	if err != nil {
		return err
	}
	if m.Layout.Last {
		pl, err := PPOPolicyLoss(newLP, oldLP, adv, p.Cfg.Clip)
		if err != nil {
			return err
		}
		stats := []float64{pl.Loss * share, pl.ClipFrac * share}
		if err := sumFloat64(ctx, p.Comms.DP, stats); err != nil {
			return fmt.Errorf("policy loss: %w", err)
		}
		st.PolicyLoss, st.ClipFrac = stats[0], stats[1]
		// a token's log-prob is minus its loss: d(objective)/d(loss) = -grad
		w := make([]float32, r.B*T)
		k := 0
		for b := 0; b < r.B; b++ {
			for i := r.start[b]; i < r.end[b]; i++ {
				w[b*T+i-1] = float32(-pl.Grad[k] * share)
				k++
			}
		}
		p.pa.setLossWeights(w)
		defer p.pa.setLossWeights(nil)
	}
	m.Params.ZeroGrad()
	if err := p.pass.backward(ctx, m, p.pa, r.B, T); err != nil {
		return err
	}
	if err := p.reduceGrads(ctx, m); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	norm, err := p.gradNorm(ctx, m, nil)
	if err != nil {
		return err
	}
	optim.Scale(m.Params.Grad, optim.ClipScale(norm, p.Cfg.GradClip))
	p.optP.Update(m.Params.Data, m.Params.Grad, p.Cfg.LR)
	return nil
}

// valueEpoch is one epoch of the value model: the clipped value loss's
// gradient through the head (last stage) into the hidden states, backward
// over the stages, summed, clipped and applied to model and head.
func (p *PPO) valueEpoch(ctx context.Context, r *rollout, oldV, ret []float64, share float64, st *PPOStats) error {
	vm, T := p.Value, p.T
	v, err := p.values(ctx, r)
	if err != nil {
		return err
	}
	last := vm.GPT.Layout.Last
	if last {
		loss, g, err := PPOValueLoss(v, oldV, ret, p.Cfg.ValueClip)
		if err != nil {
			return err
		}
		stats := []float64{loss * share}
		if err := sumFloat64(ctx, p.Comms.DP, stats); err != nil {
			return fmt.Errorf("value loss: %w", err)
		}
		st.ValueLoss = stats[0]
		C := vm.GPT.Config.NEmbd
		dh := vm.dHid[:r.B*T*C]
		clear(dh)
		clear(vm.dHead)
		k := 0
		for b := 0; b < r.B; b++ {
			for i := r.start[b]; i < r.end[b]; i++ {
				n := b*T + i - 1
				gk := float32(g[k] * share)
				hid := p.va.hidden(n, C)
				for c, w := range vm.Head.Weight {
					vm.dHead[c] += gk * hid[c]
					dh[n*C+c] = gk * w
				}
				vm.dHead[C] += gk
				k++
			}
		}
		p.va.setHeadGrad(dh, C)
		defer p.va.setHeadGrad(nil, C)
	}
	vm.GPT.Params.ZeroGrad()
	if err := p.pass.backward(ctx, vm.GPT, p.va, r.B, T); err != nil {
		return err
	}
	if err := p.reduceGrads(ctx, vm.GPT); err != nil {
		return fmt.Errorf("value: %w", err)
	}
	var head []float32 // the head's gradient, on the last stage
	if last {
		head = vm.dHead
		if err := allReduceSum(ctx, p.Comms.DP, head); err != nil {
			return fmt.Errorf("value head gradient all-reduce: %w", err)
		}
	}
	norm, err := p.gradNorm(ctx, vm.GPT, head)
	if err != nil {
		return err
	}
	clip := optim.ClipScale(norm, p.Cfg.GradClip)
	optim.Scale(vm.GPT.Params.Grad, clip)
	p.optV.Update(vm.GPT.Params.Data, vm.GPT.Params.Grad, p.Cfg.LR)
	if last {
		C := vm.GPT.Config.NEmbd
		optim.Scale(vm.dHead, clip)
		copy(p.head, vm.Head.Weight)
		p.head[C] = vm.Head.Bias
		p.optH.Update(p.head, vm.dHead, p.Cfg.LR)
		copy(vm.Head.Weight, p.head[:C])
		vm.Head.Bias = p.head[C]
	}
	return nil
}
