package vec

import "math"

// simdLen is how many of n elements the 16-float assembly kernels below
// take (the callers finish the rest in Go): n rounded down to a multiple
// of 16 when the CPU runs either assembly path, else 0.
func simdLen(n int) int {
	if useAVX512 || useAVX2 {
		return n &^ 15
	}
	return 0
}

// Max is the largest element of x (-Inf for an empty x): a softmax shift.
// With NaNs in x the result is unspecified; -0 and +0 may come back either
// way (a shift by either gives the same exponentials).
func Max(x []float32) float32 {
	m := float32(math.Inf(-1))
	n := simdLen(len(x))
	switch {
	case n == 0:
	case useAVX512:
		m = maxAVX512(&x[0], n)
	case useAVX2:
		m = maxAVX2(&x[0], n)
	}
	for _, v := range x[n:] {
		if v > m {
			m = v
		}
	}
	return m
}

// SubMul sets d[i] = p[i] * (d[i] - c): the softmax backward's
// ds = p * (dp - D) per row. Two roundings per element on every path (no
// fused multiply-add): the same bits.
func SubMul(d, p []float32, c float32) {
	p = p[:len(d)]
	n := simdLen(len(d))
	switch {
	case n == 0:
	case useAVX512:
		subMulAVX512(&d[0], &p[0], n, c)
	case useAVX2:
		subMulAVX2(&d[0], &p[0], n, c)
	}
	for i := n; i < len(d); i++ {
		d[i] = p[i] * (d[i] - c)
	}
}

// Scale multiplies x[i] by s in float32 (one rounding per element on every
// path: the same bits).
func Scale(x []float32, s float32) {
	n := simdLen(len(x))
	switch {
	case n == 0:
	case useAVX512:
		scaleAVX512(&x[0], n, s)
	case useAVX2:
		scaleAVX2(&x[0], n, s)
	}
	for i := n; i < len(x); i++ {
		x[i] *= s
	}
}

// ScaleF64 sets x[i] = float32(float64(x[i]) * s): the product in float64,
// rounded once to float32 (softmax normalization by 1/sum kept in float64).
// Every path gives the same bits.
func ScaleF64(x []float32, s float64) {
	n := simdLen(len(x))
	switch {
	case n == 0:
	case useAVX512:
		scaleF64AVX512(&x[0], n, s)
	case useAVX2:
		scaleF64AVX2(&x[0], n, s)
	}
	for i := n; i < len(x); i++ {
		x[i] = float32(float64(x[i]) * s)
	}
}

// SumSquares is the sum of x[i]^2 in float64 (gradient norms). The order
// is fixed by the length alone: 16 running sums (element i into sum i%16)
// over the first len&^15 elements, combined pairwise (j with j+8, then
// j+4, j+2, j+1), then the remaining elements in order. Each square of a
// float32 is exact in float64. All three paths give the same bits.
func SumSquares(x []float32) float64 {
	n := len(x) &^ 15
	var s float64
	if n > 0 {
		switch {
		case useAVX512:
			s = sumSquaresAVX512(&x[0], n)
		case useAVX2:
			s = sumSquaresAVX2(&x[0], n)
		default:
			s = sumSquaresGo(x[:n])
		}
	}
	for _, v := range x[n:] {
		s += float64(v) * float64(v)
	}
	return s
}

// sumSquaresGo is the portable SumSquares of a multiple of 16 values, in
// the assembly's order.
func sumSquaresGo(x []float32) float64 {
	var a [16]float64
	for i := 0; i < len(x); i += 16 {
		for j := range a {
			v := float64(x[i+j])
			a[j] += v * v
		}
	}
	for w := 8; w >= 1; w /= 2 {
		for j := 0; j < w; j++ {
			a[j] += a[j+w]
		}
	}
	return a[0]
}
