package finetune

import (
	"fmt"
	"math"
)

// logSigmoid is log(1/(1+exp(-x))), stable for large |x|.
func logSigmoid(x float64) float64 {
	if x >= 0 {
		return -math.Log1p(math.Exp(-x))
	}
	return x - math.Log1p(math.Exp(x))
}

func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// PairLoss is a pairwise loss over P preference pairs with its gradients.
type PairLoss struct {
	Loss      float64   // mean over pairs
	DChosen   []float64 // dLoss/d(chosen score), per pair (includes the 1/P of the mean)
	DRejected []float64
	Accuracy  float64 // fraction of pairs scored chosen > rejected
}

// BradleyTerry is the reward-model loss: mean over pairs of
// -log sigmoid(r_chosen - r_rejected).
func BradleyTerry(chosen, rejected []float64) (PairLoss, error) {
	P := len(chosen)
	if P == 0 || len(rejected) != P {
		return PairLoss{}, fmt.Errorf("bradley-terry: %d chosen and %d rejected rewards", P, len(rejected))
	}
	out := PairLoss{DChosen: make([]float64, P), DRejected: make([]float64, P)}
	for i := range chosen {
		d := chosen[i] - rejected[i]
		out.Loss -= logSigmoid(d)
		g := -sigmoid(-d) / float64(P) // d/dd of -log sigmoid(d), over P
		out.DChosen[i], out.DRejected[i] = g, -g
		if d > 0 {
			out.Accuracy++
		}
	}
	out.Loss /= float64(P)
	out.Accuracy /= float64(P)
	return out, nil
}

// DPOLoss is PairLoss plus DPO's implicit rewards.
type DPOLoss struct {
	PairLoss
	RewardChosen   []float64 // beta * (log pi(chosen) - log ref(chosen))
	RewardRejected []float64
	Margin         float64 // mean of RewardChosen - RewardRejected
}

// DPO is the direct preference optimization loss (Rafailov et al. 2023):
// mean over pairs of -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))
// where pi and ref are the policy's and the frozen reference's summed
// log-probabilities of each completion given its prompt. Gradients are with
// respect to the policy log-probs; Accuracy counts pairs whose implicit
// chosen reward exceeds the rejected one.
func DPO(policyChosen, policyRejected, refChosen, refRejected []float64, beta float64) (DPOLoss, error) {
	P := len(policyChosen)
	if P == 0 || len(policyRejected) != P || len(refChosen) != P || len(refRejected) != P {
		return DPOLoss{}, fmt.Errorf("dpo: log-prob vectors of %d, %d, %d and %d pairs", P, len(policyRejected), len(refChosen), len(refRejected))
	}
	if !(beta > 0) {
		return DPOLoss{}, fmt.Errorf("dpo: beta %g must be positive", beta)
	}
	out := DPOLoss{PairLoss: PairLoss{DChosen: make([]float64, P), DRejected: make([]float64, P)},
		RewardChosen: make([]float64, P), RewardRejected: make([]float64, P)}
	for i := 0; i < P; i++ {
		rc := beta * (policyChosen[i] - refChosen[i])
		rr := beta * (policyRejected[i] - refRejected[i])
		z := rc - rr
		out.Loss -= logSigmoid(z)
		g := -beta * sigmoid(-z) / float64(P)
		out.DChosen[i], out.DRejected[i] = g, -g
		out.RewardChosen[i], out.RewardRejected[i] = rc, rr
		out.Margin += z
		if z > 0 {
			out.Accuracy++
		}
	}
	out.Loss /= float64(P)
	out.Margin /= float64(P)
	out.Accuracy /= float64(P)
	return out, nil
}
