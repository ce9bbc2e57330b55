package vec

import (
	"math/rand/v2"
	"testing"
)

func TestLayerNormRowMatchesPortable(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 1))
	for _, n := range lengths[1:] {
		x, w, b := randSlice(r, n, 2), randSlice(r, n, 1), randSlice(r, n, 1)
		for i := range x {
			x[i] += 3 // an offset mean, as in a residual stream
		}
		want, got := make([]float32, n), make([]float32, n+1)
		got[n] = 42
		wm, ws := layerNormRowGo(want, x, w, b, 1e-5)
		gm, gs := LayerNormRow(got[:n], x, w, b, 1e-5)
		if !relClose(float64(gm), float64(wm), 1e-5, 1) || !relClose(float64(gs), float64(ws), 1e-5, 0) {
			t.Fatalf("n=%d: mean, rstd %g %g, portable %g %g", n, gm, gs, wm, ws)
		}
		for i := range want {
			if !relClose(float64(got[i]), float64(want[i]), 3e-5, 1) {
				t.Fatalf("n=%d: out[%d] %g, portable %g", n, i, got[i], want[i])
			}
		}
		if got[n] != 42 {
			t.Fatalf("n=%d: wrote past the end", n)
		}

		dout := randSlice(r, n, 1)
		// start from nonzero accumulators: the row kernels add
		wdx, wdw, wdb := randSlice(r, n, 1), randSlice(r, n, 1), randSlice(r, n, 1)
		gdx, gdw, gdb := append([]float32(nil), wdx...), append([]float32(nil), wdw...), append([]float32(nil), wdb...)
		layerNormBackwardRowGo(wdx, wdw, wdb, dout, x, w, wm, ws)
		LayerNormBackwardRow(gdx, gdw, gdb, dout, x, w, wm, ws)
		for i := range wdx {
			if !relClose(float64(gdx[i]), float64(wdx[i]), 2e-5, 1) || !relClose(float64(gdw[i]), float64(wdw[i]), 1e-5, 1) || gdb[i] != wdb[i] {
				t.Fatalf("n=%d, element %d: dx %g dw %g db %g, portable %g %g %g", n, i, gdx[i], gdw[i], gdb[i], wdx[i], wdw[i], wdb[i])
			}
		}
	}
}

// TestLayerNormBackwardPieces: the row statistics, the input-gradient part
// and the parameter part, the latter two called on column ranges, give
// LayerNormBackwardRow's bits (the model splits rows for dx and columns for
// dw and db between goroutines).
func TestLayerNormBackwardPieces(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 1))
	for _, n := range []int{1, 15, 16, 17, 100, 384} {
		x, w, dout := randSlice(r, n, 2), randSlice(r, n, 1), randSlice(r, n, 1)
		dx0, dw0, db0 := randSlice(r, n, 1), randSlice(r, n, 1), randSlice(r, n, 1)
		mean, rstd := float32(0.1), float32(1.3)
		wx, ww, wb := append([]float32(nil), dx0...), append([]float32(nil), dw0...), append([]float32(nil), db0...)
		LayerNormBackwardRow(wx, ww, wb, dout, x, w, mean, rstd)
		gx, gw, gb := append([]float32(nil), dx0...), append([]float32(nil), dw0...), append([]float32(nil), db0...)
		a, b := LayerNormBackwardDots(dout, x, w, mean, rstd)
		for lo := 0; lo < n; lo += 7 { // ranges of 7 columns: odd cuts and tails
			hi := min(lo+7, n)
			LayerNormBackwardDx(gx[lo:hi], dout[lo:hi], x[lo:hi], w[lo:hi], mean, rstd, a, b)
			LayerNormBackwardParams(gw[lo:hi], gb[lo:hi], dout[lo:hi], x[lo:hi], mean, rstd)
		}
		for i := 0; i < n; i++ {
			if gx[i] != wx[i] || gw[i] != ww[i] || gb[i] != wb[i] {
				t.Fatalf("n=%d, column %d: dx %v dw %v db %v, whole row %v %v %v", n, i, gx[i], gw[i], gb[i], wx[i], ww[i], wb[i])
			}
		}
	}
}
