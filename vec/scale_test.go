package vec

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestScaleMatchesScalarToTheBit(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 1))
	for _, n := range append(lengths, 16, 31, 32, 33, 4096) {
		x := randSlice(r, n+1, 3)
		want32, want64 := append([]float32(nil), x...), append([]float32(nil), x...)
		for i := 0; i < n; i++ {
			want32[i] *= 0.3
			want64[i] = float32(float64(want64[i]) * (1 / 7.0))
		}
		x32, x64 := append([]float32(nil), x...), append([]float32(nil), x...)
		Scale(x32[:n], 0.3)
		ScaleF64(x64[:n], 1/7.0)
		for i := range x {
			if x32[i] != want32[i] || x64[i] != want64[i] {
				t.Fatalf("n=%d, element %d: Scale %g want %g, ScaleF64 %g want %g (index n must stay)", n, i, x32[i], want32[i], x64[i], want64[i])
			}
		}
	}
}

// TestSumSquares: the AVX-512 and portable orders agree to the bit, and
// both are within rounding of a float64 sequential sum.
func TestSumSquares(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 1))
	for _, n := range append(lengths, 16, 17, 48, 100000) {
		x := randSlice(r, n, 5)
		got := SumSquares(x)
		var seq float64
		for _, v := range x {
			seq += float64(v) * float64(v)
		}
		m := n &^ 15
		port := 0.0
		if m > 0 {
			port = sumSquaresGo(x[:m])
		}
		for _, v := range x[m:] {
			port += float64(v) * float64(v)
		}
		if math.Float64bits(got) != math.Float64bits(port) {
			t.Fatalf("n=%d: %v, portable order %v", n, got, port)
		}
		if math.Abs(got-seq) > 1e-12*math.Max(seq, 1e-300) {
			t.Fatalf("n=%d: %v, sequential sum %v", n, got, seq)
		}
	}
}

func TestMaxAndSubMul(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 1))
	for _, n := range append(lengths, 16, 48, 64, 65) {
		x := randSlice(r, n, 4)
		want := float32(math.Inf(-1))
		for _, v := range x {
			want = max(want, v)
		}
		if got := Max(x); got != want {
			t.Fatalf("n=%d: Max %v, want %v", n, got, want)
		}
		d, p := randSlice(r, n+1, 1), randSlice(r, n, 1)
		wd := append([]float32(nil), d...)
		for i := 0; i < n; i++ {
			wd[i] = p[i] * (wd[i] - 0.3)
		}
		SubMul(d[:n], p, 0.3)
		for i := range d {
			if d[i] != wd[i] {
				t.Fatalf("n=%d, element %d: SubMul %v, want %v (index n must stay)", n, i, d[i], wd[i])
			}
		}
	}
	if m := Max(nil); !math.IsInf(float64(m), -1) {
		t.Fatalf("Max(nil) = %v, want -Inf", m)
	}
}
