package model

import (
	"math"
	"testing"
)

// TestExp32AndSigmoid32: exp32 is within 3e-7 relative of math.Exp over
// its range, and sigmoid32 within 3e-7 of the float64 sigmoid everywhere,
// its limits included.
func TestExp32AndSigmoid32(t *testing.T) {
	worstExp, worstSig := 0.0, 0.0
	for x := -87.0; x <= 88; x += 0.0137 {
		got, want := float64(exp32(float32(x))), math.Exp(float64(float32(x)))
		worstExp = max(worstExp, math.Abs(got-want)/want)
	}
	for x := -120.0; x <= 120; x += 0.0071 {
		xf := float64(float32(x))
		got, want := float64(sigmoid32(float32(x))), 1/(1+math.Exp(-xf))
		worstSig = max(worstSig, math.Abs(got-want)/max(want, 1e-30))
	}
	if worstExp > 3e-7 || worstSig > 3e-7 {
		t.Fatalf("worst relative error: exp32 %.2g, sigmoid32 %.2g", worstExp, worstSig)
	}
	if s := sigmoid32(float32(math.Inf(-1))); s != 0 {
		t.Errorf("sigmoid32(-Inf) = %v", s)
	}
	if s := sigmoid32(float32(math.Inf(1))); s != 1 {
		t.Errorf("sigmoid32(+Inf) = %v", s)
	}
	if s := sigmoid32(float32(math.NaN())); s == s {
		t.Errorf("sigmoid32(NaN) = %v", s)
	}
}
