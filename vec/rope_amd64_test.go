package vec

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestSIMDRotate: each assembly rotation at every length to 70 and model
// widths, unaligned, writing nothing outside [0, n), gives the portable
// loop's bits (so AVX2 gives AVX-512's).
func TestSIMDRotate(t *testing.T) {
	ps := simdPaths(t)
	fns := map[string]func(x1, x2, cos, sin *float32, n int, dir float32){"avx512": rotateAVX512, "avx2": rotateAVX2}
	r := rand.New(rand.NewPCG(71, 1))
	for _, n := range simdLengths() {
		for _, off := range offsets {
			x1, x2 := newRegion(r, off, n, 1), newRegion(r, off, n, 1)
			cos, sin := newRegion(r, off, n, 1), newRegion(r, off, n, 1)
			for i := range cos.s() {
				th := r.Float64() * 2 * math.Pi
				cos.s()[i], sin.s()[i] = float32(math.Cos(th)), float32(math.Sin(th))
			}
			for _, dir := range []float32{1, -1} {
				w1, w2 := append([]float32(nil), x1.s()...), append([]float32(nil), x2.s()...)
				rotateGo(w1, w2, cos.s(), sin.s(), dir)
				for _, p := range ps {
					a1, a2 := x1.copy(), x2.copy()
					fns[p.name](a1.p(), a2.p(), cos.p(), sin.p(), n, dir)
					a1.checkGuards(t, p.name)
					a2.checkGuards(t, p.name)
					if i := sameBits(a1.s(), w1); i >= 0 {
						t.Fatalf("%s n=%d off=%d dir=%g: x1[%d] %g, Go %g", p.name, n, off, dir, i, a1.s()[i], w1[i])
					}
					if i := sameBits(a2.s(), w2); i >= 0 {
						t.Fatalf("%s n=%d off=%d dir=%g: x2[%d] %g, Go %g", p.name, n, off, dir, i, a2.s()[i], w2[i])
					}
				}
			}
		}
	}
}
