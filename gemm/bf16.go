package gemm

import (
	"fmt"
	"math"
	"sync"
	"unsafe"

	"github.com/strand-ml/strand/gemm/internal/kernels"
)

// GemmBF16 computes C = alpha*op(A)*op(B) + beta*C where A and B hold
// bfloat16 values as bit patterns (see package numeric) and C is float32.
// Shapes, transposes and leading dimensions are as for Sgemm. Products of
// bf16 values are exact in float32 and are summed in float32, so the result
// differs from Sgemm on the widened inputs by summation rounding only.
//
// With AVX512-BF16 (VDPBF16PS) it runs a blocked GEMM around a bf16
// micro-kernel at about twice the float32 rate; note that VDPBF16PS treats
// subnormal inputs as zero. Without it, A and B are widened to float32 and
// Sgemm runs. Like Sgemm, results do not depend on the thread count, a
// steady-state call does not allocate, and a short slice panics.
func (e *Engine) GemmBF16(transA, transB bool, m, n, k int, alpha float32, a []uint16, lda int, b []uint16, ldb int, beta float32, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("gemm: negative dimension m=%d n=%d k=%d", m, n, k))
	}
	if m == 0 || n == 0 {
		return
	}
	checkLen("A", transA, m, k, len(a), lda)
	checkLen("B", transB, k, n, len(b), ldb)
	checkLen("C", false, m, n, len(c), ldc)
	if e.bf == nil || k == 0 || alpha == 0 || m*n*k < minBlockedWork {
		e.gemmBF16Widened(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	cl := e.pool.get()
	cl.e = e
	cl.kind = kindBF16
	cl.bargs = bf16Args{transA, transB, m, n, k, alpha, beta, a, lda, b, ldb, c, ldc}
	cl.splitRows = n <= m
	mr, nr := e.bf.micro.MR, e.bf.micro.NR
	cl.tiles = ceilDiv(m, mr)
	if !cl.splitRows {
		cl.tiles = ceilDiv(n, nr)
	}
	// The bf16 kernel does twice the work per cycle, so a task needs twice
	// the multiply-adds to be worth a worker.
	cl.tasks = max(1, min(e.threads, m*n*k/(2*minBlockedWorkPerTask), cl.tiles))
	cl.planStrips(minStripTiles(cl.splitRows, mr, nr))
	e.team.t.run(cl)
	e.pool.put(cl)
}

// gemmBF16Widened widens A and B to float32 (buffers reused across calls)
// and runs Sgemm: the path for CPUs without AVX512-BF16 and tiny problems.
func (e *Engine) gemmBF16Widened(transA, transB bool, m, n, k int, alpha float32, a []uint16, lda int, b []uint16, ldb int, beta float32, c []float32, ldc int) {
	na, nb := spanLen(transA, m, k, lda), spanLen(transB, k, n, ldb)
	buf := e.widen.get(na + nb)
	wa, wb := buf[:na], buf[na:na+nb]
	for i, h := range a[:na] {
		wa[i] = math.Float32frombits(uint32(h) << 16)
	}
	for i, h := range b[:nb] {
		wb[i] = math.Float32frombits(uint32(h) << 16)
	}
	e.Sgemm(transA, transB, m, n, k, alpha, wa, lda, wb, ldb, beta, c, ldc)
	e.widen.put(buf)
}

// spanLen is the number of elements a rows x cols operand (stored
// transposed when trans) spans with leading dimension ld.
func spanLen(trans bool, rows, cols, ld int) int {
	if trans {
		rows, cols = cols, rows
	}
	if rows == 0 || cols == 0 {
		return 0
	}
	return (rows-1)*ld + cols
}

func checkLen(name string, trans bool, rows, cols, n, ld int) {
	if trans {
		rows, cols = cols, rows
	}
	if rows == 0 || cols == 0 {
		return
	}
	if ld < cols {
		panic(fmt.Sprintf("gemm: %s leading dimension %d < %d columns", name, ld, cols))
	}
	if need := (rows-1)*ld + cols; n < need {
		panic(fmt.Sprintf("gemm: %s has %d elements, shape %dx%d (ld %d) needs %d", name, n, rows, cols, ld, need))
	}
}

// widenPool recycles the float32 buffers of gemmBF16Widened.
type widenPool struct {
	mu   sync.Mutex
	free [][]float32
}

func (p *widenPool) get(n int) []float32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, b := range p.free {
		if cap(b) >= n {
			p.free = append(p.free[:i], p.free[i+1:]...)
			return b[:n]
		}
	}
	return make([]float32, n)
}

func (p *widenPool) put(b []float32) {
	p.mu.Lock()
	p.free = append(p.free, b)
	p.mu.Unlock()
}

// bf16Args is one GemmBF16 call, shared read-only by its tasks.
type bf16Args struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a              []uint16
	lda            int
	b              []uint16
	ldb            int
	c              []float32
	ldc            int
}

// blockedBF16 is the loop nest of blocked (same blocks, same tile grid,
// same determinism argument) around the bf16 micro-kernel. k is consumed in
// pairs; an odd k is padded with a zero.
type blockedBF16 struct {
	micro      kernels.MicroBF16
	mc, kc, nc int               // kc counts k values and is even
	t16, t12   kernels.Transpose // float32 register transposes, reused for pairs; may be nil
	idx        [64]uint16        // kernels.InterleaveIndex, for micro.Interleave
}

// newBlockedBF16 sizes the blocks like newBlocked (768 bf16 = 384 pairs,
// the same bytes per panel) and borrows the float32 transposes of fp for
// packing, when it has them.
func newBlockedBF16(mk kernels.MicroBF16, fp *kernels.Micro) *blockedBF16 {
	bl := &blockedBF16{micro: mk, mc: mk.MR * (192 / mk.MR), kc: 768, nc: mk.NR * (2048 / mk.NR), idx: kernels.InterleaveIndex()}
	if fp != nil {
		bl.t16, bl.t12 = fp.T16, fp.T12
	}
	return bl
}

// run computes rows [i0,i1) x columns [j0,j1) of C (i0, j0 on the tile grid).
func (bl *blockedBF16) run(g *bf16Args, i0, i1, j0, j1 int, ws *workspace) {
	mr, nr := bl.micro.MR, bl.micro.NR
	kc := ceilDiv(g.k, ceilDiv(g.k, bl.kc))
	kc += kc & 1 // blocks start at even k, so pairs never straddle blocks
	kpMax := ceilDiv(min(kc, g.k), 2)
	mcMax := min(bl.mc, roundUp(i1-i0, mr))
	ncMax := min(bl.nc, roundUp(j1-j0, nr))
	ws.grow(0, 0, mr*nr, 0)
	if cap(ws.a16) < mcMax*kpMax {
		ws.a16 = make([]uint32, mcMax*kpMax)
	}
	if cap(ws.b16) < ncMax*kpMax {
		ws.b16 = make([]uint32, ncMax*kpMax)
	}
	pa, pb := ws.a16[:mcMax*kpMax], ws.b16[:ncMax*kpMax]
	fn := bl.micro.Fn
	for jc := j0; jc < j1; jc += bl.nc {
		nb := min(bl.nc, j1-jc)
		for pc := 0; pc < g.k; pc += kc {
			kb := min(kc, g.k-pc)
			kp := ceilDiv(kb, 2)
			bl.packB(pb, g.b, g.ldb, g.transB, pc, kb, jc, nb)
			beta, load := float32(1), 1
			if pc == 0 {
				beta = g.beta
				if beta == 0 {
					load = 0
				}
			}
			for ic := i0; ic < i1; ic += bl.mc {
				mb := min(bl.mc, i1-ic)
				bl.packA(pa, g.a, g.lda, g.transA, ic, mb, pc, kb)
				for jr := 0; jr < nb; jr += nr {
					bp := pairPtr(&pb[jr*kp])
					w := min(nr, nb-jr)
					for ir := 0; ir < mb; ir += mr {
						ap := pairPtr(&pa[ir*kp])
						h := min(mr, mb-ir)
						ci := (ic+ir)*g.ldc + jc + jr
						if h == mr && w == nr {
							fn(kp, ap, bp, &g.c[ci], g.ldc, g.alpha, beta, load)
							continue
						}
						fn(kp, ap, bp, &ws.tile[0], nr, 1, 0, 0)
						mergeTile(g.c[ci:], g.ldc, ws.tile, nr, h, w, g.alpha, beta, load)
					}
				}
			}
		}
	}
}

// mergeTile writes the h x w corner of an edge tile (row stride nr) into C:
// C = alpha*t (load == 0) or C = alpha*t + beta*C.
func mergeTile(c []float32, ldc int, tile []float32, nr, h, w int, alpha, beta float32, load int) {
	for i := 0; i < h; i++ {
		crow := c[i*ldc : i*ldc+w]
		trow := tile[i*nr : i*nr+w]
		if load == 0 {
			for j, t := range trow {
				crow[j] = alpha * t
			}
		} else {
			for j, t := range trow {
				crow[j] = alpha*t + beta*crow[j]
			}
		}
	}
}

// pairPtr views packed pairs as the bf16 values the kernel reads (a pair
// is two bf16 in one little-endian uint32: even k low, odd k high).
func pairPtr(p *uint32) *uint16 { return (*uint16)(unsafe.Pointer(p)) }

func pair(lo, hi uint16) uint32 { return uint32(lo) | uint32(hi)<<16 }

// packA packs op(A)[i0:i0+mb, p0:p0+kb] into panels of mr rows; panel r
// holds, for each k pair q, mr pairs (op(A)[i, p0+2q], op(A)[i, p0+2q+1]),
// zero beyond row mb and beyond kb. p0 is even.
func (bl *blockedBF16) packA(dst []uint32, a []uint16, lda int, trans bool, i0, mb, p0, kb int) {
	mr := bl.micro.MR
	kp := ceilDiv(kb, 2)
	for r := 0; r < mb; r += mr {
		h := min(mr, mb-r)
		panel := dst[r*kp : (r+mr)*kp]
		if trans {
			// A is stored k x m: the pair for row i interleaves rows p and
			// p+1 of the store.
			if bl.interleaveRows(panel, a, lda, p0*lda+i0+r, kb, h, mr) {
				continue
			}
			for q := 0; q < kp; q++ {
				even := a[(p0+2*q)*lda+i0+r:][:h]
				d := panel[q*mr : q*mr+mr]
				if 2*q+1 < kb {
					odd := a[(p0+2*q+1)*lda+i0+r:][:h]
					for i := range even {
						d[i] = pair(even[i], odd[i])
					}
				} else {
					for i := range even {
						d[i] = pair(even[i], 0)
					}
				}
				clear(d[h:])
			}
			continue
		}
		// A's rows hold each pair contiguously (p0 is even): a transpose of
		// 32-bit pairs.
		if h == mr && bl.transposePairs(panel, a, lda, (i0+r)*lda+p0, h, kb, mr) {
			continue
		}
		clear(panel)
		for i := 0; i < h; i++ {
			row := a[(i0+r+i)*lda+p0:][:kb]
			for p := 0; p+1 < kb; p += 2 {
				panel[(p>>1)*mr+i] = pair(row[p], row[p+1])
			}
			if kb&1 == 1 {
				panel[(kb>>1)*mr+i] = pair(row[kb-1], 0)
			}
		}
	}
}

// packB packs op(B)[p0:p0+kb, j0:j0+nb] into panels of nr columns; panel s
// holds, for each k pair q, nr pairs (op(B)[p0+2q, j], op(B)[p0+2q+1, j]).
func (bl *blockedBF16) packB(dst []uint32, b []uint16, ldb int, trans bool, p0, kb, j0, nb int) {
	nr := bl.micro.NR
	kp := ceilDiv(kb, 2)
	for s := 0; s < nb; s += nr {
		w := min(nr, nb-s)
		panel := dst[s*kp : (s+nr)*kp]
		if !trans {
			// Rows p and p+1 of B interleave into the pairs.
			if bl.interleaveRows(panel, b, ldb, p0*ldb+j0+s, kb, w, nr) {
				continue
			}
			for q := 0; q < kp; q++ {
				even := b[(p0+2*q)*ldb+j0+s:][:w]
				d := panel[q*nr : q*nr+nr]
				if 2*q+1 < kb {
					odd := b[(p0+2*q+1)*ldb+j0+s:][:w]
					for j := range even {
						d[j] = pair(even[j], odd[j])
					}
				} else {
					for j := range even {
						d[j] = pair(even[j], 0)
					}
				}
				clear(d[w:])
			}
			continue
		}
		// B is stored n x k: each stored row holds a column's pairs.
		if w == nr && bl.transposePairs(panel, b, ldb, (j0+s)*ldb+p0, w, kb, nr) {
			continue
		}
		clear(panel)
		for j := 0; j < w; j++ {
			col := b[(j0+s+j)*ldb+p0:][:kb]
			for p := 0; p+1 < kb; p += 2 {
				panel[(p>>1)*nr+j] = pair(col[p], col[p+1])
			}
			if kb&1 == 1 {
				panel[(kb>>1)*nr+j] = pair(col[kb-1], 0)
			}
		}
	}
}

// interleaveRows packs row pairs (even row at src[off+2q*ld], odd row ld
// further, w values each) into panel rows of width pairs: panel[q*width+j] =
// (even[j], odd[j]), zero for j >= w and for the odd half of a last, odd k.
// It uses the micro-kernel's vector interleave and reports false, doing
// nothing, when there is none.
func (bl *blockedBF16) interleaveRows(panel []uint32, src []uint16, ld, off, kb, w, width int) bool {
	il := bl.micro.Interleave
	if il == nil || kb < 2 || w > 32 || width > 32 {
		return false
	}
	pairs := kb / 2
	_ = src[off+(2*pairs-1)*ld+w-1] // bounds: the last value read
	_ = panel[ceilDiv(kb, 2)*width-1]
	lanes := func(n int) int { return 1<<min(n, 16) - 1 }
	masks := (1<<w - 1) | lanes(width)<<32 | lanes(max(width-16, 0))<<48
	il(&panel[0], &src[off], ld*2, pairs, width*4, masks, &bl.idx[0])
	if kb&1 == 1 {
		even := src[off+(kb-1)*ld:][:w]
		d := panel[pairs*width:][:width]
		for j, v := range even {
			d[j] = pair(v, 0)
		}
		clear(d[w:])
	}
	return true
}

// transposePairs packs h rows of bf16 (row j starts at src[off+j*ld], kb
// values) into panel as pairs, transposed: panel[q*width+j] = pair q of row
// j. The float32 register transposes move 32-bit lanes, so they move pairs
// just as well, 16 pairs at a time; the remaining pairs (and an odd last
// value) are done by scalar code. It reports false, doing nothing, when the
// CPU has no transposes or h is not 12 or a multiple of 16.
func (bl *blockedBF16) transposePairs(panel []uint32, src []uint16, ld, off, h, kb, width int) bool {
	f, step := bl.t16, 16
	if h == 12 {
		f, step = bl.t12, 12
	}
	if f == nil || h%step != 0 || kb == 0 {
		return false
	}
	_ = src[off+(h-1)*ld+kb-1] // bounds: the last value read
	kp := ceilDiv(kb, 2)
	_ = panel[(kp-1)*width+h-1]
	blocks := (kb / 2) / 16 // whole pairs only, 16 per block
	if blocks > 0 {
		for j0 := 0; j0 < h; j0 += step {
			f((*float32)(unsafe.Pointer(&panel[j0])), (*float32)(unsafe.Pointer(&src[off+j0*ld])), ld*2, blocks, width*4, 1<<step-1)
		}
	}
	for j := 0; j < h; j++ {
		row := src[off+j*ld:][:kb]
		for q := blocks * 16; q < kp; q++ {
			hi := uint16(0)
			if 2*q+1 < kb {
				hi = row[2*q+1]
			}
			panel[q*width+j] = pair(row[2*q], hi)
		}
	}
	return true
}

// BF16KernelName names the GemmBF16 path in use: the bf16 micro-kernel's
// name, or "widened" (bf16 widened to float32, then Sgemm).
func (e *Engine) BF16KernelName() string {
	if e.bf == nil {
		return "widened"
	}
	return e.bf.micro.Name
}
