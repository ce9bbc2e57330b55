package vec

import (
	"math"
	"math/rand/v2"
	"testing"
)

// lengths cover empty, shorter than a vector, exact vectors and odd tails.
var lengths = []int{0, 1, 7, 15, 16, 17, 31, 32, 33, 100, 1000}

func randSlice(r *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * scale)
	}
	return x
}

// relClose: |got-want| <= tol*max(|want|, floor).
func relClose(got, want, tol, floor float64) bool {
	return math.Abs(got-want) <= tol*math.Max(math.Abs(want), floor)
}

func TestExpShiftSumMatchesMathExp(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, n := range lengths {
		x := randSlice(r, n, 20)
		if n > 3 {
			x[0], x[1], x[2] = -200, 80, 0 // clamped low end, near overflow, exp(0)
		}
		want := append([]float32(nil), x...)
		const shift = 1.5
		wantSum := expShiftSumGo(want, shift)
		got := append([]float32(nil), x...)
		gotSum := ExpShiftSum(got, shift)
		for i := range want {
			// below exp's clamp the result is the smallest normal float
			if math.Abs(float64(got[i]-want[i])) > 4e-7*math.Abs(float64(want[i]))+1.2e-38 {
				t.Fatalf("n=%d: exp(%g-%g) = %g, math.Exp %g", n, x[i], shift, got[i], want[i])
			}
		}
		if !relClose(float64(gotSum), float64(wantSum), 1e-5, 0) {
			t.Fatalf("n=%d: sum %g, want %g", n, gotSum, wantSum)
		}
	}
}

func TestExpLeavesOtherElementsAlone(t *testing.T) {
	buf := []float32{9, 0, 0, 0, 9}
	ExpShiftSum(buf[1:4], 0)
	if buf[0] != 9 || buf[4] != 9 || buf[1] != 1 {
		t.Fatalf("ExpShiftSum on buf[1:4] gave %v", buf)
	}
}

func TestGELUTanhMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 1))
	for _, n := range lengths {
		x := randSlice(r, n, 3)
		if n > 4 {
			x[0], x[1], x[2], x[3] = 0, -30, 30, 1e-4
		}
		dout := randSlice(r, n, 1)
		want, got := make([]float32, n), make([]float32, n+1)
		got[n] = 42 // past the end: must stay
		geluTanhGo(want, x)
		GELUTanh(got[:n], x)
		for i := range want {
			if !relClose(float64(got[i]), float64(want[i]), 2e-6, 1e-6) {
				t.Fatalf("n=%d: gelu(%g) = %g, reference %g", n, x[i], got[i], want[i])
			}
		}
		geluTanhBackwardGo(want, x, dout)
		GELUTanhBackward(got[:n], x, dout)
		for i := range want {
			// gelu' crosses zero near x = -0.75: relative to dout there
			if !relClose(float64(got[i]), float64(want[i]), 2e-6, math.Abs(float64(dout[i]))) {
				t.Fatalf("n=%d: gelu'(%g)*%g = %g, reference %g", n, x[i], dout[i], got[i], want[i])
			}
		}
		if got[n] != 42 {
			t.Fatalf("n=%d: wrote past the end", n)
		}
	}
}

func TestAdamWMatchesPortableToTheBit(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 1))
	s := &AdamWStep{Beta1: 0.9, OneMinusBeta1: 0.1, Beta2: 0.95, OneMinusBeta2: 0.05, Eps: 1e-8,
		StepSize: 3e-4 / 0.1, InvSqrtBC2: float32(1 / math.Sqrt(0.05)), Decay: 1 - 3e-5}
	for _, n := range lengths {
		p, g := randSlice(r, n, 1), randSlice(r, n, 0.1)
		m, v := randSlice(r, n, 0.01), randSlice(r, n, 0.01)
		for i := range v {
			v[i] *= v[i]
		}
		wp, wm, wv := append([]float32(nil), p...), append([]float32(nil), m...), append([]float32(nil), v...)
		for step := 0; step < 3; step++ {
			adamwGo(wp, g, wm, wv, s, 1)
			AdamW(p, g, m, v, s)
		}
		for i := range p {
			if p[i] != wp[i] || m[i] != wm[i] || v[i] != wv[i] {
				t.Fatalf("n=%d, element %d: p %g m %g v %g, portable %g %g %g", n, i, p[i], m[i], v[i], wp[i], wm[i], wv[i])
			}
		}
	}
}

// TestAdamWGradScale: a GradScale s gives the bits of scaling the
// gradients by s in a separate pass first (what clipping did), on the
// AVX-512 and portable paths, and leaves g unchanged.
func TestAdamWGradScale(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 1))
	for _, n := range lengths {
		p, g := randSlice(r, n, 1), randSlice(r, n, 0.1)
		m, v := randSlice(r, n, 0.01), randSlice(r, n, 0.01)
		for i := range v {
			v[i] *= v[i]
		}
		g0 := append([]float32(nil), g...)
		wp, wm, wv := append([]float32(nil), p...), append([]float32(nil), m...), append([]float32(nil), v...)
		pp, pm, pv := append([]float32(nil), p...), append([]float32(nil), m...), append([]float32(nil), v...)
		const scale = 0.37
		gs := make([]float32, n)
		for i := range g {
			gs[i] = g[i] * scale
		}
		s := &AdamWStep{Beta1: 0.9, OneMinusBeta1: 0.1, Beta2: 0.95, OneMinusBeta2: 0.05, Eps: 1e-8,
			StepSize: 3e-4 / 0.1, InvSqrtBC2: float32(1 / math.Sqrt(0.05)), Decay: 1 - 3e-5}
		AdamW(wp, gs, wm, wv, s) // scaled beforehand
		s.GradScale = scale
		AdamW(p, g, m, v, s)
		adamwGo(pp, g, pm, pv, s, scale)
		for i := range p {
			if p[i] != wp[i] || m[i] != wm[i] || v[i] != wv[i] || pp[i] != wp[i] || pm[i] != wm[i] || pv[i] != wv[i] {
				t.Fatalf("n=%d, element %d: p %g m %g v %g (portable %g %g %g), pre-scaled %g %g %g", n, i, p[i], m[i], v[i], pp[i], pm[i], pv[i], wp[i], wm[i], wv[i])
			}
			if g[i] != g0[i] {
				t.Fatalf("n=%d: g[%d] changed", n, i)
			}
		}
	}
}

func BenchmarkGELUTanh(b *testing.B) {
	x := randSlice(rand.New(rand.NewPCG(4, 1)), 4096, 2)
	out := make([]float32, len(x))
	b.SetBytes(int64(4 * len(x)))
	for b.Loop() {
		GELUTanh(out, x)
	}
}

// TestGELUTanhBiasSameBitsAsAddThenGELU: the fused pass leaves x and out
// bit-identical to Add then GELUTanh, tails included, nothing past n.
func TestGELUTanhBiasSameBitsAsAddThenGELU(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 1))
	for _, n := range lengths {
		x, b := randSlice(r, n, 3), randSlice(r, n, 1)
		wantX := append([]float32(nil), x...)
		Add(wantX, b)
		want := make([]float32, n)
		GELUTanh(want, wantX)
		got, gotX := make([]float32, n+1), append(append([]float32(nil), x...), 42)
		got[n] = 42
		GELUTanhBias(got[:n], gotX[:n], b)
		for i := range want {
			if math.Float32bits(gotX[i]) != math.Float32bits(wantX[i]) || math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("n=%d i=%d: fused x %g gelu %g, separate x %g gelu %g", n, i, gotX[i], got[i], wantX[i], want[i])
			}
		}
		if got[n] != 42 || gotX[n] != 42 {
			t.Fatalf("n=%d: wrote past the end", n)
		}
	}
}

// BenchmarkGELUTanhBias: gpt2s's MLP activation (1024 rows of 1536, 6 MB,
// beyond L2) with the fc bias, fused vs Add then GELUTanh.
func BenchmarkGELUTanhBias(b *testing.B) {
	const rows, w = 1024, 1536
	r := rand.New(rand.NewPCG(4, 1))
	x, bias := randSlice(r, rows*w, 2), randSlice(r, w, 0.1)
	out := make([]float32, len(x))
	b.Run("fused", func(b *testing.B) {
		for b.Loop() {
			for n := 0; n < rows; n++ {
				GELUTanhBias(out[n*w:(n+1)*w], x[n*w:(n+1)*w], bias)
			}
		}
	})
	b.Run("separate", func(b *testing.B) {
		for b.Loop() {
			for n := 0; n < rows; n++ {
				Add(x[n*w:(n+1)*w], bias)
			}
			GELUTanh(out, x)
		}
	})
}

// TestGELUTanhBackwardBiasSameBits: dx and db bit-identical to
// GELUTanhBackward then Add, tails included, nothing past n.
func TestGELUTanhBackwardBiasSameBits(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 1))
	for _, n := range lengths {
		x, dout, db0 := randSlice(r, n, 3), randSlice(r, n, 1), randSlice(r, n, 1)
		want, wantDB := make([]float32, n), append([]float32(nil), db0...)
		GELUTanhBackward(want, x, dout)
		Add(wantDB, want)
		got, gotDB := make([]float32, n+1), append(append([]float32(nil), db0...), 42)
		got[n] = 42
		GELUTanhBackwardBias(got[:n], x, dout, gotDB[:n])
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) || math.Float32bits(gotDB[i]) != math.Float32bits(wantDB[i]) {
				t.Fatalf("n=%d i=%d: fused dx %g db %g, separate dx %g db %g", n, i, got[i], gotDB[i], want[i], wantDB[i])
			}
		}
		if got[n] != 42 || gotDB[n] != 42 {
			t.Fatalf("n=%d: wrote past the end", n)
		}
	}
}
