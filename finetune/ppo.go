package finetune

import (
	"fmt"
	"math"
)

// PPO's per-token pieces (Schulman et al. 2017; the RLHF recipe of
// Ouyang et al. 2022): generalized advantage estimation, the clipped
// surrogate policy loss and the clipped value loss, as functions of
// per-token log-probs and values with their gradients.

// GAE returns advantages and returns for one sequence of per-token
// rewards and values (the value after the last token is 0):
//
//	delta_t = r_t + gamma*V_{t+1} - V_t,  A_t = delta_t + gamma*lambda*A_{t+1},  R_t = A_t + V_t.
func GAE(rewards, values []float64, gamma, lambda float64) (adv, ret []float64) {
	n := len(rewards)
	adv, ret = make([]float64, n), make([]float64, n)
	next, a := 0.0, 0.0
	for t := n - 1; t >= 0; t-- {
		delta := rewards[t] + gamma*next - values[t]
		a = delta + gamma*lambda*a
		adv[t], ret[t] = a, a+values[t]
		next = values[t]
	}
	return adv, ret
}

// Whiten shifts and scales x to mean 0 and standard deviation 1 in place
// (unchanged when it has fewer than two values or no spread).
func Whiten(x []float64) {
	if len(x) < 2 {
		return
	}
	var mean, sq float64
	for _, v := range x {
		mean += v
	}
	mean /= float64(len(x))
	for _, v := range x {
		sq += (v - mean) * (v - mean)
	}
	std := math.Sqrt(sq / float64(len(x)))
	if std < 1e-8 {
		return
	}
	for i := range x {
		x[i] = (x[i] - mean) / std
	}
}

// PolicyLoss is PPO's clipped surrogate over N tokens:
// mean_t -min(ratio_t*A_t, clip(ratio_t, 1-eps, 1+eps)*A_t) with
// ratio_t = exp(new_t - old_t). Grad is dLoss/d(new log-prob) per token.
type PolicyLoss struct {
	Loss     float64
	Grad     []float64
	ClipFrac float64 // fraction of tokens whose ratio was clipped
}

// PPOPolicyLoss computes the clipped surrogate and its gradient.
func PPOPolicyLoss(newLP, oldLP, adv []float64, eps float64) (PolicyLoss, error) {
	n := len(newLP)
	if n == 0 || len(oldLP) != n || len(adv) != n {
		return PolicyLoss{}, fmt.Errorf("ppo: %d, %d and %d per-token values", n, len(oldLP), len(adv))
	}
	out := PolicyLoss{Grad: make([]float64, n)}
	for t := range newLP {
		l, g, clipped := ppoTokenLoss(newLP[t], oldLP[t], adv[t], eps)
		out.Loss += l
		out.Grad[t] = g / float64(n)
		if clipped {
			out.ClipFrac++
		}
	}
	out.Loss /= float64(n)
	out.ClipFrac /= float64(n)
	return out, nil
}

// ppoTokenLoss is one token's term of the clipped surrogate,
// -min(ratio*A, clip(ratio)*A), its derivative with respect to the new
// log-prob, and whether the ratio was clipped (the term is then constant).
func ppoTokenLoss(newLP, oldLP, adv, eps float64) (loss, grad float64, clipped bool) {
	ratio := math.Exp(newLP - oldLP)
	unclipped := ratio * adv
	cr := min(max(ratio, 1-eps), 1+eps)
	if c := cr * adv; c < unclipped {
		// the clipped branch is the minimum: constant in new unless the
		// ratio is inside the clip range
		if cr != ratio {
			return -c, 0, true
		}
		return -c, -unclipped, false
	}
	return -unclipped, -unclipped, false // d(ratio)/d(new) = ratio
}

// PPOValueLoss is the clipped value loss
// 0.5 * mean_t max((v_t - R_t)^2, (old_t + clip(v_t - old_t, -eps, eps) - R_t)^2)
// and its gradient with respect to v.
func PPOValueLoss(v, old, ret []float64, eps float64) (float64, []float64, error) {
	n := len(v)
	if n == 0 || len(old) != n || len(ret) != n {
		return 0, nil, fmt.Errorf("ppo value: %d, %d and %d per-token values", n, len(old), len(ret))
	}
	grad := make([]float64, n)
	var loss float64
	for t := range v {
		l, g := ppoValueToken(v[t], old[t], ret[t], eps)
		loss += l
		grad[t] = g / float64(n)
	}
	return loss / float64(n), grad, nil
}

// ppoValueToken is one token's term of the clipped value loss and its
// derivative with respect to the value.
func ppoValueToken(v, old, ret, eps float64) (loss, grad float64) {
	d1 := v - ret
	dv := min(max(v-old, -eps), eps)
	d2 := old + dv - ret
	if d1*d1 >= d2*d2 {
		return 0.5 * d1 * d1, d1
	}
	if dv == v-old { // inside the clip range the clipped value moves with v
		return 0.5 * d2 * d2, d2
	}
	return 0.5 * d2 * d2, 0
}
