package gemm

import (
	"fmt"
	"runtime"

	"github.com/strand-ml/strand/gemm/internal/kernels"
)

// Kernel computes rows [i0, i1) of C = alpha*op(A)*op(B) + beta*C.
// Arguments follow BLAS sgemm in row-major order: op(A) is m x k, op(B) is
// k x n, C is m x n; lda, ldb and ldc are row strides of the stored matrices.
type Kernel func(transA, transB bool, i0, i1, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)

// Engine runs GEMMs on a bounded number of goroutines.
// The zero value is not usable; call New or NewPortable.
type Engine struct {
	threads int
	kernel  Kernel       // row-range kernel: small problems, or the only one
	blk     *blocked     // SIMD blocked path; nil for portable-only engines
	bf      *blockedBF16 // bf16 SIMD path for GemmBF16; nil without AVX512-BF16
	widen   *widenPool   // float32 buffers for GemmBF16 without bf
	pool    *callPool    // calls and packing buffers reused across calls
	team    *teamHandle  // worker goroutines, started on first use
	name    string
}

// New returns an engine using up to threads goroutines (0 means all cores)
// and the fastest kernel this CPU supports: AVX-512, then AVX2+FMA, then
// the portable pure-Go kernel. Tiny problems still go to the portable
// kernel, where packing would cost more than it saves.
func New(threads int) *Engine {
	e := NewPortable(threads)
	if ks := kernels.Available(); len(ks) > 0 {
		e.blk, e.name = newBlocked(ks[0]), ks[0].Name
	}
	if mk := kernels.AvailableBF16(); mk != nil && e.blk != nil {
		e.bf = newBlockedBF16(*mk, &e.blk.micro)
	}
	return e
}

// NewPortable returns an engine that only uses the pure-Go kernel, for
// reference runs and for machines where the SIMD kernels misbehave.
func NewPortable(threads int) *Engine {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	return &Engine{threads: threads, kernel: Portable, pool: new(callPool), team: newTeamHandle(), widen: new(widenPool), name: "portable"}
}

// NewNamed returns an engine forced to one kernel by name: "portable" or one
// of Available(). It fails when this CPU cannot run the named kernel.
func NewNamed(threads int, name string) (*Engine, error) {
	e := NewPortable(threads)
	if name == "portable" {
		return e, nil
	}
	for _, mk := range kernels.Available() {
		if mk.Name == name {
			e.blk, e.name = newBlocked(mk), mk.Name
			if bf := kernels.AvailableBF16(); bf != nil && name == "avx512" {
				e.bf = newBlockedBF16(*bf, &mk)
			}
			return e, nil
		}
	}
	return nil, fmt.Errorf("gemm: kernel %q not available on this CPU (have %v)", name, Available())
}

// Available names the kernels this CPU can run, fastest first; "portable"
// is always last.
func Available() []string {
	var names []string
	for _, mk := range kernels.Available() {
		names = append(names, mk.Name)
	}
	return append(names, "portable")
}

// WithKernel returns a copy of e that uses the row-range kernel k for every
// call, reported as name.
func (e *Engine) WithKernel(name string, k Kernel) *Engine {
	c := *e
	c.kernel, c.name, c.blk, c.bf, c.pool = k, name, nil, nil, new(callPool)
	return &c
}

// Threads is the maximum number of goroutines one call uses.
func (e *Engine) Threads() int { return e.threads }

// KernelName names the kernel in use (for logs and benchmarks).
func (e *Engine) KernelName() string { return e.name }

// minFlopsPerTask keeps tiny GEMMs on one goroutine, where spawning costs
// more than it saves.
const minFlopsPerTask = 1 << 16

// minBlockedWorkPerTask (in m*n*k) keeps small SIMD GEMMs on one
// goroutine: a second task is only started for 2x this much work. At
// ~190 GFLOP/s per core 2^22 multiply-adds take ~45 us; waking a parked
// worker, packing the shared operand in a separate phase and waiting for
// the worker cost tens of microseconds. With 2^20 the gpt2s attention
// products (256x256x64 and 256x64x256, 2^22 each) ran 2-2.5x slower on 2
// threads than on 1 (issue #8).
const minBlockedWorkPerTask = 1 << 22

// minBlockedWork is the m*n*k below which packing costs about as much as
// the SIMD micro-kernel saves; at 16x16x16 the SIMD path is already about
// 3x faster than Portable, at 8x8x8 they are level (BenchmarkKernels).
const minBlockedWork = MinPackedWork

// MinPackedWork is the fewest multiply-adds (m*n*k) a product needs to take
// the packed SIMD path on an engine that has one; smaller products take the
// portable loops. The two paths sum in different orders, so a caller that
// splits a product by rows and wants the unsplit product's bits (model's
// lane forward) keeps every piece at or above this size. Above it, an
// output row's bits do not depend on which other rows are computed with
// it, nor on the thread count.
const MinPackedWork = 4096

// useBlocked decides between the SIMD blocked path and Portable. Besides
// tiny problems, a matrix-vector product against B^T (n == 1) is left to
// Portable's dot products: the blocked path would pack B and fill a 32-wide
// tile for one column (measured 1.4x slower at 1000x1x1000).
func (e *Engine) useBlocked(transB bool, m, n, k int, alpha float32) bool {
	return e.blk != nil && k > 0 && alpha != 0 && m*n*k >= minBlockedWork && !(n == 1 && transB)
}

// Sgemm computes C = alpha*op(A)*op(B) + beta*C. op(A) is m x k, op(B) is
// k x n, C is m x n, all row-major. With transA, A is stored k x m; with
// transB, B is stored n x k. It panics when a slice is too short for the
// given shape, which is a programming error inside strand.
//
// beta == 0 means C is not read (NaNs in C do not propagate). Safe for
// concurrent use.
func (e *Engine) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("gemm: negative dimension m=%d n=%d k=%d", m, n, k))
	}
	if m == 0 || n == 0 {
		return
	}
	checkShape("A", transA, m, k, a, lda)
	checkShape("B", transB, k, n, b, ldb)
	checkShape("C", false, m, n, c, ldc)
	cl := e.pool.get()
	cl.e = e
	cl.args = gemmArgs{transA, transB, m, n, k, alpha, beta, a, lda, b, ldb, c, ldc}
	work := m * n * k
	if e.useBlocked(transB, m, n, k, alpha) {
		e.planBlocked(cl)
		if cl.pre.a != nil || cl.pre.b != nil {
			cl.kind = kindPrepack
			e.team.t.run(cl)
			cl.kind = kindBlocked
		}
	} else {
		cl.kind = kindRowRange
		cl.tasks = max(1, min(e.threads, work/minFlopsPerTask, m))
	}
	e.team.t.run(cl)
	e.pool.put(cl)
}

// planBlocked splits C into strips of whole tiles for the tasks to claim.
// With several tasks the operand the strips share is packed once (prepack)
// but still streamed from L3 by every strip. Row strips are preferred up to
// n = 2m: each packs its own A block into its core's L2 (the BLIS layout)
// and row tiles (12) are finer than column tiles (32), so the tasks end
// closer together; at 2 threads 1024x1152x384 and 1024x1536x384 ran 4-8%
// faster split by rows than by columns. Wider C (the LM head, 384x1536
// weight gradients) is split by columns, which measured faster there.
func (e *Engine) planBlocked(cl *call) {
	g := &cl.args
	cl.kind = kindBlocked
	mr, nr := e.blk.micro.MR, e.blk.micro.NR
	cl.splitRows = g.n <= 2*g.m
	cl.tiles = (g.m + mr - 1) / mr
	if !cl.splitRows {
		cl.tiles = (g.n + nr - 1) / nr
	}
	cl.tasks = max(1, min(e.threads, g.m*g.n*g.k/minBlockedWorkPerTask, cl.tiles))
	cl.planStrips(minStripTiles(cl.splitRows, mr, nr))
	cl.pre = prepacked{}
	if cl.tasks > 1 {
		// the shared operand is packed once, by all tasks together, before
		// the strips (Sgemm runs the kindPrepack phase first)
		cl.preBuf = e.blk.preparePrepack(&cl.pre, cl.preBuf, g, cl.splitRows)
	}
}

// minStripTiles keeps strips at least 48 rows or 128 columns thick: every
// strip streams the shared operand (prepacked, or packed again per strip
// on the bf16 path) once more. Thinner strips end the tasks closer
// together; at 2 threads 48 rather than 96 rows was ~4% faster on
// 1024x1152x384 and 1024x384x1536, while 64 rather than 128 columns was
// slower on the LM head (1024x4096x384), whose A every strip rereads.
func minStripTiles(splitRows bool, mr, nr int) int {
	if splitRows {
		return ceilDiv(48, mr)
	}
	return ceilDiv(128, nr)
}

func checkShape(name string, trans bool, rows, cols int, x []float32, ld int) {
	checkLen(name, trans, rows, cols, len(x), ld)
}

// Portable is the pure-Go kernel. Its inner loops run over contiguous memory
// for every transpose case, accumulating in float32 in a fixed order of k.
func Portable(transA, transB bool, i0, i1, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := i0; i < i1; i++ {
		crow := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(crow)
		} else if beta != 1 {
			for j := range crow {
				crow[j] *= beta
			}
		}
	}
	if k == 0 || alpha == 0 {
		return
	}
	switch {
	case !transB:
		// C[i,:] += alpha*A[i,p] * B[p,:] : axpy over contiguous rows of B.
		for i := i0; i < i1; i++ {
			crow := c[i*ldc : i*ldc+n]
			for p := 0; p < k; p++ {
				var av float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if av == 0 {
					continue
				}
				av *= alpha
				brow := b[p*ldb : p*ldb+n]
				for j, bv := range brow {
					crow[j] += av * bv
				}
			}
		}
	case !transA:
		// A * B^T: C[i,j] += alpha * dot(A[i,:], B[j,:]), both rows contiguous.
		for i := i0; i < i1; i++ {
			arow := a[i*lda : i*lda+k]
			crow := c[i*ldc : i*ldc+n]
			for j := 0; j < n; j++ {
				crow[j] += alpha * dot(arow, b[j*ldb:j*ldb+k])
			}
		}
	default:
		// A^T * B^T: rare; gather the column of A once per row of C.
		col := make([]float32, k)
		for i := i0; i < i1; i++ {
			for p := 0; p < k; p++ {
				col[p] = a[p*lda+i]
			}
			crow := c[i*ldc : i*ldc+n]
			for j := 0; j < n; j++ {
				crow[j] += alpha * dot(col, b[j*ldb:j*ldb+k])
			}
		}
	}
}

// dot sums x[i]*y[i] with four independent accumulators (in a fixed order,
// so the result is deterministic) to give the CPU some instruction-level
// parallelism.
func dot(x, y []float32) float32 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// WithThreads returns a copy of e limited to threads goroutines.
func (e *Engine) WithThreads(threads int) *Engine {
	c := *e
	if threads < 1 {
		threads = 1
	}
	c.threads = threads
	return &c
}
