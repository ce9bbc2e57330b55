package vec

import (
	"fmt"
	"math"
)

// SwiGLU writes out[i] = silu(gate[i]) * up[i] with silu(g) = g/(1+e^-g),
// the activation of a Llama MLP (gate and up are the two halves of the
// fused c_fc output row). The quotient is one division, so silu has one
// rounding after the exponential. The AVX2 path gives the AVX-512 bits;
// the portable Go path differs from them by float rounding only (no fused
// multiply-adds in its exponential).
func SwiGLU(out, gate, up []float32) {
	n := len(gate)
	if len(out) < n || len(up) < n {
		panic(fmt.Sprintf("vec: SwiGLU lengths out %d, up %d for %d gates", len(out), len(up), n))
	}
	if n == 0 {
		return
	}
	switch {
	case useAVX512:
		swigluAVX512(&out[0], &gate[0], &up[0], n)
	case useAVX2:
		swigluAVX2(&out[0], &gate[0], &up[0], n)
	default:
		swigluGo(out, gate, up)
	}
}

// SwiGLUBackward writes the gradients of SwiGLU's inputs from its output
// gradient dout, overwriting dgate and dup:
//
//	e = e^-g, s = 1/(1+e), silu = g/(1+e) (SwiGLU's value)
//	dup[i]   = dout[i] * silu
//	dgate[i] = dout[i]*up[i] * (s + silu*(1-s))   (d silu/dg)
//
// with 1-s computed as e*s, which has no cancellation when s is near 1.
// The exponential is recomputed rather than kept from the forward pass:
// it costs less than writing and reading back a sigmoid per element. Same
// bits on AVX2 as on AVX-512; the portable Go path differs by rounding.
func SwiGLUBackward(dgate, dup, gate, up, dout []float32) {
	n := len(gate)
	if len(dgate) < n || len(dup) < n || len(up) < n || len(dout) < n {
		panic(fmt.Sprintf("vec: SwiGLUBackward lengths dgate %d, dup %d, up %d, dout %d for %d gates",
			len(dgate), len(dup), len(up), len(dout), n))
	}
	if n == 0 {
		return
	}
	switch {
	case useAVX512:
		swigluBackwardAVX512(&dgate[0], &dup[0], &gate[0], &up[0], &dout[0], n)
	case useAVX2:
		swigluBackwardAVX2(&dgate[0], &dup[0], &gate[0], &up[0], &dout[0], n)
	default:
		swigluBackwardGo(dgate, dup, gate, up, dout)
	}
}

func swigluGo(out, gate, up []float32) {
	up = up[:len(gate)]
	out = out[:len(gate)]
	for i, g := range gate {
		out[i] = g / (1 + exp32(-g)) * up[i]
	}
}

func swigluBackwardGo(dgate, dup, gate, up, dout []float32) {
	n := len(gate)
	dgate, dup, up, dout = dgate[:n], dup[:n], up[:n], dout[:n]
	for i, g := range gate {
		e := exp32(-g)
		d1 := 1 + e
		s := 1 / d1
		silu := g / d1
		dup[i] = dout[i] * silu
		dgate[i] = dout[i] * up[i] * (s + silu*(e*s))
	}
}

// Cephes expf, the constants of the assembly's EXP (vec_amd64.s).
const (
	expHi   = 88.72283
	expLo   = -87.33654
	log2e32 = 1.44269504
	ln2Hi32 = 0.693359375
	ln2Lo32 = -2.12194440e-4
)

// exp32 is e^x in float32 as the assembly computes it: x clamped to
// [-87.34, 88.72] (so never 0 or +Inf), n = round-half-even(x*log2e),
// r = x - n*ln2 in two parts, e^r = 1 + r + r^2*p(r) with Cephes' degree-5
// p, and the product with 2^n rounded once (as VSCALEFPS). Without fused
// multiply-adds, so within an ulp or two of the assembly, not its bits.
func exp32(x float32) float32 {
	if x < expLo {
		x = expLo
	}
	if x > expHi {
		x = expHi
	}
	// round half to even by the float32 magic-number trick: |x*log2e| <=
	// 128, so adding 1.5*2^23 leaves no fraction bits
	const magic = 1 << 23 * 1.5
	t := x * log2e32
	fn := (t + magic) - magic
	r := x - fn*ln2Hi32
	r -= fn * ln2Lo32
	p := float32(1.9875691500e-4)
	p = p*r + 1.3981999507e-3
	p = p*r + 8.3334519073e-3
	p = p*r + 4.1665795894e-2
	p = p*r + 1.6666665459e-1
	p = p*r + 5.0000001201e-1
	e := p*(r*r) + r + 1
	// 2^n for n in [-126, 128] is exact in float64; one rounding to float32.
	return float32(float64(e) * math.Float64frombits(uint64(int64(fn)+1023)<<52))
}
