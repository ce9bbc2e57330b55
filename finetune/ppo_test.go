package finetune

import (
	"math"
	"testing"
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
