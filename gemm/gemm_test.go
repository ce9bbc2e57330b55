package gemm

import (
	"math"
	"math/rand/v2"
	"testing"
)

// naive is the textbook triple loop in float64, the reference for every kernel.
func naive(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) []float32 {
	out := make([]float32, len(c))
	copy(out, c)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				var av, bv float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += float64(av) * float64(bv)
			}
			out[i*ldc+j] = float32(float64(alpha)*s + float64(beta)*float64(c[i*ldc+j]))
		}
	}
	return out
}

func randSlice(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

func TestSgemmMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	shapes := [][3]int{{1, 1, 1}, {3, 5, 7}, {17, 13, 31}, {64, 48, 96}, {1, 33, 5}, {40, 1, 9}, {7, 9, 0}}
	for _, threads := range []int{1, 2, 3} {
		e := New(threads)
		for _, s := range shapes {
			m, n, k := s[0], s[1], s[2]
			for _, tA := range []bool{false, true} {
				for _, tB := range []bool{false, true} {
					for _, ab := range [][2]float32{{1, 0}, {0.5, 1}, {2, -0.5}} {
						lda, ldb, ldc := k+1, n+2, n+3
						if tA {
							lda = m + 1
						}
						if tB {
							ldb = k + 2
						}
						a := randSlice(r, max(m, k)*lda+1)
						b := randSlice(r, max(n, k)*ldb+1)
						c := randSlice(r, m*ldc)
						want := naive(tA, tB, m, n, k, ab[0], a, lda, b, ldb, ab[1], c, ldc)
						e.Sgemm(tA, tB, m, n, k, ab[0], a, lda, b, ldb, ab[1], c, ldc)
						for i := 0; i < m; i++ {
							for j := 0; j < n; j++ {
								got, w := c[i*ldc+j], want[i*ldc+j]
								if math.Abs(float64(got-w)) > 1e-4*(1+math.Abs(float64(w)))*math.Sqrt(float64(k+1)) {
									t.Fatalf("threads=%d m,n,k=%v tA=%v tB=%v alpha,beta=%v: C[%d,%d]=%g want %g", threads, s, tA, tB, ab, i, j, got, w)
								}
							}
						}
					}
				}
			}
		}
	}
}

func TestSgemmDeterministicAcrossThreads(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	m, n, k := 96, 80, 200
	a, b := randSlice(r, m*k), randSlice(r, k*n)
	c1 := make([]float32, m*n)
	c2 := make([]float32, m*n)
	New(1).Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c1, n)
	New(4).Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c2, n)
	for i := range c1 {
		if math.Float32bits(c1[i]) != math.Float32bits(c2[i]) {
			t.Fatalf("element %d differs between 1 and 4 threads: %g vs %g", i, c1[i], c2[i])
		}
	}
}

func TestSgemmPanicsOnShortSlice(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("short A accepted")
		}
	}()
	New(1).Sgemm(false, false, 4, 4, 4, 1, make([]float32, 15), 4, make([]float32, 16), 4, 0, make([]float32, 16), 4)
}

func BenchmarkSgemm256(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	n := 256
	x, y, z := randSlice(r, n*n), randSlice(r, n*n), make([]float32, n*n)
	e := New(1)
	b.SetBytes(0)
	for b.Loop() {
		e.Sgemm(false, false, n, n, n, 1, x, n, y, n, 0, z, n)
	}
	b.ReportMetric(2*float64(n*n*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}
