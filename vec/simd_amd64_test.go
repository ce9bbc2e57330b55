package vec

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/strand-ml/strand/numeric"
	"golang.org/x/sys/cpu"
)

// The tests in this file call the AVX2 and AVX-512 kernels directly, so
// both run on a CPU that has AVX-512 (the dispatch in the exported
// functions only ever takes one). Each kernel is checked on every
// assembly path this CPU runs against the portable Go formula (to the bit
// where the Go code is bit-exact, else within the tolerance of the
// exported functions' tests), and the AVX2 path against the AVX-512 one to
// the bit: lengths 0..70 and a few longer rows, unaligned starts, nothing
// written outside [0, n).

// simdPath is one assembly implementation of every kernel.
type simdPath struct {
	name string

	expShiftSum          func(x *float32, n int, shift float32) float32
	geluTanh             func(out, x *float32, n int)
	geluTanhBias         func(out, x, b *float32, n int)
	geluTanhBackward     func(dx, x, dout *float32, n int)
	geluTanhBackwardBias func(dx, x, dout, db *float32, n int)
	adamw                func(p, g, m, v *float32, n int, s *AdamWStep, gs float32)
	sum                  func(x *float32, n int) float32
	sumSqDev             func(x *float32, n int, m float32) float32
	normAffine           func(out, x, w, b *float32, n int, m, s float32)
	lnBwdDots            func(dout, x, w *float32, n int, m, s float32) (float32, float32)
	lnBwdApply           func(dinp, dw, db, dout, x, w *float32, n int, m, s, dnMean, dnNormMean float32)
	lnBwdDx              func(dinp, dout, x, w *float32, n int, m, s, dnMean, dnNormMean float32)
	lnBwdParams          func(dw, db, dout, x *float32, n int, m, s float32)
	toBF16               func(dst *uint16, src *float32, n int)
	add                  func(dst, src *float32, n int)
	// n a positive multiple of 16:
	scale      func(x *float32, n int, s float32)
	scaleF64   func(x *float32, n int, s float64)
	sumSquares func(x *float32, n int) float64
	max        func(x *float32, n int) float32
	subMul     func(d, p *float32, n int, c float32)
}

var avx512Path = simdPath{"avx512",
	expShiftSumAVX512, geluTanhAVX512, geluTanhBiasAVX512, geluTanhBackwardAVX512, geluTanhBackwardBiasAVX512,
	adamwAVX512, sumAVX512, sumSqDevAVX512, normAffineAVX512, lnBwdDotsAVX512, lnBwdApplyAVX512,
	lnBwdDxAVX512, lnBwdParamsAVX512, toBF16AVX512, addAVX512,
	scaleAVX512, scaleF64AVX512, sumSquaresAVX512, maxAVX512, subMulAVX512}

var avx2Path = simdPath{"avx2",
	expShiftSumAVX2, geluTanhAVX2, geluTanhBiasAVX2, geluTanhBackwardAVX2, geluTanhBackwardBiasAVX2,
	adamwAVX2, sumAVX2, sumSqDevAVX2, normAffineAVX2, lnBwdDotsAVX2, lnBwdApplyAVX2,
	lnBwdDxAVX2, lnBwdParamsAVX2, toBF16AVX2, addAVX2,
	scaleAVX2, scaleF64AVX2, sumSquaresAVX2, maxAVX2, subMulAVX2}

// availableSIMD lists the assembly paths this CPU runs, AVX-512 first.
func availableSIMD() []simdPath {
	var ps []simdPath
	if cpu.X86.HasAVX512F {
		ps = append(ps, avx512Path)
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ps = append(ps, avx2Path)
	}
	return ps
}

// simdPaths is availableSIMD for a test that has nothing to check without
// one.
func simdPaths(t *testing.T) []simdPath {
	ps := availableSIMD()
	if len(ps) == 0 {
		t.Skip("no AVX2+FMA or AVX-512 on this CPU")
	}
	return ps
}

// bothPaths reports whether the AVX2 results can be compared with AVX-512's.
func bothPaths(ps []simdPath) bool { return len(ps) == 2 }

// simdLengths: every length to 70 (empty, partial vectors, 1..4 full
// 16-float blocks with every tail), then model widths.
func simdLengths() []int {
	var ns []int
	for n := 0; n <= 70; n++ {
		ns = append(ns, n)
	}
	return append(ns, 100, 384, 1000, 1536)
}

// offsets are unaligned starts (in floats) of the slices handed to the kernels.
var offsets = []int{0, 1, 3}

const guard = 8 // elements around each slice that must not change

// region is a slice of n values inside a buffer with guard sentinels on
// both sides.
type region struct {
	buf []float32
	off int
	n   int
}

func newRegion(r *rand.Rand, off, n int, scale float64) region {
	buf := make([]float32, off+guard+n+guard)
	for i := range buf {
		buf[i] = -12345
	}
	g := region{buf, off + guard, n}
	for i := range g.s() {
		g.s()[i] = float32(r.NormFloat64() * scale)
	}
	return g
}

func (g region) s() []float32 { return g.buf[g.off : g.off+g.n] }
func (g region) p() *float32  { return &g.buf[g.off] } // valid for n == 0 too (the trailing guard)
func (g region) copy() region { return region{append([]float32(nil), g.buf...), g.off, g.n} }

func (g region) checkGuards(t *testing.T, what string) {
	t.Helper()
	for i, v := range g.buf {
		if (i < g.off || i >= g.off+g.n) && v != -12345 {
			t.Fatalf("%s: wrote element %d outside [%d, %d)", what, i-g.off, 0, g.n)
		}
	}
}

// sameBits reports the first index where a and b differ in their bits, or -1.
func sameBits(a, b []float32) int {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

func TestSIMDExpShiftSum(t *testing.T) {
	ps := simdPaths(t)
	r := rand.New(rand.NewPCG(31, 1))
	const shift = 1.5
	for _, n := range simdLengths() {
		for _, off := range offsets {
			x := newRegion(r, off, n, 20)
			// clamped low end, near overflow and at the high clamp, exp(0), subnormal results
			special := []float32{-200, 80, 90.3, 1.5, -86, -88, -95, -100, -104}
			copy(x.s(), special)
			want := append([]float32(nil), x.s()...)
			wantSum := expShiftSumGo(want, shift)
			var first region
			var firstSum float32
			for k, p := range ps {
				got := x.copy()
				sum := p.expShiftSum(got.p(), n, shift)
				got.checkGuards(t, p.name)
				for i := range want {
					if math.Abs(float64(got.s()[i]-want[i])) > 4e-7*math.Abs(float64(want[i]))+1.2e-38 {
						t.Fatalf("%s n=%d: exp(%g-%g) = %g, math.Exp %g", p.name, n, x.s()[i], shift, got.s()[i], want[i])
					}
				}
				// each clamped exponential adds at most the smallest normal
				if math.Abs(float64(sum-wantSum)) > 1e-5*float64(wantSum)+float64(n)*1.2e-38 {
					t.Fatalf("%s n=%d: sum %g, want %g", p.name, n, sum, wantSum)
				}
				if k == 0 {
					first, firstSum = got, sum
					continue
				}
				if i := sameBits(got.s(), first.s()); i >= 0 || math.Float32bits(sum) != math.Float32bits(firstSum) {
					t.Fatalf("n=%d off=%d: %s exp[%d] %g sum %g, %s %g %g", n, off, p.name, i, got.s()[max(i, 0)], sum, ps[0].name, first.s()[max(i, 0)], firstSum)
				}
			}
		}
	}
}

// TestSIMDExpEdges: the exponential on inputs across its whole clamped
// range, the subnormal results below exp(-87.3) and beyond both clamps,
// NaN and infinities, gives the AVX-512 bits on the AVX2 path.
func TestSIMDExpEdges(t *testing.T) {
	ps := simdPaths(t)
	if !bothPaths(ps) {
		t.Skip("needs AVX-512 and AVX2")
	}
	var x []float32
	for v := float32(-110); v <= 95; v += 0.01 {
		x = append(x, v)
	}
	x = append(x, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 88.72283, -87.33654, 88.7229, -87.3366)
	a, b := append([]float32(nil), x...), append([]float32(nil), x...)
	sa := ps[0].expShiftSum(&a[0], len(a), 0)
	sb := ps[1].expShiftSum(&b[0], len(b), 0)
	if i := sameBits(a, b); i >= 0 {
		t.Fatalf("exp(%g): %s %g (%#x), %s %g (%#x)", x[i], ps[0].name, a[i], math.Float32bits(a[i]), ps[1].name, b[i], math.Float32bits(b[i]))
	}
	if math.Float32bits(sa) != math.Float32bits(sb) {
		t.Fatalf("sum %g, %s %g", sa, ps[1].name, sb)
	}
}

func TestSIMDGELU(t *testing.T) {
	ps := simdPaths(t)
	r := rand.New(rand.NewPCG(32, 1))
	for _, n := range simdLengths() {
		for _, off := range offsets {
			x, dout, b, db := newRegion(r, off, n, 3), newRegion(r, off, n, 1), newRegion(r, off, n, 1), newRegion(r, off, n, 1)
			copy(x.s(), []float32{0, -30, 30, 1e-4, -0.75, 5, -5})
			want, wantB := make([]float32, n), make([]float32, n)
			geluTanhGo(want, x.s())
			geluTanhBackwardGo(wantB, x.s(), dout.s())
			xb := append([]float32(nil), x.s()...)
			Add(xb, b.s())
			var res [][4]region
			for _, p := range ps {
				out, bx, bout, dx, dx2, db2 := newRegion(r, off, n, 1), x.copy(), newRegion(r, off, n, 1), newRegion(r, off, n, 1), newRegion(r, off, n, 1), db.copy()
				p.geluTanh(out.p(), x.p(), n)
				p.geluTanhBias(bout.p(), bx.p(), b.p(), n)
				p.geluTanhBackward(dx.p(), x.p(), dout.p(), n)
				p.geluTanhBackwardBias(dx2.p(), x.p(), dout.p(), db2.p(), n)
				for _, g := range []region{out, bx, bout, dx, dx2, db2} {
					g.checkGuards(t, p.name)
				}
				for i := range want {
					if !relClose(float64(out.s()[i]), float64(want[i]), 2e-6, 1e-6) {
						t.Fatalf("%s n=%d: gelu(%g) = %g, reference %g", p.name, n, x.s()[i], out.s()[i], want[i])
					}
					if !relClose(float64(dx.s()[i]), float64(wantB[i]), 2e-6, math.Abs(float64(dout.s()[i]))) {
						t.Fatalf("%s n=%d: gelu'(%g)*%g = %g, reference %g", p.name, n, x.s()[i], dout.s()[i], dx.s()[i], wantB[i])
					}
				}
				// The fused kernels: the bits of Add then GELU, of GELU' then Add.
				gout := make([]float32, n)
				if n > 0 {
					p.geluTanh(&gout[0], &xb[0], n)
				}
				if i := sameBits(bx.s(), xb); i >= 0 {
					t.Fatalf("%s n=%d: x+b [%d] %g, want %g", p.name, n, i, bx.s()[i], xb[i])
				}
				if i := sameBits(bout.s(), gout); i >= 0 {
					t.Fatalf("%s n=%d: gelu(x+b) [%d] %g, unfused %g", p.name, n, i, bout.s()[i], gout[i])
				}
				wdb := append([]float32(nil), db.s()...)
				Add(wdb, dx.s())
				if i := sameBits(dx2.s(), dx.s()); i >= 0 {
					t.Fatalf("%s n=%d: fused dx[%d] %g, unfused %g", p.name, n, i, dx2.s()[i], dx.s()[i])
				}
				if i := sameBits(db2.s(), wdb); i >= 0 {
					t.Fatalf("%s n=%d: fused db[%d] %g, unfused %g", p.name, n, i, db2.s()[i], wdb[i])
				}
				res = append(res, [4]region{out, bout, dx, dx2})
			}
			if bothPaths(ps) {
				for j, what := range []string{"gelu", "gelu bias", "gelu'", "gelu' bias"} {
					if i := sameBits(res[1][j].s(), res[0][j].s()); i >= 0 {
						t.Fatalf("n=%d off=%d %s(%g): %s %g, %s %g", n, off, what, x.s()[i], ps[1].name, res[1][j].s()[i], ps[0].name, res[0][j].s()[i])
					}
				}
			}
		}
	}
}

// TestSIMDGELUEdges: GELU and its derivative over a fine grid, out to
// where the exponential clamps, and at NaN and infinities: AVX2 gives the
// AVX-512 bits.
func TestSIMDGELUEdges(t *testing.T) {
	ps := simdPaths(t)
	if !bothPaths(ps) {
		t.Skip("needs AVX-512 and AVX2")
	}
	var x []float32
	for v := float32(-60); v <= 60; v += 0.003 {
		x = append(x, v)
	}
	x = append(x, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 1e-30, -1e-30, 1e30, -1e30)
	n := len(x)
	dout := randSlice(rand.New(rand.NewPCG(33, 1)), n, 1)
	var outs, dxs [2][]float32
	for k, p := range ps {
		outs[k], dxs[k] = make([]float32, n), make([]float32, n)
		p.geluTanh(&outs[k][0], &x[0], n)
		p.geluTanhBackward(&dxs[k][0], &x[0], &dout[0], n)
	}
	if i := sameBits(outs[1], outs[0]); i >= 0 {
		t.Fatalf("gelu(%g): %s %g, %s %g", x[i], ps[1].name, outs[1][i], ps[0].name, outs[0][i])
	}
	if i := sameBits(dxs[1], dxs[0]); i >= 0 {
		t.Fatalf("gelu'(%g)*%g: %s %g, %s %g", x[i], dout[i], ps[1].name, dxs[1][i], ps[0].name, dxs[0][i])
	}
}

func TestSIMDAdamW(t *testing.T) {
	ps := simdPaths(t)
	r := rand.New(rand.NewPCG(34, 1))
	s := &AdamWStep{Beta1: 0.9, OneMinusBeta1: 0.1, Beta2: 0.95, OneMinusBeta2: 0.05, Eps: 1e-8,
		StepSize: 3e-4 / 0.1, InvSqrtBC2: float32(1 / math.Sqrt(0.05)), Decay: 1 - 3e-5}
	for _, n := range simdLengths() {
		for _, off := range offsets {
			for _, gs := range []float32{1, 0.37} {
				p, g := newRegion(r, off, n, 1), newRegion(r, off, n, 0.1)
				m, v := newRegion(r, off, n, 0.01), newRegion(r, off, n, 0.01)
				for i := range v.s() {
					v.s()[i] *= v.s()[i]
				}
				wp, wm, wv := p.copy(), m.copy(), v.copy()
				for step := 0; step < 3; step++ {
					adamwGo(wp.s(), g.s(), wm.s(), wv.s(), s, gs)
				}
				for _, k := range ps {
					gp, gm, gv, gg := p.copy(), m.copy(), v.copy(), g.copy()
					for step := 0; step < 3; step++ {
						k.adamw(gp.p(), gg.p(), gm.p(), gv.p(), n, s, gs)
					}
					for _, x := range []region{gp, gm, gv, gg} {
						x.checkGuards(t, k.name)
					}
					if sameBits(gg.s(), g.s()) >= 0 {
						t.Fatalf("%s n=%d: changed g", k.name, n)
					}
					for i := range wp.s() {
						if gp.s()[i] != wp.s()[i] || gm.s()[i] != wm.s()[i] || gv.s()[i] != wv.s()[i] {
							t.Fatalf("%s n=%d gs=%g, element %d: p %g m %g v %g, portable %g %g %g", k.name, n, gs, i, gp.s()[i], gm.s()[i], gv.s()[i], wp.s()[i], wm.s()[i], wv.s()[i])
						}
					}
				}
			}
		}
	}
}

// TestSIMDLayerNormKernels: the row statistics (within float32 summation
// error of a float64 sum, and the same bits on AVX2 as on AVX-512), the
// affine map (bit-exact: no fused multiply-add on any path) and the
// backward pieces (the Go row within the exported tests' tolerances; dx
// and dw of the split kernels equal to the whole-row kernel's bits).
func TestSIMDLayerNormKernels(t *testing.T) {
	ps := simdPaths(t)
	r := rand.New(rand.NewPCG(35, 1))
	for _, n := range simdLengths() {
		for _, off := range offsets {
			x, w, b, dout := newRegion(r, off, n, 2), newRegion(r, off, n, 1), newRegion(r, off, n, 1), newRegion(r, off, n, 1)
			var sx, sabs float64
			for i := range x.s() {
				x.s()[i] += 3
				sx += float64(x.s()[i])
				sabs += math.Abs(float64(x.s()[i]))
			}
			m, s := float32(3.1), float32(0.7)
			var sq, dn, dnn, dnAbs, dnnAbs float64
			wantOut := make([]float32, n)
			for i, v := range x.s() {
				d := float64(v) - float64(m)
				sq += d * d
				wantOut[i] = float32(float32(float32(v-m)*s)*w.s()[i]) + b.s()[i]
				norm := float64((v - m) * s)
				e := float64(w.s()[i]) * float64(dout.s()[i])
				dn += e
				dnn += e * norm
				dnAbs += math.Abs(e)
				dnnAbs += math.Abs(e * norm)
			}
			dx0, dw0, db0 := newRegion(r, off, n, 1), newRegion(r, off, n, 1), newRegion(r, off, n, 1)
			type result struct {
				sum, sq, dn, dnn float32
				out, dx, dw, db  region
			}
			var res []result
			for _, p := range ps {
				var q result
				q.sum = p.sum(x.p(), n)
				q.sq = p.sumSqDev(x.p(), n, m)
				q.dn, q.dnn = p.lnBwdDots(dout.p(), x.p(), w.p(), n, m, s)
				for _, c := range []struct {
					what      string
					got, want float64
					tol       float64
				}{{"sum", float64(q.sum), sx, sabs}, {"sumSqDev", float64(q.sq), sq, sq}, {"dn", float64(q.dn), dn, dnAbs}, {"dn*norm", float64(q.dnn), dnn, dnnAbs}} {
					if math.Abs(c.got-c.want) > 1e-5*c.tol {
						t.Fatalf("%s n=%d: %s %g, float64 sum %g", p.name, n, c.what, c.got, c.want)
					}
				}
				q.out = newRegion(r, off, n, 1)
				p.normAffine(q.out.p(), x.p(), w.p(), b.p(), n, m, s)
				q.out.checkGuards(t, p.name)
				if i := sameBits(q.out.s(), wantOut); i >= 0 {
					t.Fatalf("%s n=%d: out[%d] %g, want %g", p.name, n, i, q.out.s()[i], wantOut[i])
				}

				a, c := float32(0.1), float32(-0.2)
				if n > 0 {
					a, c = q.dn/float32(n), q.dnn/float32(n)
				}
				q.dx, q.dw, q.db = dx0.copy(), dw0.copy(), db0.copy()
				p.lnBwdApply(q.dx.p(), q.dw.p(), q.db.p(), dout.p(), x.p(), w.p(), n, m, s, a, c)
				wx, ww, wb := dx0.copy(), dw0.copy(), db0.copy()
				for i := range x.s() {
					norm := (x.s()[i] - m) * s
					wb.s()[i] += dout.s()[i]
					ww.s()[i] += norm * dout.s()[i]
					wx.s()[i] += s * (w.s()[i]*dout.s()[i] - a - norm*c)
				}
				px, pw, pb := dx0.copy(), dw0.copy(), db0.copy()
				p.lnBwdDx(px.p(), dout.p(), x.p(), w.p(), n, m, s, a, c)
				p.lnBwdParams(pw.p(), pb.p(), dout.p(), x.p(), n, m, s)
				for _, g := range []region{q.dx, q.dw, q.db, px, pw, pb} {
					g.checkGuards(t, p.name)
				}
				for i := range wx.s() {
					if !relClose(float64(q.dx.s()[i]), float64(wx.s()[i]), 2e-5, 1) || !relClose(float64(q.dw.s()[i]), float64(ww.s()[i]), 1e-5, 1) || q.db.s()[i] != wb.s()[i] {
						t.Fatalf("%s n=%d, element %d: dx %g dw %g db %g, portable %g %g %g", p.name, n, i, q.dx.s()[i], q.dw.s()[i], q.db.s()[i], wx.s()[i], ww.s()[i], wb.s()[i])
					}
				}
				if i := sameBits(px.s(), q.dx.s()); i >= 0 {
					t.Fatalf("%s n=%d: lnBwdDx [%d] %g, lnBwdApply %g", p.name, n, i, px.s()[i], q.dx.s()[i])
				}
				if i, j := sameBits(pw.s(), q.dw.s()), sameBits(pb.s(), q.db.s()); i >= 0 || j >= 0 {
					t.Fatalf("%s n=%d: lnBwdParams differs from lnBwdApply at dw[%d] / db[%d]", p.name, n, i, j)
				}
				res = append(res, q)
			}
			if bothPaths(ps) {
				a, b := res[0], res[1]
				if math.Float32bits(a.sum) != math.Float32bits(b.sum) || math.Float32bits(a.sq) != math.Float32bits(b.sq) ||
					math.Float32bits(a.dn) != math.Float32bits(b.dn) || math.Float32bits(a.dnn) != math.Float32bits(b.dnn) {
					t.Fatalf("n=%d off=%d: sums %g %g %g %g, %s %g %g %g %g", n, off, b.sum, b.sq, b.dn, b.dnn, ps[0].name, a.sum, a.sq, a.dn, a.dnn)
				}
				for _, c := range [][2]region{{a.out, b.out}, {a.dx, b.dx}, {a.dw, b.dw}, {a.db, b.db}} {
					if i := sameBits(c[1].s(), c[0].s()); i >= 0 {
						t.Fatalf("n=%d off=%d: element %d %g, %s %g", n, off, i, c[1].s()[i], ps[0].name, c[0].s()[i])
					}
				}
			}
		}
	}
}

func TestSIMDToBF16AndAdd(t *testing.T) {
	ps := simdPaths(t)
	r := rand.New(rand.NewPCG(36, 1))
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), math.Float32frombits(0xFF800001), // NaNs, one with a low payload that must not round to Inf
		math.Float32frombits(0x7F800001),
		math.Float32frombits(0x3F808000), // tie, even kept half: rounds down
		math.Float32frombits(0x3F818000), // tie, odd kept half: rounds up
		math.Float32frombits(0x00000001), // smallest subnormal
		math.Float32frombits(0x7F7FFFFF), // max float: rounds to Inf
		math.Float32frombits(0x007FFFFF), 1e-40}
	for _, n := range simdLengths() {
		for _, off := range offsets {
			src := newRegion(r, off, n, 100)
			// the specials at every position of a vector over the lengths
			for i := range src.s() {
				if i%3 == 0 {
					src.s()[i] = special[(i/3+n)%len(special)]
				}
			}
			dst, add := newRegion(r, off, n, 1), newRegion(r, off, n, 1)
			wantAdd := append([]float32(nil), dst.s()...)
			for i := range wantAdd {
				wantAdd[i] += add.s()[i]
			}
			for _, p := range ps {
				out := make([]uint16, off+n+guard)
				for i := range out {
					out[i] = 0xABCD
				}
				p.toBF16(&out[off], src.p(), n)
				for i, v := range out {
					if i < off || i >= off+n {
						if v != 0xABCD {
							t.Fatalf("%s n=%d: wrote element %d outside [0, n)", p.name, n, i-off)
						}
						continue
					}
					f := src.s()[i-off]
					if want := numeric.BF16FromFloat32(f); v != want {
						t.Fatalf("%s n=%d: bf16(%g = %#08x) = %#04x, scalar %#04x", p.name, n, f, math.Float32bits(f), v, want)
					}
				}
				d := dst.copy()
				p.add(d.p(), add.p(), n)
				d.checkGuards(t, p.name)
				if i := sameBits(d.s(), wantAdd); i >= 0 {
					t.Fatalf("%s n=%d: add[%d] %g, want %g", p.name, n, i, d.s()[i], wantAdd[i])
				}
			}
		}
	}
}

// TestSIMDBlockKernels: the kernels on whole 16-float blocks (the callers
// finish the tail in Go).
func TestSIMDBlockKernels(t *testing.T) {
	ps := simdPaths(t)
	r := rand.New(rand.NewPCG(37, 1))
	for _, n := range []int{16, 32, 48, 64, 1024, 4096} {
		for _, off := range offsets {
			x, p := newRegion(r, off, n, 4), newRegion(r, off, n, 1)
			x.s()[n-1] = float32(math.Copysign(0, -1))
			want32, want64, wantSM := x.copy(), x.copy(), x.copy()
			wantMax := float32(math.Inf(-1))
			for i, v := range x.s() {
				want32.s()[i] = v * 0.3
				want64.s()[i] = float32(float64(v) * (1 / 7.0))
				wantSM.s()[i] = p.s()[i] * (v - 0.3)
				wantMax = max(wantMax, v)
			}
			wantSS := sumSquaresGo(x.s())
			for _, k := range ps {
				s32, s64, sm := x.copy(), x.copy(), x.copy()
				k.scale(s32.p(), n, 0.3)
				k.scaleF64(s64.p(), n, 1/7.0)
				k.subMul(sm.p(), p.p(), n, 0.3)
				for _, c := range []struct {
					what      string
					got, want region
				}{{"scale", s32, want32}, {"scaleF64", s64, want64}, {"subMul", sm, wantSM}} {
					c.got.checkGuards(t, k.name+" "+c.what)
					if i := sameBits(c.got.s(), c.want.s()); i >= 0 {
						t.Fatalf("%s n=%d: %s[%d] %g, want %g", k.name, n, c.what, i, c.got.s()[i], c.want.s()[i])
					}
				}
				if got := k.max(x.p(), n); got != wantMax {
					t.Fatalf("%s n=%d: max %g, want %g", k.name, n, got, wantMax)
				}
				if got := k.sumSquares(x.p(), n); math.Float64bits(got) != math.Float64bits(wantSS) {
					t.Fatalf("%s n=%d: sumSquares %v, portable order %v", k.name, n, got, wantSS)
				}
			}
		}
	}
}
