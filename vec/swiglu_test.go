package vec

import (
	"math"
	"math/rand/v2"
	"testing"
)

// swigluRef is SwiGLU and its input gradients in float64 from the
// definition silu(g) = g*sigmoid(g), d silu/dg = s*(1 + g*(1-s)). scale is
// the size of the gradient's terms, |dout*up|*(s + |g|*s*(1-s)), which
// bounds its float32 rounding where the two terms cancel (g near -1.28).
func swigluRef(g, u, d float32) (out, dg, du, scale float64) {
	gf, uf, df := float64(g), float64(u), float64(d)
	s := 1 / (1 + math.Exp(-gf))
	out = gf * s * uf
	du = df * gf * s
	dg = df * uf * s * (1 + gf*(1-s))
	scale = math.Abs(df*uf) * (s + math.Abs(gf)*s*(1-s))
	return out, dg, du, scale
}

// swigluImpls are the exported functions (this CPU's path) and the
// portable Go loops, which the exported functions only reach on CPUs
// without AVX2.
var swigluImpls = []struct {
	name string
	fwd  func(out, gate, up []float32)
	bwd  func(dgate, dup, gate, up, dout []float32)
}{{"exported", SwiGLU, SwiGLUBackward}, {"go", swigluGo, swigluBackwardGo}}

// TestSwiGLUMatchesFloat64: both implementations within a few float32
// roundings of the float64 definition, gates out to where the exponential
// clamps (|g| > 87), including 0 and the zero of d silu/dg.
func TestSwiGLUMatchesFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(50, 1))
	for _, im := range swigluImpls {
		for _, n := range append(lengths, 4096) {
			g, u, d := randSlice(r, n, 4), randSlice(r, n, 1), randSlice(r, n, 1)
			copy(g, []float32{0, -1.2784645, 20, -20, 87, -87, 95, -95, 1e-20, -1e-20})
			out, dg, du := make([]float32, n), make([]float32, n), make([]float32, n)
			im.fwd(out, g, u)
			im.bwd(dg, du, g, u, d)
			for i := range g {
				wo, wdg, wdu, sc := swigluRef(g[i], u[i], d[i])
				// silu's value: exp (2 ulp), 1+e, the quotient, the product
				// with up; below about -87 exp clamps and silu*up is ~1e-36.
				if math.Abs(float64(out[i])-wo) > 4e-7*math.Abs(wo)+1e-35 {
					t.Fatalf("%s n=%d: swiglu(%g, %g) = %g, float64 %g", im.name, n, g[i], u[i], out[i], wo)
				}
				if math.Abs(float64(du[i])-wdu) > 4e-7*math.Abs(wdu)+1e-35 {
					t.Fatalf("%s n=%d: dup(%g)*%g = %g, float64 %g", im.name, n, g[i], d[i], du[i], wdu)
				}
				if math.Abs(float64(dg[i])-wdg) > 5e-7*sc+1e-35 {
					t.Fatalf("%s n=%d: dgate(%g, %g)*%g = %g, float64 %g", im.name, n, g[i], u[i], d[i], dg[i], wdg)
				}
			}
		}
	}
}

// TestSwiGLUValues pins a few exact cases: silu(0) = 0 (so both
// gradients' up side vanishes), silu'(0) = 1/2, and the large-|g| limits
// silu(g) -> g and -> 0.
func TestSwiGLUValues(t *testing.T) {
	for _, im := range swigluImpls {
		g := []float32{0, 100, -100}
		u := []float32{3, 2, 2}
		out, dg, du := make([]float32, 3), make([]float32, 3), make([]float32, 3)
		im.fwd(out, g, u)
		im.bwd(dg, du, g, u, []float32{1, 1, 1})
		if out[0] != 0 || du[0] != 0 || dg[0] != 1.5 {
			t.Errorf("%s: g=0 up=3: out %g dup %g dgate %g, want 0 0 1.5", im.name, out[0], du[0], dg[0])
		}
		if out[1] != 200 || du[1] != 100 || dg[1] != 2 {
			t.Errorf("%s: g=100 up=2: out %g dup %g dgate %g, want 200 100 2", im.name, out[1], du[1], dg[1])
		}
		if math.Abs(float64(out[2])) > 1e-30 || math.Abs(float64(dg[2])) > 1e-30 {
			t.Errorf("%s: g=-100: out %g dgate %g, want ~0", im.name, out[2], dg[2])
		}
	}
}

func TestSwiGLULengthsPanic(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("SwiGLU with a short output did not panic")
		}
	}()
	SwiGLU(make([]float32, 3), make([]float32, 4), make([]float32, 4))
}

// TestExp32: the portable exponential within 2.5e-7 relative of math.Exp
// over its unclamped range, and clamped beyond it.
func TestExp32(t *testing.T) {
	worst := 0.0
	for x := -87.3; x <= 88.7; x += 0.0137 {
		got, want := float64(exp32(float32(x))), math.Exp(float64(float32(x)))
		worst = max(worst, math.Abs(got-want)/want)
	}
	if worst > 2.5e-7 {
		t.Fatalf("exp32: worst relative error %.2g", worst)
	}
	if lo, hi := exp32(-1000), exp32(1000); lo != exp32(expLo) || hi != exp32(expHi) || math.IsInf(float64(hi), 0) || lo == 0 {
		t.Fatalf("exp32 clamps: exp32(-1000) = %g, exp32(1000) = %g", lo, hi)
	}
}

func BenchmarkSwiGLU(b *testing.B) {
	r := rand.New(rand.NewPCG(51, 1))
	const n = 1024
	g, u, d := randSlice(r, n, 2), randSlice(r, n, 1), randSlice(r, n, 1)
	out, dg, du := make([]float32, n), make([]float32, n), make([]float32, n)
	for _, im := range swigluImpls {
		b.Run("fwd/"+im.name, func(b *testing.B) {
			for b.Loop() {
				im.fwd(out, g, u)
			}
		})
		b.Run("bwd/"+im.name, func(b *testing.B) {
			for b.Loop() {
				im.bwd(dg, du, g, u, d)
			}
		})
	}
}
