package vec

import "math"

const (
	sqrt2OverPi = 0.7978845608028654
	geluCoef    = 0.044715
)

func expShiftSumGo(x []float32, shift float32) float32 {
	var sum float32
	for i, v := range x {
		e := float32(math.Exp(float64(v - shift)))
		x[i] = e
		sum += e
	}
	return sum
}

func geluTanhGo(out, x []float32) {
	for i, v := range x {
		xf := float64(v)
		out[i] = float32(0.5 * xf * (1 + math.Tanh(sqrt2OverPi*(xf+geluCoef*xf*xf*xf))))
	}
}

func geluTanhBackwardGo(dx, x, dout []float32) {
	for i, v := range x {
		xf := float64(v)
		u := sqrt2OverPi * (xf + geluCoef*xf*xf*xf)
		th := math.Tanh(u)
		g := 0.5*(1+th) + 0.5*xf*(1-th*th)*sqrt2OverPi*(1+3*geluCoef*xf*xf)
		dx[i] = float32(g) * dout[i]
	}
}

func adamwGo(p, g, m, v []float32, s *AdamWStep, gradScale float32) {
	for i := range p {
		gi := g[i] * gradScale
		mi := s.Beta1*m[i] + s.OneMinusBeta1*gi
		vi := s.Beta2*v[i] + s.OneMinusBeta2*gi*gi
		m[i], v[i] = mi, vi
		denom := float32(math.Sqrt(float64(vi)))*s.InvSqrtBC2 + s.Eps
		p[i] = p[i]*s.Decay - s.StepSize*mi/denom
	}
}
