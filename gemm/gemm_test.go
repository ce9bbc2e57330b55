package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/strand-ml/strand/internal/alloctest"
)

// naive is the textbook triple loop in float64, the reference for every
// kernel. Besides the result it returns, per element, the magnitude
// |alpha|*sum|a*b| + |beta*c| that bounds the rounding error of any
// float32 evaluation order.
func naive(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) (out, mag []float64) {
	out = make([]float64, len(c))
	mag = make([]float64, len(c))
	for i := range c {
		out[i] = float64(c[i])
	}
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, sa float64
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
				sa += math.Abs(float64(av) * float64(bv))
			}
			cv := float64(c[i*ldc+j])
			if beta == 0 {
				cv = 0 // C is not read when beta is 0 (it may hold NaN)
			}
			out[i*ldc+j] = float64(alpha)*s + float64(beta)*cv
			mag[i*ldc+j] = math.Abs(float64(alpha))*sa + math.Abs(float64(beta)*cv)
		}
	}
	return out, mag
}

func randSlice(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// testCase is one random GEMM with padded leading dimensions.
type testCase struct {
	tA, tB      bool
	m, n, k     int
	alpha, beta float32
	lda, ldb    int
	ldc         int
	a, b, c     []float32
	want, mag   []float64 // float64 reference, computed on first use
}

func newCase(r *rand.Rand, tA, tB bool, m, n, k int, alpha, beta float32, pad int) *testCase {
	tc := &testCase{tA: tA, tB: tB, m: m, n: n, k: k, alpha: alpha, beta: beta}
	ar, ac := m, k
	if tA {
		ar, ac = k, m
	}
	br, bc := k, n
	if tB {
		br, bc = n, k
	}
	tc.lda, tc.ldb, tc.ldc = ac+pad, bc+2*pad, n+3*pad
	tc.a = randSlice(r, ar*tc.lda)
	tc.b = randSlice(r, br*tc.ldb)
	tc.c = randSlice(r, m*tc.ldc)
	if beta == 0 {
		for i := range tc.c {
			tc.c[i] = float32(math.NaN()) // must not leak into the result
		}
	}
	return tc
}

func (tc *testCase) String() string {
	return fmt.Sprintf("tA=%v tB=%v m,n,k=%d,%d,%d alpha=%g beta=%g ld=%d,%d,%d",
		tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, tc.beta, tc.lda, tc.ldb, tc.ldc)
}

// check runs e on a copy of tc.c and compares with the float64 reference,
// allowing float32 rounding only: |got-want| <= (k+2) * 2^-23 * magnitude.
// Padding columns of C (beyond n) must be untouched.
func check(t *testing.T, e *Engine, tc *testCase) {
	t.Helper()
	c := append([]float32(nil), tc.c...)
	if tc.want == nil {
		tc.want, tc.mag = naive(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, tc.a, tc.lda, tc.b, tc.ldb, tc.beta, tc.c, tc.ldc)
	}
	want, mag := tc.want, tc.mag
	e.Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, tc.a, tc.lda, tc.b, tc.ldb, tc.beta, c, tc.ldc)
	eps := float64(tc.k+2) * math.Pow(2, -23)
	for i := 0; i < tc.m; i++ {
		for j := 0; j < tc.ldc; j++ {
			idx := i*tc.ldc + j
			got := float64(c[idx])
			if j >= tc.n {
				if math.Float32bits(c[idx]) != math.Float32bits(tc.c[idx]) {
					t.Fatalf("%s %v: padding C[%d,%d] changed from %g to %g", e.KernelName(), tc, i, j, tc.c[idx], got)
				}
				continue
			}
			if d := math.Abs(got - want[idx]); !(d <= eps*mag[idx]+1e-30) {
				t.Fatalf("%s %v: C[%d,%d]=%g want %g (diff %g, bound %g)", e.KernelName(), tc, i, j, got, want[idx], d, eps*mag[idx])
			}
		}
	}
}

// allEngines is every kernel this CPU offers at each thread count.
func allEngines(t *testing.T, threads ...int) []*Engine {
	var es []*Engine
	for _, name := range Available() {
		for _, th := range threads {
			e, err := NewNamed(th, name)
			if err != nil {
				t.Fatal(err)
			}
			es = append(es, e)
		}
	}
	return es
}

func TestSgemmMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	shapes := [][3]int{{1, 1, 1}, {3, 5, 7}, {17, 13, 31}, {64, 48, 96}, {1, 33, 5}, {40, 1, 9}, {7, 9, 0}}
	engines := allEngines(t, 1, 2, 3)
	for _, s := range shapes {
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				for _, ab := range [][2]float32{{1, 0}, {0.5, 1}, {2, -0.5}, {0, 0.5}} {
					tc := newCase(r, tA, tB, s[0], s[1], s[2], ab[0], ab[1], 1)
					for _, e := range engines {
						check(t, e, tc)
					}
				}
			}
		}
	}
}

// TestSgemmBlockedEdges drives the SIMD kernels across every block and tile
// boundary: odd sizes around MR/NR, k across kc (384), m across mc, n across
// nc (2048), all transposes and padded leading dimensions.
func TestSgemmBlockedEdges(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	shapes := [][3]int{
		{12, 32, 16}, {13, 33, 17}, {11, 31, 255}, {25, 65, 257}, {6, 16, 513},
		{200, 40, 30}, {250, 70, 300}, {5, 2100, 3}, {37, 2085, 19}, {97, 3, 61}, {14, 35, 385}, {26, 40, 769},
	}
	engines := allEngines(t, 1, 2)
	for i, s := range shapes {
		tA, tB := i%2 == 1, i%4 >= 2
		ab := [][2]float32{{1, 0}, {-1.5, 1}, {0.25, 2}}[i%3]
		for _, tc := range []*testCase{
			newCase(r, tA, tB, s[0], s[1], s[2], ab[0], ab[1], i%3),
			newCase(r, !tA, !tB, s[0], s[1], s[2], ab[0], ab[1], 2),
		} {
			for _, e := range engines {
				check(t, e, tc)
			}
		}
	}
}

// TestSgemmRandomShapes checks random shapes, transposes and scalars.
func TestSgemmRandomShapes(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, name := range Available() {
		e, _ := NewNamed(2, name)
		for it := 0; it < 40; it++ {
			m, n, k := 1+r.IntN(90), 1+r.IntN(90), 1+r.IntN(300)
			alpha := []float32{1, -1, 0.3}[r.IntN(3)]
			beta := []float32{0, 1, -0.7}[r.IntN(3)]
			check(t, e, newCase(r, r.IntN(2) == 0, r.IntN(2) == 0, m, n, k, alpha, beta, r.IntN(4)))
		}
	}
}

// TestSgemmDeterministicAcrossThreads: every element of C must get the same
// bits whatever the thread count, for both split directions (n <= 2m splits
// rows, wider C splits columns) and all transposes.
func TestSgemmDeterministicAcrossThreads(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	// row strips sharing B (over two k blocks; over two nc column blocks),
	// column strips sharing A (three k blocks; two mc row blocks, the
	// last ending in a partial panel): the shared operand is packed once
	// per call.
	// Each shape is at least 2*minBlockedWorkPerTask, so 2+ tasks run it.
	shapes := [][3]int{{150, 140, 400}, {2200, 2100, 8}, {50, 420, 800}, {310, 700, 300}}
	for _, name := range Available() {
		for _, s := range shapes {
			if s[0]*s[1] > 1<<20 && (name == "portable" || raceEnabled) {
				continue // millions of elements: too slow under -race; portable has no packing
			}
			for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
				tc := newCase(r, tr[0], tr[1], s[0], s[1], s[2], 0.7, 0.3, 1)
				var ref []float32
				for _, threads := range []int{1, 2, 3, 7} {
					e, _ := NewNamed(threads, name)
					c := append([]float32(nil), tc.c...)
					e.Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, tc.a, tc.lda, tc.b, tc.ldb, tc.beta, c, tc.ldc)
					if ref == nil {
						ref = c
						continue
					}
					for i := range c {
						if math.Float32bits(c[i]) != math.Float32bits(ref[i]) {
							t.Fatalf("%s %v: element %d differs between 1 and %d threads: %g vs %g", name, tc, i, threads, ref[i], c[i])
						}
					}
				}
			}
		}
	}
}

// TestSgemmReusesWorkspace: a steady-state call allocates nothing, on one
// thread or several (layers call GEMM many times in every training step).
func TestSgemmReusesWorkspace(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	m, n, k := 100, 140, 600 // 8.4M multiply-adds: two tasks at 2 threads
	a, b, c := randSlice(r, m*k), randSlice(r, k*n), make([]float32, m*n)
	for _, name := range Available() {
		for _, threads := range []int{1, 2} {
			e, _ := NewNamed(threads, name)
			allocs := alloctest.PerCall(3, 10, 8, func() {
				e.Sgemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n)
			})
			if allocs >= alloctest.Tolerance {
				t.Errorf("%s, %d threads: %v allocations per call, want 0", name, threads, allocs)
			}
		}
	}
}

// TestEngineWorkersExit: a multi-threaded GEMM starts workers, and they
// stop once their Engine is unreachable.
func TestEngineWorkersExit(t *testing.T) {
	var tm *team
	func() {
		r := rand.New(rand.NewPCG(13, 14))
		m := 256 // 2^24 multiply-adds: four tasks
		a, c := randSlice(r, m*m), make([]float32, m*m)
		e := New(4)
		e.Sgemm(false, false, m, m, m, 1, a, m, a, m, 0, c, m)
		tm = e.team.t
		if got := tm.live.Load(); got != 3 {
			t.Fatalf("a 4-thread GEMM left %d live workers, want 3", got)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for tm.live.Load() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers still live after their engine was dropped", tm.live.Load())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNewNamedRejectsUnknownKernel(t *testing.T) {
	if _, err := NewNamed(1, "sse9"); err == nil {
		t.Fatal("unknown kernel accepted")
	}
	e, err := NewNamed(1, "portable")
	if err != nil || e.KernelName() != "portable" {
		t.Fatalf("portable: %v, %v", e, err)
	}
	if got, want := New(1).KernelName(), Available()[0]; got != want {
		t.Fatalf("New picked %q, want the fastest available %q", got, want)
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

func TestSgemmPanicsOnNegativeDimension(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("negative k accepted")
		}
	}()
	New(1).Sgemm(false, false, 2, 2, -1, 1, make([]float32, 4), 2, make([]float32, 4), 2, 0, make([]float32, 4), 2)
}

// TestSgemmConcurrentCalls: one Engine (and its WithThreads copies, which
// share buffers and workers) used from several goroutines at once gives
// the same bits as serial calls.
func TestSgemmConcurrentCalls(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	m, n, k := 150, 140, 800 // 16.8M multiply-adds: split into up to 4 tasks
	a, b := randSlice(r, m*k), randSlice(r, k*n)
	e := New(2)
	want := make([]float32, m*n)
	e.Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, want, n)
	engines := []*Engine{e, e.WithThreads(1), e.WithThreads(3)}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := make([]float32, m*n)
			for it := 0; it < 10; it++ {
				engines[(g+it)%len(engines)].Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
				for i := range c {
					if math.Float32bits(c[i]) != math.Float32bits(want[i]) {
						errs <- fmt.Sprintf("goroutine %d call %d: element %d = %g, want %g", g, it, i, c[i], want[i])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
}
