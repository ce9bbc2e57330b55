package vec

import (
	"math"
	"math/rand/v2"
	"testing"
)

// rmsRef is one RMSNorm row forward and backward in float64 from the
// definition: out = x*r*w with r = 1/sqrt(mean(x^2)+eps); with dn = w*d,
// dx = r*(dn - norm*mean(dn*norm)) and dw = norm*d, norm = x*r.
func rmsRef(x, w, d []float32, eps float64) (out, dx, dw []float64, r float64) {
	n := len(x)
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	r = 1 / math.Sqrt(ss/float64(n)+eps)
	out, dx, dw = make([]float64, n), make([]float64, n), make([]float64, n)
	var dot float64
	for i := range x {
		dot += float64(w[i]) * float64(d[i]) * float64(x[i]) * r
	}
	dot /= float64(n)
	for i := range x {
		norm := float64(x[i]) * r
		out[i] = norm * float64(w[i])
		dx[i] = r * (float64(w[i])*float64(d[i]) - norm*dot)
		dw[i] = norm * float64(d[i])
	}
	return out, dx, dw, r
}

// rmsImpl is one implementation of the RMSNorm row functions.
type rmsImpl struct {
	name   string
	row    func(out, x, w []float32, eps float32) float32
	dot    func(dout, x, w []float32, rstd float32) float32
	dx     func(dx, dout, x, w []float32, rstd, dnNormMean float32)
	params func(dw, dout, x []float32, rstd float32)
}

var rmsImpls = []rmsImpl{
	{"exported", RMSNormRow, RMSNormBackwardDot, RMSNormBackwardDx, RMSNormBackwardParams},
	{"go", rmsNormRowGo, rmsNormBackwardDotGo, rmsNormBackwardDxGo, rmsNormBackwardParamsGo},
}

// TestRMSNormMatchesFloat64: forward and the backward pieces within float32
// rounding of the float64 definition, and the pieces accumulate into dx
// and dw (called twice: twice the gradient).
func TestRMSNormMatchesFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(60, 1))
	const eps = 1e-5
	for _, im := range rmsImpls {
		for _, n := range append(lengths[1:], 384, 1024) {
			x, w, d := randSlice(r, n, 2), randSlice(r, n, 1), randSlice(r, n, 1)
			wantOut, wantDx, wantDw, wantR := rmsRef(x, w, d, eps)
			out := make([]float32, n)
			rstd := im.row(out, x, w, eps)
			if !relClose(float64(rstd), wantR, 1e-6, 0) {
				t.Fatalf("%s n=%d: rstd %g, float64 %g", im.name, n, rstd, wantR)
			}
			dx, dw := make([]float32, n), make([]float32, n)
			for range 2 {
				dot := im.dot(d, x, w, rstd)
				im.dx(dx, d, x, w, rstd, dot)
				im.params(dw, d, x, rstd)
			}
			// scale of dx's terms for its cancellation: r*(|dn| + |norm|*mean|dn*norm|)
			var mdn float64
			for i := range x {
				mdn += math.Abs(float64(w[i]*d[i]) * float64(x[i]) * wantR)
			}
			mdn /= float64(n)
			for i := range x {
				norm := math.Abs(float64(x[i]) * wantR)
				if !relClose(float64(out[i]), wantOut[i], 1e-6, 1e-30) {
					t.Fatalf("%s n=%d: out[%d] %g, float64 %g", im.name, n, i, out[i], wantOut[i])
				}
				sc := wantR * (math.Abs(float64(w[i]*d[i])) + norm*mdn)
				if math.Abs(float64(dx[i])-2*wantDx[i]) > 2e-6*sc {
					t.Fatalf("%s n=%d: dx[%d] %g, float64 %g", im.name, n, i, dx[i], 2*wantDx[i])
				}
				if !relClose(float64(dw[i]), 2*wantDw[i], 1e-6, 1e-30) {
					t.Fatalf("%s n=%d: dw[%d] %g, float64 %g", im.name, n, i, dw[i], 2*wantDw[i])
				}
			}
		}
	}
}

// TestRMSNormPiecesAnyColumns: the element-wise backward pieces on two
// column ranges give the whole-row call's bits.
func TestRMSNormPiecesAnyColumns(t *testing.T) {
	r := rand.New(rand.NewPCG(61, 1))
	const n, cut = 100, 37
	x, w, d := randSlice(r, n, 2), randSlice(r, n, 1), randSlice(r, n, 1)
	dx0, dw0 := randSlice(r, n, 1), randSlice(r, n, 1)
	dx1, dw1 := append([]float32(nil), dx0...), append([]float32(nil), dw0...)
	const rstd, dot = 0.7, 0.05
	RMSNormBackwardDx(dx0, d, x, w, rstd, dot)
	RMSNormBackwardParams(dw0, d, x, rstd)
	for _, c := range [][2]int{{0, cut}, {cut, n}} {
		RMSNormBackwardDx(dx1[c[0]:c[1]], d[c[0]:c[1]], x[c[0]:c[1]], w[c[0]:c[1]], rstd, dot)
		RMSNormBackwardParams(dw1[c[0]:c[1]], d[c[0]:c[1]], x[c[0]:c[1]], rstd)
	}
	if i := firstBitDiff(dx1, dx0); i >= 0 {
		t.Fatalf("dx[%d]: split %g, whole row %g", i, dx1[i], dx0[i])
	}
	if i := firstBitDiff(dw1, dw0); i >= 0 {
		t.Fatalf("dw[%d]: split %g, whole row %g", i, dw1[i], dw0[i])
	}
}

func TestRMSNormLengthsPanic(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("RMSNormRow with a short weight did not panic")
		}
	}()
	RMSNormRow(make([]float32, 4), make([]float32, 4), make([]float32, 3), 1e-5)
}

// firstBitDiff is the first index where a and b differ in their bits, or
// -1 (sameBits of the amd64 tests, for every architecture).
func firstBitDiff(a, b []float32) int {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}
