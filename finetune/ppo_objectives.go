package finetune

import (
	"fmt"
)

// PPO's epochs as the trainer's objectives: the rollout is the batch
// (rolloutSource), the clipped surrogate is an Objective on the policy's
// per-token losses, and the clipped value loss is a HeadObjective on the
// value model's final hidden states. Both losses are sums over tokens: the
// trainer divides by the global token count (Units summed over the
// data-parallel ranks), so a step's gradient is that of the global mean.

// rolloutSource yields the current rollout as every step's batch.
type rolloutSource struct{ r *rollout }

// Next implements trainer.Batches.
func (s *rolloutSource) Next(inputs, targets []int32) error {
	if s.r == nil || len(inputs) != len(s.r.rows) {
		return fmt.Errorf("ppo: no rollout of %d positions to train on", len(inputs))
	}
	copy(inputs, s.r.rows)
	copy(targets, s.r.targets)
	return nil
}

// completionUnits counts the completion tokens of rows (their targets).
func completionUnits(targets []int32) int {
	n := 0
	for _, y := range targets {
		if y != ignoreIndex {
			n++
		}
	}
	return n
}

// rowTokens[b] is the index, in the rollout's token order (row by row,
// positions in order), of row b's first completion token.
func rowTokens(r *rollout) []int {
	out := make([]int, r.B+1)
	for b := 0; b < r.B; b++ {
		out[b+1] = out[b] + r.end[b] - r.start[b]
	}
	return out
}

// ppoSurrogate is the clipped surrogate as a trainer.Objective.
type ppoSurrogate struct {
	p          *PPO
	r          *rollout
	oldLP, adv []float64 // per token (last stage)
	rowTok     []int
	clipped    int // tokens clipped in the current step (last stage)
}

func (s *ppoSurrogate) set(r *rollout, oldLP, adv []float64) {
	s.r, s.oldLP, s.adv, s.rowTok = r, oldLP, adv, rowTokens(r)
}

// Units implements trainer.Objective.
func (s *ppoSurrogate) Units(targets []int32) int { return completionUnits(targets) }

// Forward implements trainer.Objective: per-position losses are minus the
// log-probs of the completion tokens.
func (s *ppoSurrogate) Forward(row int, targets []int32, losses, weights []float32) (float64, error) {
	T := s.p.T
	clear(weights)
	var sum float64
	for i := 0; i < len(targets)/T; i++ {
		k := s.rowTok[row+i]
		for pos := i * T; pos < (i+1)*T; pos++ {
			if targets[pos] == ignoreIndex {
				continue
			}
			l, g, clipped := ppoTokenLoss(-float64(losses[pos]), s.oldLP[k], s.adv[k], s.p.Cfg.Clip)
			sum += l
			weights[pos] = float32(-g) // d(loss)/d(-log-prob)
			if clipped {
				s.clipped++
			}
			k++
		}
	}
	return sum, nil
}

// ppoValueLoss is the clipped value loss as a trainer.HeadObjective; its
// parameters are the value head's (weight, then bias), which the trainer
// updates and syncHead copies back into PPO's value model.
type ppoValueLoss struct {
	p             *PPO
	r             *rollout
	oldV, ret     []float64 // per token (last stage)
	rowTok        []int
	params, grads []float32 // (C+1)
}

func newPPOValueLoss(p *PPO) *ppoValueLoss {
	C := p.Value.GPT.Config.NEmbd
	v := &ppoValueLoss{p: p, params: make([]float32, C+1), grads: make([]float32, C+1)}
	v.loadHead()
	return v
}

func (v *ppoValueLoss) set(r *rollout, oldV, ret []float64) {
	v.r, v.oldV, v.ret, v.rowTok = r, oldV, ret, rowTokens(r)
}

// loadHead takes the value model's head as the parameters.
func (v *ppoValueLoss) loadHead() {
	h := v.p.Value.Head
	copy(v.params, h.Weight)
	v.params[len(h.Weight)] = h.Bias
}

// syncHead copies the trained parameters into the value model's head.
func (v *ppoValueLoss) syncHead() {
	h := &v.p.Value.Head
	copy(h.Weight, v.params)
	h.Bias = v.params[len(h.Weight)]
}

// Units implements trainer.HeadObjective.
func (v *ppoValueLoss) Units(targets []int32) int { return completionUnits(targets) }

// HeadParams implements trainer.HeadObjective.
func (v *ppoValueLoss) HeadParams() ([]float32, []float32) { return v.params, v.grads }

// HeadForward implements trainer.HeadObjective: the value of the state
// before each completion token is the head on the hidden state of the
// position predicting it.
func (v *ppoValueLoss) HeadForward(row int, hidden, dHidden []float32) (float64, error) {
	T, C := v.p.T, len(v.params)-1
	h := RewardHead{Weight: v.params[:C], Bias: v.params[C]}
	var sum float64
	for i := 0; i < len(hidden)/(T*C); i++ {
		b := row + i
		k := v.rowTok[b]
		for t := v.r.start[b]; t < v.r.end[b]; t++ {
			n := i*T + t - 1
			hid := hidden[n*C:][:C]
			l, g := ppoValueToken(h.score(hid), v.oldV[k], v.ret[k], v.p.Cfg.ValueClip)
			sum += l
			gk := float32(g)
			for c, w := range h.Weight {
				v.grads[c] += gk * hid[c]
				dHidden[n*C+c] = gk * w
			}
			v.grads[C] += gk
			k++
		}
	}
	return sum, nil
}
