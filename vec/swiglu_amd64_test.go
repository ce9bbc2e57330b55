package vec

import (
	"math"
	"math/rand/v2"
	"testing"
)

// swigluKernels are the SwiGLU kernels of one assembly path.
type swigluKernels struct {
	name string
	fwd  func(out, gate, up *float32, n int)
	bwd  func(dgate, dup, gate, up, dout *float32, n int)
}

// swigluPaths lists the SwiGLU kernels of each assembly path this CPU
// runs, AVX-512 first (the order of availableSIMD).
func swigluPaths(t *testing.T) []swigluKernels {
	var ks []swigluKernels
	for _, p := range simdPaths(t) {
		switch p.name {
		case "avx512":
			ks = append(ks, swigluKernels{p.name, swigluAVX512, swigluBackwardAVX512})
		case "avx2":
			ks = append(ks, swigluKernels{p.name, swigluAVX2, swigluBackwardAVX2})
		}
	}
	return ks
}

// TestSIMDSwiGLU: each assembly path within rounding of the portable Go
// loops (which TestSwiGLUMatchesFloat64 checks against float64), at every
// length to 70 and model widths, unaligned, writing nothing outside
// [0, n); AVX2 gives the AVX-512 bits.
func TestSIMDSwiGLU(t *testing.T) {
	ks := swigluPaths(t)
	r := rand.New(rand.NewPCG(52, 1))
	for _, n := range simdLengths() {
		for _, off := range offsets {
			g, u, d := newRegion(r, off, n, 4), newRegion(r, off, n, 1), newRegion(r, off, n, 1)
			copy(g.s(), []float32{0, -1.2784645, 30, -30, 90, -90, 1e-4})
			want, wantDg, wantDu := make([]float32, n), make([]float32, n), make([]float32, n)
			swigluGo(want, g.s(), u.s())
			swigluBackwardGo(wantDg, wantDu, g.s(), u.s(), d.s())
			var res [][3]region
			for _, k := range ks {
				out, dg, du := newRegion(r, off, n, 1), newRegion(r, off, n, 1), newRegion(r, off, n, 1)
				k.fwd(out.p(), g.p(), u.p(), n)
				k.bwd(dg.p(), du.p(), g.p(), u.p(), d.p(), n)
				for _, x := range []region{out, dg, du, g, u, d} {
					x.checkGuards(t, k.name)
				}
				for i := range want {
					_, _, _, sc := swigluRef(g.s()[i], u.s()[i], d.s()[i])
					if !relClose(float64(out.s()[i]), float64(want[i]), 5e-7, 1e-35) {
						t.Fatalf("%s n=%d: swiglu(%g, %g) = %g, Go %g", k.name, n, g.s()[i], u.s()[i], out.s()[i], want[i])
					}
					if !relClose(float64(du.s()[i]), float64(wantDu[i]), 5e-7, 1e-35) {
						t.Fatalf("%s n=%d: dup(%g)*%g = %g, Go %g", k.name, n, g.s()[i], d.s()[i], du.s()[i], wantDu[i])
					}
					if math.Abs(float64(dg.s()[i]-wantDg[i])) > 6e-7*sc+1e-35 {
						t.Fatalf("%s n=%d: dgate(%g, %g)*%g = %g, Go %g", k.name, n, g.s()[i], u.s()[i], d.s()[i], dg.s()[i], wantDg[i])
					}
				}
				res = append(res, [3]region{out, dg, du})
			}
			if len(res) == 2 {
				for j, what := range []string{"swiglu", "dgate", "dup"} {
					if i := sameBits(res[1][j].s(), res[0][j].s()); i >= 0 {
						t.Fatalf("n=%d off=%d %s(%g): %s %g, %s %g", n, off, what, g.s()[i], ks[1].name, res[1][j].s()[i], ks[0].name, res[0][j].s()[i])
					}
				}
			}
		}
	}
}

// TestSIMDSwiGLUEdges: over a fine grid of gates out past both clamps of
// the exponential, and at NaN and infinities, AVX2 gives the AVX-512 bits.
func TestSIMDSwiGLUEdges(t *testing.T) {
	ks := swigluPaths(t)
	if len(ks) < 2 {
		t.Skip("needs AVX-512 and AVX2")
	}
	var g []float32
	for v := float32(-100); v <= 100; v += 0.003 {
		g = append(g, v)
	}
	g = append(g, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 1e-30, -1e-30, 1e30, -1e30)
	n := len(g)
	r := rand.New(rand.NewPCG(53, 1))
	u, d := randSlice(r, n, 1), randSlice(r, n, 1)
	var outs [2][3][]float32
	for k, p := range ks {
		for j := range outs[k] {
			outs[k][j] = make([]float32, n)
		}
		p.fwd(&outs[k][0][0], &g[0], &u[0], n)
		p.bwd(&outs[k][1][0], &outs[k][2][0], &g[0], &u[0], &d[0], n)
	}
	for j, what := range []string{"swiglu", "dgate", "dup"} {
		if i := sameBits(outs[1][j], outs[0][j]); i >= 0 {
			t.Fatalf("%s(%g): %s %g, %s %g", what, g[i], ks[1].name, outs[1][j][i], ks[0].name, outs[0][j][i])
		}
	}
}
