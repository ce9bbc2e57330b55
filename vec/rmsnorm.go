package vec

import (
	"fmt"
	"math"
)

// RMSNormRow normalizes one row by its root mean square: out = x*rstd*w
// with rstd = 1/sqrt(mean(x^2)+eps), returned for the backward. The
// assembly sums the squares in 16 float32 lanes (LayerNormRow's variance
// kernel with a zero mean), the portable path in float64; rows are model
// widths, where the two differ by rounding only.
func RMSNormRow(out, x, w []float32, eps float32) (rstd float32) {
	n := len(x)
	if len(out) < n || len(w) < n {
		panic(fmt.Sprintf("vec: RMSNormRow lengths out %d, w %d for %d inputs", len(out), len(w), n))
	}
	if n == 0 {
		return rmsNormRowGo(out, x, w, eps)
	}
	switch {
	case useAVX512:
		ms := sumSqDevAVX512(&x[0], n, 0) / float32(n)
		rstd = float32(1 / math.Sqrt(float64(ms)+float64(eps)))
		rmsScaleAVX512(&out[0], &x[0], &w[0], n, rstd)
	case useAVX2:
		ms := sumSqDevAVX2(&x[0], n, 0) / float32(n)
		rstd = float32(1 / math.Sqrt(float64(ms)+float64(eps)))
		rmsScaleAVX2(&out[0], &x[0], &w[0], n, rstd)
	default:
		return rmsNormRowGo(out, x, w, eps)
	}
	return rstd
}

// RMSNormBackwardDot returns a row's mean(dn*norm) with dn = w*dout and
// norm = x*rstd: the one statistic of the RMSNorm backward
// (LayerNormBackwardDots with a zero mean).
func RMSNormBackwardDot(dout, x, w []float32, rstd float32) (dnNormMean float32) {
	n := len(x)
	if len(dout) < n || len(w) < n {
		panic(fmt.Sprintf("vec: RMSNormBackwardDot lengths dout %d, w %d for %d inputs", len(dout), len(w), n))
	}
	if n == 0 {
		return 0
	}
	var s2 float32
	switch {
	case useAVX512:
		_, s2 = lnBwdDotsAVX512(&dout[0], &x[0], &w[0], n, 0, rstd)
	case useAVX2:
		_, s2 = lnBwdDotsAVX2(&dout[0], &x[0], &w[0], n, 0, rstd)
	default:
		return rmsNormBackwardDotGo(dout, x, w, rstd)
	}
	return s2 / float32(n)
}

// RMSNormBackwardDx accumulates the RMSNorm input gradient,
// dx += rstd*(w*dout - norm*dnNormMean) with norm = x*rstd, given the
// row's RMSNormBackwardDot. Element-wise: any range of a row's columns
// gives the bits of the whole-row call.
func RMSNormBackwardDx(dx, dout, x, w []float32, rstd, dnNormMean float32) {
	n := len(x)
	if len(dx) < n || len(dout) < n || len(w) < n {
		panic(fmt.Sprintf("vec: RMSNormBackwardDx lengths dx %d, dout %d, w %d for %d inputs", len(dx), len(dout), len(w), n))
	}
	if n == 0 {
		return
	}
	switch {
	case useAVX512:
		lnBwdDxAVX512(&dx[0], &dout[0], &x[0], &w[0], n, 0, rstd, 0, dnNormMean)
	case useAVX2:
		lnBwdDxAVX2(&dx[0], &dout[0], &x[0], &w[0], n, 0, rstd, 0, dnNormMean)
	default:
		rmsNormBackwardDxGo(dx, dout, x, w, rstd, dnNormMean)
	}
}

// RMSNormBackwardParams accumulates one row's weight gradient,
// dw += x*rstd*dout. Element-wise, like RMSNormBackwardDx.
func RMSNormBackwardParams(dw, dout, x []float32, rstd float32) {
	n := len(x)
	if len(dw) < n || len(dout) < n {
		panic(fmt.Sprintf("vec: RMSNormBackwardParams lengths dw %d, dout %d for %d inputs", len(dw), len(dout), n))
	}
	if n == 0 {
		return
	}
	switch {
	case useAVX512:
		rmsBwdParamsAVX512(&dw[0], &dout[0], &x[0], n, rstd)
	case useAVX2:
		rmsBwdParamsAVX2(&dw[0], &dout[0], &x[0], n, rstd)
	default:
		rmsNormBackwardParamsGo(dw, dout, x, rstd)
	}
}

func rmsNormRowGo(out, x, w []float32, eps float32) float32 {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	s := float32(1 / math.Sqrt(ss/float64(max(len(x), 1))+float64(eps)))
	for i, v := range x {
		out[i] = v * s * w[i]
	}
	return s
}

func rmsNormBackwardDotGo(dout, x, w []float32, rstd float32) float32 {
	var s2 float32
	for i := range x {
		s2 += (w[i] * dout[i]) * (x[i] * rstd)
	}
	return s2 / float32(max(len(x), 1))
}

func rmsNormBackwardDxGo(dx, dout, x, w []float32, rstd, dnNormMean float32) {
	for i := range x {
		norm := x[i] * rstd
		dx[i] += rstd * (w[i]*dout[i] - norm*dnNormMean)
	}
}

func rmsNormBackwardParamsGo(dw, dout, x []float32, rstd float32) {
	for i := range x {
		dw[i] += x[i] * rstd * dout[i]
	}
}
