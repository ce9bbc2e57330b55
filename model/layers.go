package model

import (
	"math"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/vec"
)

// This file holds the layers as pairs of plain functions over flat slices.
// Shapes: N = B*T rows, C channels, OC output channels, V vocabulary.
// Backward functions ACCUMULATE into parameter gradients (so micro-batches
// add up) and into dinp where noted; they never allocate.

// EmbeddingForward: out[n,:] = wte[tok[n],:] + wpe[n%T,:] (wpe may be nil).
// tok (B*T), wte (V, C), wpe (maxT, C), out (B*T, C).
func EmbeddingForward(out []float32, tok []int32, wte, wpe []float32, B, T, C int) {
	for n := 0; n < B*T; n++ {
		o := out[n*C : (n+1)*C]
		copy(o, wte[int(tok[n])*C:int(tok[n]+1)*C])
		if wpe != nil {
			p := wpe[(n%T)*C : (n%T+1)*C]
			for i := range o {
				o[i] += p[i]
			}
		}
	}
}

// EmbeddingBackward: dwte[tok[n],:] += dout[n,:]; dwpe[t,:] += dout[n,:].
// Rows are visited in order, so the result is deterministic.
func EmbeddingBackward(dwte, dwpe, dout []float32, tok []int32, B, T, C int) {
	for n := 0; n < B*T; n++ {
		d := dout[n*C : (n+1)*C]
		w := dwte[int(tok[n])*C : int(tok[n]+1)*C]
		for i := range d {
			w[i] += d[i]
		}
		if dwpe != nil {
			p := dwpe[(n%T)*C : (n%T+1)*C]
			for i := range d {
				p[i] += d[i]
			}
		}
	}
}

// LayerNormForward: out = (x-mean)/sqrt(var+eps)*w + b per row. It keeps
// mean and rstd (N) for backward. b may be nil (RMS-style callers use RMSNorm).
func LayerNormForward(out, mean, rstd, inp, w, b []float32, N, C int, eps float32) {
	if b != nil {
		for n := 0; n < N; n++ {
			mean[n], rstd[n] = vec.LayerNormRow(out[n*C:(n+1)*C], inp[n*C:(n+1)*C], w, b, eps)
		}
		return
	}
	for n := 0; n < N; n++ {
		x := inp[n*C : (n+1)*C]
		var m float64
		for _, v := range x {
			m += float64(v)
		}
		m /= float64(C)
		var v2 float64
		for _, v := range x {
			d := float64(v) - m
			v2 += d * d
		}
		v2 /= float64(C)
		s := 1 / math.Sqrt(v2+float64(eps))
		mf, sf := float32(m), float32(s)
		o := out[n*C : (n+1)*C]
		for i, v := range x {
			o[i] = (v - mf) * sf * w[i]
			if b != nil {
				o[i] += b[i]
			}
		}
		mean[n], rstd[n] = mf, sf
	}
}

// LayerNormBackward accumulates dinp, dw and db (db may be nil).
func LayerNormBackward(dinp, dw, db, dout, inp, w, mean, rstd []float32, N, C int) {
	if db != nil {
		for n := 0; n < N; n++ {
			r := n * C
			vec.LayerNormBackwardRow(dinp[r:r+C], dw, db, dout[r:r+C], inp[r:r+C], w, mean[n], rstd[n])
		}
		return
	}
	for n := 0; n < N; n++ {
		x := inp[n*C : (n+1)*C]
		d := dout[n*C : (n+1)*C]
		m, s := mean[n], rstd[n]
		var dnMean, dnNormMean float32
		for i := range x {
			norm := (x[i] - m) * s
			dn := w[i] * d[i]
			dnMean += dn
			dnNormMean += dn * norm
		}
		dnMean /= float32(C)
		dnNormMean /= float32(C)
		di := dinp[n*C : (n+1)*C]
		for i := range x {
			norm := (x[i] - m) * s
			dn := w[i] * d[i]
			if db != nil {
				db[i] += d[i]
			}
			dw[i] += norm * d[i]
			di[i] += s * (dn - dnMean - norm*dnNormMean)
		}
	}
}

// RMSNormForward: out = x/sqrt(mean(x^2)+eps)*w per row (vec.RMSNormRow);
// rstd (N) is kept for the backward.
func RMSNormForward(out, rstd, inp, w []float32, N, C int, eps float32) {
	for n := 0; n < N; n++ {
		rstd[n] = vec.RMSNormRow(out[n*C:(n+1)*C], inp[n*C:(n+1)*C], w, eps)
	}
}

// RMSNormBackward accumulates dinp and dw: with norm = x*rstd and
// dn = w*dout, dinp += rstd*(dn - norm*mean(dn*norm)), dw += norm*dout
// (rows in order).
func RMSNormBackward(dinp, dw, dout, inp, w, rstd []float32, N, C int) {
	for n := 0; n < N; n++ {
		r := n * C
		x, d := inp[r:r+C], dout[r:r+C]
		dot := vec.RMSNormBackwardDot(d, x, w, rstd[n])
		vec.RMSNormBackwardDx(dinp[r:r+C], d, x, w, rstd[n], dot)
		vec.RMSNormBackwardParams(dw, d, x, rstd[n])
	}
}

// LinearForward: out (N, OC) = inp (N, C) @ w (C, OC) + b (OC); b may be nil.
func LinearForward(e *gemm.Engine, out, inp, w, b []float32, N, C, OC int) {
	e.Sgemm(false, false, N, OC, C, 1, inp, C, w, OC, 0, out, OC)
	if b != nil {
		for n := 0; n < N; n++ {
			vec.Add(out[n*OC:(n+1)*OC], b)
		}
	}
}

// LinearBackward: dinp = dout @ w^T (overwritten, or accumulated when
// accumulate is true), dw += inp^T @ dout, db += column sums of dout.
func LinearBackward(e *gemm.Engine, dinp, dw, db, dout, inp, w []float32, N, C, OC int, accumulate bool) {
	var beta float32
	if accumulate {
		beta = 1
	}
	if dinp != nil {
		e.Sgemm(false, true, N, C, OC, 1, dout, OC, w, OC, beta, dinp, C)
	}
	if dw != nil { // nil: a frozen weight (LoRA)
		e.Sgemm(true, false, C, OC, N, 1, inp, C, dout, OC, 1, dw, OC)
	}
	if db != nil {
		for n := 0; n < N; n++ {
			vec.Add(db[:OC], dout[n*OC:(n+1)*OC])
		}
	}
}

const (
	sqrt2OverPi = 0.7978845608028654
	geluCoef    = 0.044715
	invSqrt2    = 0.7071067811865476
	invSqrt2Pi  = 0.3989422804014327
)

// GELUForward applies GELU elementwise (tanh approximation or exact erf).
func GELUForward(out, inp []float32, exact bool) {
	if !exact {
		vec.GELUTanh(out, inp) // AVX-512 where available
		return
	}
	for i, x := range inp {
		xf := float64(x)
		if exact {
			out[i] = float32(0.5 * xf * (1 + math.Erf(xf*invSqrt2)))
		} else {
			out[i] = float32(0.5 * xf * (1 + math.Tanh(sqrt2OverPi*(xf+geluCoef*xf*xf*xf))))
		}
	}
}

// GELUBackward: dinp = dout * gelu'(inp) (overwrites dinp).
func GELUBackward(dinp, inp, dout []float32, exact bool) {
	if !exact {
		vec.GELUTanhBackward(dinp, inp, dout)
		return
	}
	for i, x := range inp {
		xf := float64(x)
		var g float64
		if exact {
			g = 0.5*(1+math.Erf(xf*invSqrt2)) + xf*invSqrt2Pi*math.Exp(-0.5*xf*xf)
		} else {
			u := sqrt2OverPi * (xf + geluCoef*xf*xf*xf)
			th := math.Tanh(u)
			sech2 := 1 - th*th
			g = 0.5*(1+th) + 0.5*xf*sech2*sqrt2OverPi*(1+3*geluCoef*xf*xf)
		}
		dinp[i] = float32(g) * dout[i]
	}
}

// SwiGLUForward: inp (N, 2H) holds [gate | up] per row; out (N, H) =
// silu(gate)*up, silu(g) = g/(1+e^-g) (vec.SwiGLU: AVX-512 or AVX2 where
// available, float32 Cephes exponential).
func SwiGLUForward(out, inp []float32, N, H int) {
	for n := 0; n < N; n++ {
		row := inp[n*2*H : (n+1)*2*H]
		vec.SwiGLU(out[n*H:(n+1)*H], row[:H], row[H:])
	}
}

// SwiGLUBackward: dinp (N, 2H) = [dgate | dup] (overwritten) from the
// forward's input inp (N, 2H) and the output gradient dout (N, H); the
// sigmoid is recomputed (vec.SwiGLUBackward).
func SwiGLUBackward(dinp, inp, dout []float32, N, H int) {
	for n := 0; n < N; n++ {
		row, drow := inp[n*2*H:(n+1)*2*H], dinp[n*2*H:(n+1)*2*H]
		vec.SwiGLUBackward(drow[:H], drow[H:], row[:H], row[H:], dout[n*H:(n+1)*H])
	}
}

// ResidualAdd: out += inp, elementwise.
func ResidualAdd(out, inp []float32) {
	vec.Add(out, inp) // AVX-512 where available; same bits
}

// IgnoreIndex marks a target position that contributes no loss (as in
// PyTorch's cross_entropy ignore_index).
const IgnoreIndex = -100

// CrossEntropyForward turns logits (N, V) into probabilities in place
// (softmax) and writes each row's loss -log p[target] to losses (N); rows
// whose target is IgnoreIndex get loss 0. It returns the sum of losses and
// the number of counted rows.
func CrossEntropyForward(losses, logits []float32, targets []int32, N, V int) (sum float64, count int) {
	for n := 0; n < N; n++ {
		row := logits[n*V : (n+1)*V]
		mx := row[0]
		for _, v := range row[1:] {
			if v > mx {
				mx = v
			}
		}
		t := targets[n]
		var xt float32
		if t != IgnoreIndex {
			xt = row[t]
		}
		var z float64
		for i, v := range row {
			e := math.Exp(float64(v - mx))
			row[i] = float32(e)
			z += e
		}
		inv := 1 / z
		var loss float64
		if t != IgnoreIndex {
			// -log(softmax_t) = log(z) - (x_t - max), exact even when p_t underflows.
			loss = math.Log(z) - float64(xt-mx)
			count++
		}
		for i := range row {
			row[i] = float32(float64(row[i]) * inv)
		}
		losses[n] = float32(loss)
		sum += loss
	}
	return sum, count
}

// CrossEntropyBackward overwrites probs (N, V) with dlogits =
// scale*(probs - onehot(target)); ignored rows become zero.
func CrossEntropyBackward(probs []float32, targets []int32, N, V int, scale float32) {
	for n := 0; n < N; n++ {
		row := probs[n*V : (n+1)*V]
		t := targets[n]
		if t == IgnoreIndex {
			clear(row)
			continue
		}
		for i := range row {
			row[i] *= scale
		}
		row[t] -= scale
	}
}
