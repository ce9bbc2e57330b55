package gemm

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkKernels compares the kernels on a few square and training shapes
// (short; the full preset table lives in bench/gemm).
func BenchmarkKernels(b *testing.B) {
	shapes := [][3]int{{1024, 1024, 1024}, {512, 384, 128}, {64, 64, 64}, {16, 16, 16}, {8, 8, 8}, {256, 256, 2}, {3, 1000, 1000}}
	for _, name := range Available() {
		for _, threads := range []int{1, 2} {
			e, err := NewNamed(threads, name)
			if err != nil {
				b.Fatal(err)
			}
			for _, s := range shapes {
				m, n, k := s[0], s[1], s[2]
				b.Run(fmt.Sprintf("%s/t%d/%dx%dx%d", name, threads, m, n, k), func(b *testing.B) {
					r := rand.New(rand.NewPCG(5, 6))
					x, y, z := randSlice(r, m*k), randSlice(r, k*n), make([]float32, m*n)
					for b.Loop() {
						e.Sgemm(false, false, m, n, k, 1, x, k, y, n, 0, z, n)
					}
					b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}
