package model

import (
	"fmt"
	"math"

	"github.com/strand-ml/strand/vec"
)

// This file holds the position encodings that live inside attention:
// rotary embeddings (RoPE, with linear / NTK-aware / YaRN scaling for
// longer contexts) and ALiBi's linear biases. Learned absolute positions
// (wpe) are an embedding and live in layers.go.
//
// RoPE convention: head dimension i is paired with i+HS/2 (the GPT-NeoX /
// Hugging Face LLaMA "rotate_half" layout, not interleaved pairs). For a
// head vector x at position p, with half = HS/2 and i < half:
//
//	theta_i = p * invFreq[i],   invFreq[i] = base^(-2i/HS) (before scaling)
//	y[i]      = x[i]*cos(theta_i) - x[i+half]*sin(theta_i)
//	y[i+half] = x[i+half]*cos(theta_i) + x[i]*sin(theta_i)
//
// times an attention temperature mscale (1 except for YaRN), applied to both
// q and k as Hugging Face does, so scores scale by mscale^2.

// Rotary holds RoPE's cos/sin tables for positions [0, Len).
type Rotary struct {
	HS      int       // head width
	InvFreq []float64 // (HS/2) rotation frequencies after scaling
	MScale  float64   // YaRN attention temperature (1 otherwise)
	cos     []float32 // (Len, HS/2) mscale*cos(p*invFreq[i])
	sin     []float32 // (Len, HS/2) mscale*sin(p*invFreq[i])
	n       int
}

// RopeFrequencies returns the per-pair rotation frequencies (HS/2) and the
// attention temperature of cfg's RoPE, with its rope_scaling applied:
//   - linear: invFreq / factor (positions squeezed into the trained range);
//   - ntk: base * factor^(HS/(HS-2)), which stretches the low frequencies
//     about factor times while leaving the highest nearly alone;
//   - llama3: wavelengths longer than original/low_freq_factor divided by
//     factor, shorter than original/high_freq_factor kept, a linear blend
//     in between (Llama 3.1);
//   - yarn: per pair, a ramp between interpolation (invFreq/factor, for
//     wavelengths longer than the original context over beta_slow
//     rotations) and extrapolation (unchanged, for pairs that rotate more
//     than beta_fast times within it), plus mscale = 0.1*ln(factor) + 1.
//
// YaRN follows Hugging Face's _compute_yarn_parameters.
func RopeFrequencies(cfg Config) (invFreq []float64, mscale float64) {
	d := cfg.HeadDim()
	half := d / 2
	base := cfg.RopeBase()
	s := cfg.RopeScaling
	if s != nil && s.Type == ScaleNTK {
		base *= math.Pow(s.Factor, float64(d)/float64(d-2))
	}
	invFreq = make([]float64, half)
	for i := range invFreq {
		invFreq[i] = math.Pow(base, -float64(2*i)/float64(d))
	}
	mscale = 1
	if s == nil {
		return invFreq, mscale
	}
	switch s.Type {
	case ScaleLinear:
		for i := range invFreq {
			invFreq[i] /= s.Factor
		}
	case ScaleYaRN:
		orig := s.OriginalMaxPositionEmbeddings
		if orig == 0 {
			orig = cfg.NPositions
		}
		betaFast, betaSlow := s.BetaFast, s.BetaSlow
		if betaFast == 0 {
			betaFast = 32
		}
		if betaSlow == 0 {
			betaSlow = 1
		}
		// the pair index whose wavelength fits `rot` rotations in orig positions
		corr := func(rot float64) float64 {
			return float64(d) * math.Log(float64(orig)/(rot*2*math.Pi)) / (2 * math.Log(base))
		}
		low := math.Max(math.Floor(corr(betaFast)), 0)
		high := math.Min(math.Ceil(corr(betaSlow)), float64(d-1))
		if low == high {
			high += 0.001
		}
		for i := range invFreq {
			ramp := math.Min(math.Max((float64(i)-low)/(high-low), 0), 1)
			extrap := 1 - ramp // 1: keep the frequency, 0: interpolate it
			invFreq[i] = invFreq[i]/s.Factor*(1-extrap) + invFreq[i]*extrap
		}
		if s.Factor > 1 {
			mscale = 0.1*math.Log(s.Factor) + 1
		}
	case ScaleLlama3:
		// Hugging Face's _compute_llama3_parameters
		orig := float64(s.OriginalMaxPositionEmbeddings)
		lowWave, highWave := orig/s.LowFreqFactor, orig/s.HighFreqFactor
		for i, f := range invFreq {
			wave := 2 * math.Pi / f
			switch {
			case wave > lowWave:
				invFreq[i] = f / s.Factor
			case wave < highWave:
			default:
				smooth := (orig/wave - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor)
				invFreq[i] = (1-smooth)*f/s.Factor + smooth*f
			}
		}
	}
	return invFreq, mscale
}

// NewRotary builds the tables of cfg's RoPE for positions [0, n).
func NewRotary(cfg Config, n int) (*Rotary, error) {
	if cfg.Position != PosRoPE {
		return nil, fmt.Errorf("rotary: model position is %q, not %s", cfg.Position, PosRoPE)
	}
	if n <= 0 {
		return nil, fmt.Errorf("rotary: %d positions must be positive", n)
	}
	inv, ms := RopeFrequencies(cfg)
	half := len(inv)
	r := &Rotary{HS: cfg.HeadDim(), InvFreq: inv, MScale: ms, n: n,
		cos: make([]float32, n*half), sin: make([]float32, n*half)}
	for p := 0; p < n; p++ {
		for i, f := range inv {
			s, c := math.Sincos(float64(p) * f)
			r.cos[p*half+i] = float32(ms * c)
			r.sin[p*half+i] = float32(ms * s)
		}
	}
	return r, nil
}

// Len is the number of positions the tables cover.
func (r *Rotary) Len() int { return r.n }

// Forward rotates q and k of qkv (B, T, 3C) in place, for NH heads of
// width HS = C/NH; row t of each sequence is at position pos0+t.
func (r *Rotary) Forward(qkv []float32, B, T, C, NH, pos0 int) {
	r.apply(qkv, B, T, C, NH, NH, pos0, 1)
}

// Backward turns dqkv (B, T, 3C), the gradient with respect to the rotated
// q and k, into the gradient with respect to the unrotated ones, in place:
// the rotation is orthogonal (times mscale), so this applies its transpose.
func (r *Rotary) Backward(dqkv []float32, B, T, C, NH, pos0 int) {
	r.apply(dqkv, B, T, C, NH, NH, pos0, -1)
}

// ForwardGQA is Forward for grouped-query rows (B, T, C + 2*NKV*HS):
// NH query heads of width HS = C/NH, then NKV key heads (and the values).
func (r *Rotary) ForwardGQA(qkv []float32, B, T, C, NH, NKV, pos0 int) {
	r.apply(qkv, B, T, C, NH, NKV, pos0, 1)
}

// BackwardGQA is Backward for grouped-query rows (see ForwardGQA).
func (r *Rotary) BackwardGQA(dqkv []float32, B, T, C, NH, NKV, pos0 int) {
	r.apply(dqkv, B, T, C, NH, NKV, pos0, -1)
}

// apply rotates by +theta (dir 1) or -theta (dir -1), both scaled by
// mscale, the NH query heads at the start of each row and the NKV key
// heads after them.
func (r *Rotary) apply(x []float32, B, T, C, NH, NKV, pos0 int, dir float32) {
	HS := C / NH
	half := HS / 2
	W := C + 2*NKV*HS // row width
	for b := 0; b < B; b++ {
		for t := 0; t < T; t++ {
			p := pos0 + t
			cs, sn := r.cos[p*half:(p+1)*half], r.sin[p*half:(p+1)*half]
			row := x[(b*T+t)*W:]
			for part := 0; part < 2; part++ { // q, then k
				heads := NH
				if part == 1 {
					heads = NKV
				}
				for h := 0; h < heads; h++ {
					v := row[part*C+h*HS : part*C+(h+1)*HS]
					vec.Rotate(v[:half], v[half:], cs, sn, dir)
				}
			}
		}
	}
}

// ALiBiSlopes returns the per-head slopes of Press et al. (2022) for n heads:
// for a power of two, the geometric sequence starting at 2^(-8/n) with that
// ratio; otherwise the slopes of the closest smaller power of two followed
// by every other slope of twice that many heads (the paper's reference code).
func ALiBiSlopes(n int) []float64 {
	pow2 := func(n int) []float64 {
		start := math.Pow(2, -math.Pow(2, -(math.Log2(float64(n))-3)))
		out := make([]float64, n)
		for i := range out {
			out[i] = start * math.Pow(start, float64(i))
		}
		return out
	}
	if n <= 0 {
		return nil
	}
	if n&(n-1) == 0 {
		return pow2(n)
	}
	closest := 1 << int(math.Floor(math.Log2(float64(n))))
	out := pow2(closest)
	extra := ALiBiSlopes(2 * closest)
	for i := 0; len(out) < n; i += 2 {
		out = append(out, extra[i])
	}
	return out
}

// alibiSlopes are the slopes of this rank's heads, each keeping the slope
// of its global (stored) index: with tensor parallelism rank r holds, of
// each of the group chunks of nKV heads (see Config.KVGroup), the heads
// [r*nkvLocal, (r+1)*nkvLocal); with one group that is global heads
// [r*NHl, (r+1)*NHl).
func alibiSlopes(nHead, nKV, rank, nhLocal int) []float32 {
	all := ALiBiSlopes(nHead)
	out := make([]float32, nhLocal)
	group := nHead / nKV
	nkvl := nhLocal / group
	for h := range out {
		g, j := h/nkvl, h%nkvl
		out[h] = float32(all[g*nKV+rank*nkvl+j])
	}
	return out
}
