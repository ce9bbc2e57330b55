package vec

import "fmt"

// ExpShiftSum replaces every x[i] by exp(x[i]-shift) and returns their sum:
// the numerator and normalizer of a softmax row whose maximum is shift.
// Arguments below about -87 give exp's smallest normal float (1.2e-38)
// instead of underflowing.
func ExpShiftSum(x []float32, shift float32) float32 {
	if len(x) == 0 {
		return 0
	}
	switch {
	case useAVX512:
		return expShiftSumAVX512(&x[0], len(x), shift)
	case useAVX2:
		return expShiftSumAVX2(&x[0], len(x), shift)
	}
	return expShiftSumGo(x, shift)
}

// GELUTanh writes out[i] = 0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715x^3))),
// computed as x*sigmoid(2u), which has no cancellation for large |x|.
func GELUTanh(out, x []float32) {
	if len(out) < len(x) {
		panic(fmt.Sprintf("vec: GELUTanh output %d shorter than input %d", len(out), len(x)))
	}
	if len(x) == 0 {
		return
	}
	switch {
	case useAVX512:
		geluTanhAVX512(&out[0], &x[0], len(x))
	case useAVX2:
		geluTanhAVX2(&out[0], &x[0], len(x))
	default:
		geluTanhGo(out, x)
	}
}

// GELUTanhBias adds the bias to x in place (x[i] += b[i], kept: the
// backward needs the pre-activation) and writes out[i] = GELUTanh(x[i]):
// one pass over x instead of Add then GELUTanh, with the same bits.
func GELUTanhBias(out, x, b []float32) {
	if len(out) < len(x) || len(b) < len(x) {
		panic(fmt.Sprintf("vec: GELUTanhBias lengths out %d, bias %d for %d inputs", len(out), len(b), len(x)))
	}
	if len(x) == 0 {
		return
	}
	switch {
	case useAVX512:
		geluTanhBiasAVX512(&out[0], &x[0], &b[0], len(x))
	case useAVX2:
		geluTanhBiasAVX2(&out[0], &x[0], &b[0], len(x))
	default:
		Add(x, b[:len(x)])
		geluTanhGo(out, x)
	}
}

// GELUTanhBackward writes dx[i] = dout[i] * gelu'(x[i]) (overwriting dx).
func GELUTanhBackward(dx, x, dout []float32) {
	if len(dx) < len(x) || len(dout) < len(x) {
		panic(fmt.Sprintf("vec: GELUTanhBackward lengths dx %d, dout %d for %d inputs", len(dx), len(dout), len(x)))
	}
	if len(x) == 0 {
		return
	}
	switch {
	case useAVX512:
		geluTanhBackwardAVX512(&dx[0], &x[0], &dout[0], len(x))
	case useAVX2:
		geluTanhBackwardAVX2(&dx[0], &x[0], &dout[0], len(x))
	default:
		geluTanhBackwardGo(dx, x, dout)
	}
}

// GELUTanhBackwardBias is GELUTanhBackward followed by db[i] += dx[i]
// (one row of the previous layer's bias gradient), in one pass, with the
// same bits as GELUTanhBackward then Add(db, dx).
func GELUTanhBackwardBias(dx, x, dout, db []float32) {
	if len(dx) < len(x) || len(dout) < len(x) || len(db) < len(x) {
		panic(fmt.Sprintf("vec: GELUTanhBackwardBias lengths dx %d, dout %d, db %d for %d inputs", len(dx), len(dout), len(db), len(x)))
	}
	if len(x) == 0 {
		return
	}
	switch {
	case useAVX512:
		geluTanhBackwardBiasAVX512(&dx[0], &x[0], &dout[0], &db[0], len(x))
	case useAVX2:
		geluTanhBackwardBiasAVX2(&dx[0], &x[0], &dout[0], &db[0], len(x))
	default:
		geluTanhBackwardGo(dx, x, dout)
		Add(db[:len(x)], dx[:len(x)])
	}
}

// AdamWStep holds the per-step scalars of an AdamW update (see AdamW).
type AdamWStep struct {
	Beta1, OneMinusBeta1 float32
	Beta2, OneMinusBeta2 float32
	Eps                  float32
	StepSize             float32 // lr / (1 - beta1^t)
	InvSqrtBC2           float32 // 1 / sqrt(1 - beta2^t)
	Decay                float32 // 1 - lr*weight_decay, or 1 without decay
	// GradScale multiplies each gradient as it is read (gradient clipping
	// fused into the update: the same float32 product a separate pass
	// would store, so the same bits); 0 means 1. g itself is not changed.
	GradScale float32
}

// AdamW applies one update to p with gradients g and moments m, v (all the
// same length), as torch.optim.AdamW computes it:
//
//	g = g*gradScale (in a register)
//	m = b1*m + (1-b1)*g ; v = b2*v + (1-b2)*g*g
//	p = p*decay - stepSize*m / (sqrt(v)*invSqrtBC2 + eps)
//
// The assembly uses the same operation order without fused multiply-adds,
// so it matches the portable loop to the bit.
func AdamW(p, g, m, v []float32, s *AdamWStep) {
	n := len(p)
	if len(g) != n || len(m) != n || len(v) != n {
		panic(fmt.Sprintf("vec: AdamW lengths p %d, g %d, m %d, v %d differ", n, len(g), len(m), len(v)))
	}
	if n == 0 {
		return
	}
	gs := s.GradScale
	if gs == 0 {
		gs = 1
	}
	switch {
	case useAVX512:
		adamwAVX512(&p[0], &g[0], &m[0], &v[0], n, s, gs)
	case useAVX2:
		adamwAVX2(&p[0], &g[0], &m[0], &v[0], n, s, gs)
	default:
		adamwGo(p, g, m, v, s, gs)
	}
}
