package vec

import (
	"fmt"
	"math"
)

// LayerNormRow normalizes one row: out = (x-mean)*rstd*w + b with
// rstd = 1/sqrt(var(x)+eps), and returns mean and rstd for the backward.
// The statistics are summed in float32 lanes (float64 in the portable
// path); rows are model widths (hundreds to thousands), where the two
// differ by rounding only.
func LayerNormRow(out, x, w, b []float32, eps float32) (mean, rstd float32) {
	n := len(x)
	if len(out) < n || len(w) < n || len(b) < n {
		panic(fmt.Sprintf("vec: LayerNormRow lengths out %d, w %d, b %d for %d inputs", len(out), len(w), len(b), n))
	}
	if n == 0 {
		return layerNormRowGo(out, x, w, b, eps)
	}
	switch {
	case useAVX512:
		mean = sumAVX512(&x[0], n) / float32(n)
		v := sumSqDevAVX512(&x[0], n, mean) / float32(n)
		rstd = float32(1 / math.Sqrt(float64(v)+float64(eps)))
		normAffineAVX512(&out[0], &x[0], &w[0], &b[0], n, mean, rstd)
	case useAVX2:
		mean = sumAVX2(&x[0], n) / float32(n)
		v := sumSqDevAVX2(&x[0], n, mean) / float32(n)
		rstd = float32(1 / math.Sqrt(float64(v)+float64(eps)))
		normAffineAVX2(&out[0], &x[0], &w[0], &b[0], n, mean, rstd)
	default:
		return layerNormRowGo(out, x, w, b, eps)
	}
	return mean, rstd
}

// LayerNormBackwardRow accumulates one row's gradients given the forward's
// mean and rstd, with norm = (x-mean)*rstd and dn = w*dout:
//
//	db += dout ; dw += norm*dout
//	dx += rstd * (dn - mean(dn) - norm*mean(dn*norm))
func LayerNormBackwardRow(dx, dw, db, dout, x, w []float32, mean, rstd float32) {
	n := len(x)
	if len(dx) < n || len(dw) < n || len(db) < n || len(dout) < n || len(w) < n {
		panic(fmt.Sprintf("vec: LayerNormBackwardRow lengths dx %d, dw %d, db %d, dout %d, w %d for %d inputs", len(dx), len(dw), len(db), len(dout), len(w), n))
	}
	if n == 0 {
		return
	}
	switch {
	case useAVX512:
		s1, s2 := lnBwdDotsAVX512(&dout[0], &x[0], &w[0], n, mean, rstd)
		lnBwdApplyAVX512(&dx[0], &dw[0], &db[0], &dout[0], &x[0], &w[0], n, mean, rstd, s1/float32(n), s2/float32(n))
	case useAVX2:
		s1, s2 := lnBwdDotsAVX2(&dout[0], &x[0], &w[0], n, mean, rstd)
		lnBwdApplyAVX2(&dx[0], &dw[0], &db[0], &dout[0], &x[0], &w[0], n, mean, rstd, s1/float32(n), s2/float32(n))
	default:
		layerNormBackwardRowGo(dx, dw, db, dout, x, w, mean, rstd)
	}
}

// LayerNormBackwardDots returns a row's mean(dn) and mean(dn*norm), with
// dn = w*dout and norm = (x-mean)*rstd: the statistics
// LayerNormBackwardRow computes first (same bits).
func LayerNormBackwardDots(dout, x, w []float32, mean, rstd float32) (dnMean, dnNormMean float32) {
	n := len(x)
	if len(dout) < n || len(w) < n {
		panic(fmt.Sprintf("vec: LayerNormBackwardDots lengths dout %d, w %d for %d inputs", len(dout), len(w), n))
	}
	if n == 0 {
		return 0, 0
	}
	var s1, s2 float32
	switch {
	case useAVX512:
		s1, s2 = lnBwdDotsAVX512(&dout[0], &x[0], &w[0], n, mean, rstd)
	case useAVX2:
		s1, s2 = lnBwdDotsAVX2(&dout[0], &x[0], &w[0], n, mean, rstd)
	default:
		for i := range x {
			norm := (x[i] - mean) * rstd
			dn := w[i] * dout[i]
			s1 += dn
			s2 += dn * norm
		}
	}
	return s1 / float32(n), s2 / float32(n)
}

// LayerNormBackwardDx accumulates LayerNormBackwardRow's input gradient,
// dx += rstd*(w*dout - dnMean - norm*dnNormMean), given the row's
// statistics (LayerNormBackwardDots). Element-wise: it may be called on any
// range of a row's columns, with the same bits as the whole-row call.
func LayerNormBackwardDx(dx, dout, x, w []float32, mean, rstd, dnMean, dnNormMean float32) {
	n := len(x)
	if len(dx) < n || len(dout) < n || len(w) < n {
		panic(fmt.Sprintf("vec: LayerNormBackwardDx lengths dx %d, dout %d, w %d for %d inputs", len(dx), len(dout), len(w), n))
	}
	if n == 0 {
		return
	}
	switch {
	case useAVX512:
		lnBwdDxAVX512(&dx[0], &dout[0], &x[0], &w[0], n, mean, rstd, dnMean, dnNormMean)
	case useAVX2:
		lnBwdDxAVX2(&dx[0], &dout[0], &x[0], &w[0], n, mean, rstd, dnMean, dnNormMean)
	default:
		for i := range x {
			norm := (x[i] - mean) * rstd
			dx[i] += rstd * (w[i]*dout[i] - dnMean - norm*dnNormMean)
		}
	}
}

// LayerNormBackwardParams accumulates LayerNormBackwardRow's parameter
// gradients for one row, db += dout and dw += norm*dout. Element-wise, like
// LayerNormBackwardDx: any column range, the same bits.
func LayerNormBackwardParams(dw, db, dout, x []float32, mean, rstd float32) {
	n := len(x)
	if len(dw) < n || len(db) < n || len(dout) < n {
		panic(fmt.Sprintf("vec: LayerNormBackwardParams lengths dw %d, db %d, dout %d for %d inputs", len(dw), len(db), len(dout), n))
	}
	if n == 0 {
		return
	}
	switch {
	case useAVX512:
		lnBwdParamsAVX512(&dw[0], &db[0], &dout[0], &x[0], n, mean, rstd)
	case useAVX2:
		lnBwdParamsAVX2(&dw[0], &db[0], &dout[0], &x[0], n, mean, rstd)
	default:
		for i := range x {
			norm := (x[i] - mean) * rstd
			db[i] += dout[i]
			dw[i] += norm * dout[i]
		}
	}
}

func layerNormRowGo(out, x, w, b []float32, eps float32) (float32, float32) {
	var m float64
	for _, v := range x {
		m += float64(v)
	}
	m /= float64(len(x))
	var v2 float64
	for _, v := range x {
		d := float64(v) - m
		v2 += d * d
	}
	v2 /= float64(len(x))
	mf, sf := float32(m), float32(1/math.Sqrt(v2+float64(eps)))
	for i, v := range x {
		out[i] = (v-mf)*sf*w[i] + b[i]
	}
	return mf, sf
}

func layerNormBackwardRowGo(dx, dw, db, dout, x, w []float32, m, s float32) {
	var dnMean, dnNormMean float32
	for i := range x {
		norm := (x[i] - m) * s
		dn := w[i] * dout[i]
		dnMean += dn
		dnNormMean += dn * norm
	}
	dnMean /= float32(len(x))
	dnNormMean /= float32(len(x))
	for i := range x {
		norm := (x[i] - m) * s
		db[i] += dout[i]
		dw[i] += norm * dout[i]
		dx[i] += s * (w[i]*dout[i] - dnMean - norm*dnNormMean)
	}
}
