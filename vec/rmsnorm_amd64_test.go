package vec

import (
	"math/rand/v2"
	"testing"
)

// TestSIMDRMSNormKernels: the two RMSNorm-only kernels (scale, weight
// gradient) on each assembly path at every length to 70 and model widths,
// unaligned, nothing written outside [0, n), within rounding of the Go
// loops, and AVX2 with the AVX-512 bits. (The sums and the input gradient
// are LayerNorm's kernels with a zero mean: TestSIMDLayerNormKernels.)
func TestSIMDRMSNormKernels(t *testing.T) {
	ps := simdPaths(t)
	type kern struct {
		scale  func(out, x, w *float32, n int, s float32)
		params func(dw, dout, x *float32, n int, s float32)
	}
	ks := map[string]kern{"avx512": {rmsScaleAVX512, rmsBwdParamsAVX512}, "avx2": {rmsScaleAVX2, rmsBwdParamsAVX2}}
	r := rand.New(rand.NewPCG(62, 1))
	const s = 0.73
	for _, n := range simdLengths() {
		for _, off := range offsets {
			x, w, d, dw0 := newRegion(r, off, n, 2), newRegion(r, off, n, 1), newRegion(r, off, n, 1), newRegion(r, off, n, 1)
			wantOut := make([]float32, n)
			for i := range wantOut {
				wantOut[i] = x.s()[i] * s * w.s()[i]
			}
			wantDw := append([]float32(nil), dw0.s()...)
			rmsNormBackwardParamsGo(wantDw, d.s(), x.s(), s)
			var res [][2]region
			for _, p := range ps {
				k := ks[p.name]
				out, dw := newRegion(r, off, n, 1), dw0.copy()
				k.scale(out.p(), x.p(), w.p(), n, s)
				k.params(dw.p(), d.p(), x.p(), n, s)
				out.checkGuards(t, p.name)
				dw.checkGuards(t, p.name)
				if i := sameBits(out.s(), wantOut); i >= 0 { // two products, no FMA: exact
					t.Fatalf("%s n=%d: x*s*w [%d] %g, Go %g", p.name, n, i, out.s()[i], wantOut[i])
				}
				for i := range wantDw {
					if !relClose(float64(dw.s()[i]), float64(wantDw[i]), 1e-6, float64(abs32(x.s()[i]*s*d.s()[i]))) {
						t.Fatalf("%s n=%d: dw[%d] %g, Go %g", p.name, n, i, dw.s()[i], wantDw[i])
					}
				}
				res = append(res, [2]region{out, dw})
			}
			if bothPaths(ps) {
				for j, what := range []string{"scale", "dw"} {
					if i := sameBits(res[1][j].s(), res[0][j].s()); i >= 0 {
						t.Fatalf("n=%d off=%d %s[%d]: %s %g, %s %g", n, off, what, i, ps[1].name, res[1][j].s()[i], ps[0].name, res[0][j].s()[i])
					}
				}
			}
		}
	}
}

func abs32(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}
