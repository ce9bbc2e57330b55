package finetune

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

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
}

// PPO is single-process RLHF: a policy sampled on prompts, a frozen
// reference policy (KL penalty), a frozen reward model scoring each
// completion at its closing EOS, and a value model (a RewardModel read at
// every position) trained alongside the policy.
type PPO struct {
	Cfg    PPOConfig
	Policy *model.GPT
	Ref    *model.GPT
	Reward *RewardModel
	Value  *RewardModel
	EOS    int32
	Step   int

	T          int // row length: prompt + completion
	optP, optV *optim.AdamW
	optH       *optim.AdamW
	head       []float32
	rng        *rand.Rand
	pa, ra     *model.Acts
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
	for _, m := range []*model.GPT{policy, ref, reward.GPT, value.GPT} {
		if !m.Layout.First || !m.Layout.Last {
			return nil, fmt.Errorf("ppo: every model must be whole in one process")
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
	}
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
	return &PPO{Cfg: cfg, Policy: policy, Ref: ref, Reward: reward, Value: value, EOS: eos, T: T,
		optP: optP, optV: optV, optH: optH, head: make([]float32, C+1), rng: rand.New(rand.NewPCG(cfg.Seed, 0x990)),
		pa: policy.NewActs(policy.MaxB, T), ra: ref.NewActs(ref.MaxB, T)}, nil
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

// sample draws completions for prompts with the policy.
func (p *PPO) sample(ctx context.Context, prompts [][]int32) (*rollout, error) {
	T, V := p.T, p.Policy.Config.VocabSize
	B := len(prompts)
	r := &rollout{B: B, rows: make([]int32, B*T), targets: make([]int32, B*T), start: make([]int, B), end: make([]int, B)}
	for i := range r.rows {
		r.rows[i], r.targets[i] = p.EOS, ignoreIndex
	}
	done := make([]bool, B)
	for b, pr := range prompts {
		if len(pr) == 0 {
			return nil, fmt.Errorf("ppo: prompt %d is empty", b)
		}
		if len(pr) > T-p.Cfg.MaxNew {
			pr = pr[len(pr)-(T-p.Cfg.MaxNew):] // keep the prompt's end
		}
		copy(r.rows[b*T:], pr)
		r.start[b], r.end[b] = len(pr), len(pr)
	}
	probs := make([]float64, V)
	for s := 0; s < p.Cfg.MaxNew; s++ {
		if _, _, err := p.Policy.ForwardActs(ctx, p.pa, r.rows, nil, nil, B, T); err != nil {
			return nil, fmt.Errorf("ppo sampling: %w", err)
		}
		logits := p.pa.Logits()
		for b := 0; b < B; b++ {
			if done[b] {
				continue
			}
			row := logits[(b*T+r.end[b]-1)*V:][:V]
			mx := math.Inf(-1)
			for _, v := range row {
				mx = math.Max(mx, float64(v))
			}
			var z float64
			for i, v := range row {
				probs[i] = math.Exp((float64(v) - mx) / p.Cfg.Temperature)
				z += probs[i]
			}
			u, tok := p.rng.Float64()*z, V-1
			for i, q := range probs {
				if u -= q; u <= 0 {
					tok = i
					break
				}
			}
			r.rows[b*T+r.end[b]] = int32(tok)
			r.targets[b*T+r.end[b]-1] = int32(tok)
			r.end[b]++
			if int32(tok) == p.EOS || r.end[b] == T {
				done[b] = true
			}
		}
	}
	return r, nil
}

// tokenLogProbs runs m on the rollout with its completion targets and
// returns the per-token log-probs.
func (p *PPO) tokenLogProbs(ctx context.Context, m *model.GPT, a *model.Acts, r *rollout) ([]float64, error) {
	if _, _, err := m.ForwardActs(ctx, a, r.rows, nil, r.targets, r.B, p.T); err != nil {
		return nil, err
	}
	lp := r.tokens(a.Losses(), p.T)
	for i := range lp {
		lp[i] = -lp[i]
	}
	return lp, nil
}

// values runs the value model and returns the value of the state before
// each completion token.
func (p *PPO) values(ctx context.Context, r *rollout) ([]float64, error) {
	vm := p.Value
	if _, _, err := vm.GPT.ForwardActs(ctx, vm.acts, r.rows, nil, nil, r.B, p.T); err != nil {
		return nil, err
	}
	hid, C := vm.acts.Hidden(), vm.GPT.Config.NEmbd
	var out []float64
	for b := 0; b < r.B; b++ {
		for i := r.start[b]; i < r.end[b]; i++ {
			h := hid[(b*p.T+i-1)*C:][:C]
			s := float64(vm.Head.Bias)
			for k, w := range vm.Head.Weight {
				s += float64(w) * float64(h[k])
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// scores are the reward model's scores of the completions, read at each
// row's closing EOS (the last token when the completion was cut).
func (p *PPO) scores(ctx context.Context, r *rollout) ([]float64, error) {
	d := &RewardRows{Seq: p.T, Rows: r.B, Inputs: r.rows, Last: make([]int, r.B), Lines: make([]int, r.B)}
	for b := 0; b < r.B; b++ {
		d.Last[b] = r.end[b] - 1
	}
	return p.Reward.Rewards(ctx, d, 0, r.B)
}

// TrainStep samples completions for the prompts, scores them, and runs
// Epochs of PPO on policy and value model.
func (p *PPO) TrainStep(ctx context.Context, prompts [][]int32) (PPOStats, error) {
	var st PPOStats
	if len(prompts) == 0 || len(prompts) > p.Policy.MaxB {
		return st, fmt.Errorf("ppo: %d prompts per step, the models hold %d", len(prompts), p.Policy.MaxB)
	}
	r, err := p.sample(ctx, prompts)
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
	// per-token rewards: the KL penalty everywhere, the score at the end
	var adv, ret []float64
	k := 0
	for b := 0; b < r.B; b++ {
		n := r.end[b] - r.start[b]
		rew := make([]float64, n)
		for t := 0; t < n; t++ {
			kl := oldLP[k+t] - refLP[k+t]
			rew[t] = -p.Cfg.KLCoef * kl
			st.KL += kl
		}
		rew[n-1] += score[b]
		a, rt := GAE(rew, oldV[k:k+n], p.Cfg.Gamma, p.Cfg.Lambda)
		adv, ret = append(adv, a...), append(ret, rt...)
		st.Reward += score[b]
		k += n
	}
	st.Tokens = k
	st.Reward /= float64(r.B)
	st.KL /= float64(r.B)
	st.Length = float64(k) / float64(r.B)
	Whiten(adv)
	for e := 0; e < p.Cfg.Epochs; e++ {
		if err := p.policyEpoch(ctx, r, oldLP, adv, &st); err != nil {
			return st, fmt.Errorf("ppo policy epoch %d: %w", e, err)
		}
		if err := p.valueEpoch(ctx, r, oldV, ret, &st); err != nil {
			return st, fmt.Errorf("ppo value epoch %d: %w", e, err)
		}
	}
	p.Step++
	return st, nil
}

func (p *PPO) policyEpoch(ctx context.Context, r *rollout, oldLP, adv []float64, st *PPOStats) error {
	m, T := p.Policy, p.T
	newLP, err := p.tokenLogProbs(ctx, m, p.pa, r)
	if err != nil {
		return err
	}
	pl, err := PPOPolicyLoss(newLP, oldLP, adv, p.Cfg.Clip)
	if err != nil {
		return err
	}
	st.PolicyLoss, st.ClipFrac = pl.Loss, pl.ClipFrac
	// a token's log-prob is minus its loss: d(objective)/d(loss) = -grad
	w := make([]float32, r.B*T)
	k := 0
	for b := 0; b < r.B; b++ {
		for i := r.start[b]; i < r.end[b]; i++ {
			w[b*T+i-1] = float32(-pl.Grad[k])
			k++
		}
	}
	p.pa.SetLossWeights(w)
	defer p.pa.SetLossWeights(nil)
	m.Params.ZeroGrad()
	if err := m.BackwardActs(ctx, p.pa, nil, 1); err != nil {
		return err
	}
	optim.Scale(m.Params.Grad, optim.ClipScale(optim.GradNorm(m.Params.Grad), p.Cfg.GradClip))
	p.optP.Update(m.Params.Data, m.Params.Grad, p.Cfg.LR)
	return nil
}

func (p *PPO) valueEpoch(ctx context.Context, r *rollout, oldV, ret []float64, st *PPOStats) error {
	vm, T := p.Value, p.T
	v, err := p.values(ctx, r)
	if err != nil {
		return err
	}
	loss, g, err := PPOValueLoss(v, oldV, ret, p.Cfg.ValueClip)
	if err != nil {
		return err
	}
	st.ValueLoss = loss
	C := vm.GPT.Config.NEmbd
	hid := vm.acts.Hidden()
	dh := vm.dHid[:r.B*T*C]
	clear(dh)
	clear(vm.dHead)
	k := 0
	for b := 0; b < r.B; b++ {
		for i := r.start[b]; i < r.end[b]; i++ {
			n := b*T + i - 1
			gk := float32(g[k])
			for c, w := range vm.Head.Weight {
				vm.dHead[c] += gk * hid[n*C+c]
				dh[n*C+c] = gk * w
			}
			vm.dHead[C] += gk
			k++
		}
	}
	vm.acts.SetHeadGrad(dh)
	defer vm.acts.SetHeadGrad(nil)
	vm.GPT.Params.ZeroGrad()
	if err := vm.GPT.BackwardActs(ctx, vm.acts, nil, 1); err != nil {
		return err
	}
	norm := math.Sqrt(optim.SumSquares(vm.GPT.Params.Grad) + optim.SumSquares(vm.dHead))
	clip := optim.ClipScale(norm, p.Cfg.GradClip)
	optim.Scale(vm.GPT.Params.Grad, clip)
	optim.Scale(vm.dHead, clip)
	p.optV.Update(vm.GPT.Params.Data, vm.GPT.Params.Grad, p.Cfg.LR)
	copy(p.head, vm.Head.Weight)
	p.head[C] = vm.Head.Bias
	p.optH.Update(p.head, vm.dHead, p.Cfg.LR)
	copy(vm.Head.Weight, p.head[:C])
	vm.Head.Bias = p.head[C]
	return nil
}
