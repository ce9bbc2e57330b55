package gemm

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/strand-ml/strand/internal/alloctest"
)

// toBF16 truncates x to bf16 bit patterns (the tests need bf16 inputs, not
// a particular rounding) and returns them with their exact float32 values.
func toBF16(x []float32) ([]uint16, []float32) {
	h, w := make([]uint16, len(x)), make([]float32, len(x))
	for i, v := range x {
		h[i] = uint16(math.Float32bits(v) >> 16)
		w[i] = math.Float32frombits(uint32(h[i]) << 16)
	}
	return h, w
}

// bf16Engines are the GemmBF16 paths this CPU offers: the bf16 kernel (if
// any) and the widened fallback over SIMD and portable Sgemm.
func bf16Engines(t *testing.T, threads int) []*Engine {
	var es []*Engine
	for _, name := range Available() {
		e, err := NewNamed(threads, name)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	return es
}

func TestGemmBF16MatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	shapes := [][3]int{{1, 1, 1}, {13, 33, 17}, {25, 65, 257}, {12, 32, 768}, {14, 35, 769}, {200, 40, 31}, {21, 40, 1600}, {7, 9, 0}}
	// Every path at 1 thread; the bf16 kernel also at 2 (the widened paths
	// are Sgemm, tested for threads elsewhere).
	engines := append(bf16Engines(t, 1), New(2))
	for _, e := range engines {
		for i, s := range shapes {
			for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
				ab := [][2]float32{{1, 0}, {-1.5, 1}, {0.25, 2}}[i%3]
				tc := newCase(r, tr[0], tr[1], s[0], s[1], s[2], ab[0], ab[1], i%3)
				a16, aw := toBF16(tc.a)
				b16, bw := toBF16(tc.b)
				want, mag := naive(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, aw, tc.lda, bw, tc.ldb, tc.beta, tc.c, tc.ldc)
				c := append([]float32(nil), tc.c...)
				e.GemmBF16(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a16, tc.lda, b16, tc.ldb, tc.beta, c, tc.ldc)
				eps := float64(tc.k+2) * 0x1p-22
				for ii := 0; ii < tc.m; ii++ {
					for j := 0; j < tc.ldc; j++ {
						idx := ii*tc.ldc + j
						if j >= tc.n {
							if math.Float32bits(c[idx]) != math.Float32bits(tc.c[idx]) {
								t.Fatalf("%s %v: padding C[%d,%d] changed", e.BF16KernelName(), tc, ii, j)
							}
							continue
						}
						if d := math.Abs(float64(c[idx]) - want[idx]); !(d <= eps*mag[idx]+1e-30) {
							t.Fatalf("%s/%s %v: C[%d,%d]=%g want %g", e.BF16KernelName(), e.KernelName(), tc, ii, j, c[idx], want[idx])
						}
					}
				}
			}
		}
	}
}

func TestGemmBF16DeterministicAcrossThreads(t *testing.T) {
	r := rand.New(rand.NewPCG(33, 34))
	for _, s := range [][3]int{{150, 140, 900}, {50, 420, 801}} {
		tc := newCase(r, false, true, s[0], s[1], s[2], 0.7, 0.3, 1)
		a16, _ := toBF16(tc.a)
		b16, _ := toBF16(tc.b)
		var ref []float32
		for _, threads := range []int{1, 2, 3, 4} {
			e := New(threads)
			c := append([]float32(nil), tc.c...)
			e.GemmBF16(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a16, tc.lda, b16, tc.ldb, tc.beta, c, tc.ldc)
			if ref == nil {
				ref = c
				continue
			}
			for i := range c {
				if math.Float32bits(c[i]) != math.Float32bits(ref[i]) {
					t.Fatalf("%s %v: element %d differs between 1 and %d threads", e.BF16KernelName(), tc, i, threads)
				}
			}
		}
	}
}

func TestGemmBF16NoAllocs(t *testing.T) {
	m, n, k := 100, 140, 1200 // 16.8M multiply-adds: two tasks at 2 threads
	a, b, c := make([]uint16, m*k), make([]uint16, k*n), make([]float32, m*n)
	for _, threads := range []int{1, 2} {
		for _, e := range bf16Engines(t, threads) {
			allocs := alloctest.PerCall(3, 10, 8, func() {
				e.GemmBF16(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
			})
			if allocs >= alloctest.Tolerance {
				t.Errorf("%s/%s, %d threads: %v allocations per call, want 0", e.BF16KernelName(), e.KernelName(), threads, allocs)
			}
		}
	}
}

func TestGemmBF16PanicsOnShortSlice(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("short B accepted")
		}
	}()
	New(1).GemmBF16(false, false, 4, 4, 4, 1, make([]uint16, 16), 4, make([]uint16, 15), 4, 0, make([]float32, 16), 4)
}
