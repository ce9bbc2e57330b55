package finetune

import (
	"context"
	"math"
	"testing"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
)

func TestGAEMatchesDiscountedSums(t *testing.T) {
	r := []float64{0.1, -0.2, 0.05, 1.5}
	v := []float64{0.3, 0.2, -0.1, 0.4}
	gamma, lambda := 0.9, 0.8
	adv, ret := GAE(r, v, gamma, lambda)
	next := func(t int) float64 {
		if t+1 < len(v) {
			return v[t+1]
		}
		return 0
	}
	for k := range r {
		// A_k = sum_l (gamma*lambda)^l delta_{k+l}
		var want float64
		for l := 0; k+l < len(r); l++ {
			d := r[k+l] + gamma*next(k+l) - v[k+l]
			want += math.Pow(gamma*lambda, float64(l)) * d
		}
		if math.Abs(adv[k]-want) > 1e-12 || math.Abs(ret[k]-(want+v[k])) > 1e-12 {
			t.Fatalf("t=%d: advantage %g return %g, want %g and %g", k, adv[k], ret[k], want, want+v[k])
		}
	}
	// lambda = 1, gamma = 1: returns are the plain sums of future rewards
	_, ret = GAE(r, v, 1, 1)
	if math.Abs(ret[0]-(0.1-0.2+0.05+1.5)) > 1e-12 {
		t.Fatalf("monte-carlo return %g", ret[0])
	}
}

func numGrad(f func([]float64) float64, x []float64, i int) float64 {
	const h = 1e-6
	o := x[i]
	x[i] = o + h
	p := f(x)
	x[i] = o - h
	m := f(x)
	x[i] = o
	return (p - m) / (2 * h)
}

func TestPPOLossGradients(t *testing.T) {
	old := []float64{-1, -2, -0.5, -3, -1.2}
	adv := []float64{1, -1, 0.5, -2, 2}
	// ratios inside and outside the clip range, both signs of advantage
	nw := []float64{-1.05, -1.6, -0.9, -3.01, -0.9}
	pol := func(x []float64) float64 { l, _ := PPOPolicyLoss(x, old, adv, 0.2); return l.Loss }
	l, err := PPOPolicyLoss(nw, old, adv, 0.2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range nw {
		if g := numGrad(pol, nw, i); math.Abs(g-l.Grad[i]) > 1e-6 {
			t.Errorf("policy grad[%d] = %g, numeric %g", i, l.Grad[i], g)
		}
	}
	if l.ClipFrac == 0 || l.ClipFrac == 1 {
		t.Fatalf("clip fraction %g: the case should mix clipped and unclipped tokens", l.ClipFrac)
	}
	// at the old policy the loss is -mean(A)
	if l0, _ := PPOPolicyLoss(old, old, adv, 0.2); math.Abs(l0.Loss+0.1) > 1e-12 {
		t.Fatalf("loss at the old policy %g, want -mean(A) = -0.1", l0.Loss)
	}
	v := []float64{0.5, -0.3, 1.4, 0.05}
	vOld := []float64{0.45, 0.1, 1.0, 0.0}
	ret := []float64{1.0, -0.5, 0.2, 0.3}
	val := func(x []float64) float64 { l, _, _ := PPOValueLoss(x, vOld, ret, 0.2); return l }
	_, g, err := PPOValueLoss(v, vOld, ret, 0.2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range v {
		if n := numGrad(val, v, i); math.Abs(n-g[i]) > 1e-6 {
			t.Errorf("value grad[%d] = %g, numeric %g", i, g[i], n)
		}
	}
}

// TestPPOStep: one PPO step on tiny models: the policy starts at the
// reference (KL exactly 0), completions respect MaxNew, and the update
// moves the policy and value model.
func TestPPOStep(t *testing.T) {
	cfg := model.Config{VocabSize: 256, NLayer: 1, NHead: 2, NEmbd: 8, NPositions: 12, LayerNormEps: 1e-5,
		Activation: model.GELUTanh, Norm: model.LayerNorm, Position: model.PosLearned, InitStd: 0.3}
	mk := func(seed uint64) *model.GPT {
		m, err := model.New(cfg, 3, 12, gemm.New(1))
		if err != nil {
			t.Fatal(err)
		}
		m.Init(seed)
		return m
	}
	policy, ref := mk(1), mk(1)
	rm, _ := NewRewardModel(mk(2), 3)
	vm, _ := NewRewardModel(mk(2), 4)
	p, err := NewPPO(policy, ref, rm, vm, 0, 12, PPOConfig{MaxNew: 4, Epochs: 2, Clip: 0.2, ValueClip: 0.2, KLCoef: 0.1,
		Gamma: 1, Lambda: 0.95, Temperature: 1, LR: 1e-2, GradClip: 1, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	before := append([]float32(nil), policy.Params.Data...)
	vBefore := append([]float32(nil), vm.GPT.Params.Data...)
	st, err := p.TrainStep(context.Background(), [][]int32{{'a', 'b', '='}, {'c', '='}, {'x', 'y', 'z', '='}})
	if err != nil {
		t.Fatal(err)
	}
	if st.KL != 0 || st.Tokens == 0 || st.Length > 4 || math.IsNaN(st.PolicyLoss+st.ValueLoss) {
		t.Fatalf("stats %+v: want KL 0 at the reference, 1..4 tokens per completion", st)
	}
	moved := func(a, b []float32) bool {
		for i := range a {
			if a[i] != b[i] {
				return true
			}
		}
		return false
	}
	if !moved(before, policy.Params.Data) || !moved(vBefore, vm.GPT.Params.Data) {
		t.Fatal("a PPO step left the policy or the value model unchanged")
	}
	if _, err := NewPPO(policy, ref, rm, vm, 0, 12, PPOConfig{MaxNew: 12, Epochs: 1, Temperature: 1, LR: 1}); err == nil {
		t.Fatal("MaxNew filling the whole row accepted")
	}
}
