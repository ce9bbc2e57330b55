package model

import "math"

// sigmoid32 is 1/(1+e^-x) in float32 arithmetic, with e^x from Cephes'
// expf (range reduction by ln 2 in two parts, a degree-6 polynomial on
// [-ln2/2, ln2/2]; within 2 ulp of the exact value). SwiGLU calls it for
// every element of the MLP's hidden width, where a float64 math.Exp per
// element was a fifth of a Llama training step.
func sigmoid32(x float32) float32 {
	return 1 / (1 + exp32(-x))
}

const (
	log2e32 = 1.44269504088896341
	ln2hi32 = 0.693359375
	ln2lo32 = -2.12194440e-4
)

// exp32 is e^x in float32 (0 below -87.3, +Inf above 88: the sigmoid
// needs neither end exactly).
func exp32(x float32) float32 {
	switch {
	case x > 88:
		return float32(math.Inf(1))
	case x < -87.33654475055310:
		return 0 // below the smallest normal: the sigmoid is 1 anyway
	case x != x:
		return x
	}
	// x = n ln2 + r, |r| <= ln2/2
	fn := float32(math.Floor(float64(log2e32*x + 0.5)))
	r := x - fn*ln2hi32 - fn*ln2lo32
	p := float32(1.9875691500e-4)
	p = p*r + 1.3981999507e-3
	p = p*r + 8.3334519073e-3
	p = p*r + 4.1665795894e-2
	p = p*r + 1.6666665459e-1
	p = p*r + 5.0000001201e-1
	e := p*r*r + r + 1
	return e * math.Float32frombits(uint32(int32(fn)+127)<<23)
}
