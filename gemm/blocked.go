package gemm

import (
	"github.com/strand-ml/strand/gemm/internal/kernels"
)

// fp32KC is the float32 path's largest k block.
const fp32KC = 384

// blocked is the cache-blocked GEMM around a SIMD micro-kernel (the BLIS
// loop nest). For one task, a region of C anchored on the MR x NR tile grid:
//
//	for jc over columns, step nc:          B block kc x nc lives in L3
//	  for pc over k, step kc:              pack B[pc:pc+kc, jc:jc+nc]
//	    for ic over rows, step mc:         pack A[ic:ic+mc, pc:pc+kc] (L2)
//	      for jr over the block, step NR:  B sliver kc x NR stays in L1
//	        for ir, step MR:               micro-kernel on an MR x NR tile
//
// Each element of C is produced by the same sequence of operations whatever
// the region it falls in: an FMA chain over each kc block in k order, then
// C = alpha*acc + beta*C for the first block and C = alpha*acc + C after.
// Tiles sit on a grid anchored at C[0,0], so splitting C between goroutines
// (by whole tiles) never changes a bit.
type blocked struct {
	micro      kernels.Micro
	mc, kc, nc int // block sizes; mc is a multiple of MR, nc of NR
}

// newBlocked sizes the blocks for micro-kernel mk. The sizes target a core
// with a 32-48 KiB L1D and a 1-2 MiB L2 (Zen 4/5, Skylake-X and later):
// the kc x NR sliver of B (48 KiB for AVX-512) sits in L1/L2, the mc x kc
// block of A (up to 288 KiB) in L2. kc = 384 rather than 256 because each
// kc block costs a pass over C (load + store): with k = 384 (gpt2s) C is
// written once, and a 16 MiB C (the gpt2s LM head) is not streamed twice.
// The micro-kernel alone runs equally fast at kc = 256 and 384.
func newBlocked(mk kernels.Micro) *blocked {
	kc := fp32KC
	mc := mk.MR * (192 / mk.MR)
	if mk.NR <= 16 {
		mc = mk.MR * (120 / mk.MR)
	}
	return &blocked{micro: mk, mc: mc, kc: kc, nc: mk.NR * (2048 / mk.NR)}
}

// kBlock is the size of the k blocks: k split into equal blocks of at most
// kc (k = 384 becomes 192 + 192, not 256 + 128): a short last block would
// pay the C load/store and the kernel's loop overhead for little work. The
// split depends on k only, so every region of C sees the same blocks.
func (bl *blocked) kBlock(k int) int { return ceilDiv(k, ceilDiv(k, bl.kc)) }

// KBlock is the k block of a float32 product with inner dimension k on the
// packed path (blocks start at multiples of it). A caller that splits
// such a product along k into pieces cut at block boundaries, each piece
// with beta = 1 after the first, gets the unsplit product's bits: every
// element sees the same FMA chains added to C in the same order (the
// ZeRO-3 LM head, computed one gathered vocabulary chunk at a time).
// The pieces must stay on the packed path (MinPackedWork).
func KBlock(k int) int {
	if k <= 0 {
		return 0
	}
	return ceilDiv(k, ceilDiv(k, fp32KC))
}

// prepacked is one operand of a multi-goroutine call packed once, by the
// calling goroutine, before the tasks start. Without it every strip of C
// repacks the operand all strips share (A for column strips, B for row
// strips): with two goroutines and four strips each, eight times.
//
// Layouts (kb the k block of pc, kc-sized but the last):
//   - a: for each k block pc, rows [0, m) packed as run's packA does them,
//     mc rows at a time; block (ic, pc) starts at pc*roundUp(m, MR) + ic*kb.
//   - b: for each nc-wide column block jc and k block pc, packB's panels;
//     block (jc, pc) starts at jc*k + pc*roundUp(nb, NR).
type prepacked struct {
	a, b []float32
}

func preAOffset(ic, pc, m, kb, mr int) int { return pc*roundUp(m, mr) + ic*kb }

func preBOffset(jc, pc, nb, k, nr int) int { return jc*k + pc*roundUp(nb, nr) }

// preparePrepack sizes buf for the operand the strips of g share (all of
// op(A) when splitRows is false, all of op(B) when true), points pre at it
// and returns the grown buffer; prepackPart then fills it.
func (bl *blocked) preparePrepack(pre *prepacked, buf []float32, g *gemmArgs, splitRows bool) []float32 {
	size := roundUp(g.m, bl.micro.MR) * g.k
	if splitRows {
		size = roundUp(g.n, bl.micro.NR) * g.k
	}
	if cap(buf) < size {
		buf = make([]float32, size)
	}
	buf = buf[:size]
	*pre = prepacked{}
	if splitRows {
		pre.b = buf
	} else {
		pre.a = buf
	}
	return buf
}

// prepackPart packs share t of parts of pre's operand: in every k block
// (and nc column block), the t-th of parts equal runs of whole panels. The
// panels of a block lie one after another in the layout, so any split of
// them packs the same bytes. ws supplies the edge scratch.
func (bl *blocked) prepackPart(pre *prepacked, g *gemmArgs, t, parts int, ws *workspace) {
	mr, nr := bl.micro.MR, bl.micro.NR
	kc := bl.kBlock(g.k)
	if cap(ws.edge) < max(mr, nr)*kc {
		ws.edge = make([]float32, max(mr, nr)*kc)
	}
	edge := ws.edge[:max(mr, nr)*kc]
	// share returns panels [lo, hi) of a run of n panels
	share := func(n int) (lo, hi int) { return t * n / parts, (t + 1) * n / parts }
	for pc := 0; pc < g.k; pc += kc {
		kb := min(kc, g.k-pc)
		if pre.b != nil {
			for jc := 0; jc < g.n; jc += bl.nc {
				nb := min(bl.nc, g.n-jc)
				lo, hi := share(ceilDiv(nb, nr))
				if lo >= hi {
					continue
				}
				c0, c1 := jc+lo*nr, min(jc+hi*nr, jc+nb)
				off := preBOffset(jc, pc, nb, g.k, nr) + lo*nr*kb
				bl.packB(pre.b[off:], g.b, g.ldb, g.transB, pc, kb, c0, c1-c0, edge)
			}
			continue
		}
		lo, hi := share(ceilDiv(g.m, mr))
		if lo >= hi {
			continue
		}
		r0, r1 := lo*mr, min(hi*mr, g.m)
		bl.packA(pre.a[preAOffset(r0, pc, g.m, kb, mr):], g.a, g.lda, g.transA, r0, r1-r0, pc, kb, edge)
	}
}

// workspace holds one goroutine's packed panels and an edge tile.
type workspace struct {
	a, b []float32
	tile []float32
	edge []float32 // partial panels on their way to packing
	// bf16 panels (GemmBF16), as pairs of bf16 in a uint32
	a16, b16 []uint32
}

func (w *workspace) grow(na, nb, nt, ne int) {
	if cap(w.edge) < ne {
		w.edge = make([]float32, ne)
	}
	w.edge = w.edge[:ne]
	if cap(w.a) < na {
		w.a = make([]float32, na)
	}
	if cap(w.b) < nb {
		w.b = make([]float32, nb)
	}
	if cap(w.tile) < nt {
		w.tile = make([]float32, nt)
	}
	w.a, w.b, w.tile = w.a[:na], w.b[:nb], w.tile[:nt]
}

// gemmArgs is one Sgemm call, shared read-only by its tasks.
type gemmArgs struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a              []float32
	lda            int
	b              []float32
	ldb            int
	c              []float32
	ldc            int
}

// run computes rows [i0,i1) x columns [j0,j1) of C. i0 and j0 must be
// multiples of MR and NR; k > 0 and alpha != 0 (the caller handles the
// degenerate cases).
//
// pre, if not nil, holds one operand already packed for the whole call
// (see prepack): pre.a all of op(A) when the caller splits C by columns
// (every region then spans all rows, i0 = 0, i1 = m), pre.b all of op(B)
// when it splits by rows (j0 = 0, j1 = n). The regions then skip packing
// that operand instead of each repeating it.
func (bl *blocked) run(g *gemmArgs, i0, i1, j0, j1 int, ws *workspace, pre *prepacked) {
	mr, nr := bl.micro.MR, bl.micro.NR
	kc := bl.kBlock(g.k)
	kcMax := kc
	mcMax := min(bl.mc, roundUp(i1-i0, mr))
	ncMax := min(bl.nc, roundUp(j1-j0, nr))
	na, nb0 := mcMax*kcMax, kcMax*ncMax
	if pre != nil && pre.a != nil {
		na = 0
	}
	if pre != nil && pre.b != nil {
		nb0 = 0
	}
	ws.grow(na, nb0, mr*nr, max(mr, nr)*kcMax)
	fn := bl.micro.Fn
	for jc := j0; jc < j1; jc += bl.nc {
		nb := min(bl.nc, j1-jc)
		for pc := 0; pc < g.k; pc += kc {
			kb := min(kc, g.k-pc)
			bbuf := ws.b
			if pre != nil && pre.b != nil {
				bbuf = pre.b[preBOffset(jc, pc, nb, g.k, nr):]
			} else {
				bl.packB(ws.b, g.b, g.ldb, g.transB, pc, kb, jc, nb, ws.edge)
			}
			beta, load := float32(1), 1
			if pc == 0 {
				beta = g.beta
				if beta == 0 {
					load = 0
				}
			}
			for ic := i0; ic < i1; ic += bl.mc {
				mb := min(bl.mc, i1-ic)
				abuf := ws.a
				if pre != nil && pre.a != nil {
					abuf = pre.a[preAOffset(ic, pc, g.m, kb, mr):]
				} else {
					bl.packA(ws.a, g.a, g.lda, g.transA, ic, mb, pc, kb, ws.edge)
				}
				for jr := 0; jr < nb; jr += nr {
					bp := &bbuf[jr*kb]
					w := min(nr, nb-jr)
					for ir := 0; ir < mb; ir += mr {
						ap := &abuf[ir*kb]
						h := min(mr, mb-ir)
						ci := (ic+ir)*g.ldc + jc + jr
						if h == mr && w == nr {
							fn(kb, ap, bp, &g.c[ci], g.ldc, g.alpha, beta, load)
							continue
						}
						// Edge tile: compute the full tile into scratch,
						// then merge the valid h x w corner into C.
						fn(kb, ap, bp, &ws.tile[0], nr, 1, 0, 0)
						for i := 0; i < h; i++ {
							crow := g.c[ci+i*g.ldc : ci+i*g.ldc+w]
							trow := ws.tile[i*nr : i*nr+w]
							if load == 0 {
								for j, t := range trow {
									crow[j] = g.alpha * t
								}
							} else {
								for j, t := range trow {
									crow[j] = g.alpha*t + beta*crow[j]
								}
							}
						}
					}
				}
			}
		}
	}
}

// packA copies op(A)[i0:i0+mb, p0:p0+kb] into dst as ceil(mb/mr) panels;
// panel r holds, for each p, the mr values op(A)[i0+r*mr+i, p0+p]
// (zero beyond row mb, so the kernel may compute full tiles).
//
// edge, if at least MR*kb long, is scratch that lets a partial panel (the
// last, when mb is not a multiple of MR) use the vector transpose too; with
// nil it takes the scalar loop.
func (bl *blocked) packA(dst, a []float32, lda int, trans bool, i0, mb, p0, kb int, edge []float32) {
	mr := bl.micro.MR
	for r := 0; r < mb; r += mr {
		h := min(mr, mb-r)
		panel := dst[r*kb : r*kb+mr*kb]
		if !trans && bl.transposePanel(panel, a, lda, (i0+r)*lda+p0, h, kb, mr, edge) {
			continue
		}
		if trans {
			// A is stored k x m: row p0+p holds op(A)[:, p0+p], so each
			// k step is a contiguous copy of h values.
			if bl.copyRows(panel, a, lda, p0*lda+i0+r, kb, h, mr) {
				continue
			}
			for p := 0; p < kb; p++ {
				off := (p0+p)*lda + i0 + r
				d := panel[p*mr : p*mr+mr]
				copy(d, a[off:off+h])
				clear(d[h:])
			}
			continue
		}
		for i := 0; i < h; i++ {
			off := (i0+r+i)*lda + p0
			row := a[off : off+kb]
			for p, v := range row {
				panel[p*mr+i] = v
			}
		}
		for i := h; i < mr; i++ {
			for p := 0; p < kb; p++ {
				panel[p*mr+i] = 0
			}
		}
	}
}

// packB copies op(B)[p0:p0+kb, j0:j0+nb] into dst as ceil(nb/nr) panels;
// panel s holds, for each p, the nr values op(B)[p0+p, j0+s*nr+j]
// (zero beyond column nb).
// edge is scratch for partial panels, as for packA (NR*kb long).
func (bl *blocked) packB(dst, b []float32, ldb int, trans bool, p0, kb, j0, nb int, edge []float32) {
	nr := bl.micro.NR
	for s := 0; s < nb; s += nr {
		w := min(nr, nb-s)
		panel := dst[s*kb : s*kb+nr*kb]
		if trans && bl.transposePanel(panel, b, ldb, (j0+s)*ldb+p0, w, kb, nr, edge) {
			continue
		}
		if !trans {
			if bl.copyRows(panel, b, ldb, p0*ldb+j0+s, kb, w, nr) {
				continue
			}
			for p := 0; p < kb; p++ {
				off := (p0+p)*ldb + j0 + s
				d := panel[p*nr : p*nr+nr]
				copy(d, b[off:off+w])
				clear(d[w:])
			}
			continue
		}
		// B is stored n x k: row j of the store is column j of op(B).
		for j := 0; j < w; j++ {
			off := (j0+s+j)*ldb + p0
			col := b[off : off+kb]
			for p, v := range col {
				panel[p*nr+j] = v
			}
		}
		for j := w; j < nr; j++ {
			for p := 0; p < kb; p++ {
				panel[p*nr+j] = 0
			}
		}
	}
}

// transposePanel packs h <= width rows (row j at src[off+j*ld], kb values
// each) into a panel of width columns with the vector transposes. A partial
// panel (h < width) is first copied into edge with zero rows below, so the
// transposes always see whole panels. It reports false, doing nothing, when
// there is no transpose or edge is too short.
func (bl *blocked) transposePanel(panel, src []float32, ld, off, h, kb, width int, edge []float32) bool {
	if h == width {
		return bl.transposeRows(panel, src, ld, off, h, kb, width)
	}
	if bl.micro.T16 == nil || len(edge) < width*kb {
		return false
	}
	edge = edge[:width*kb]
	for j := 0; j < h; j++ {
		copy(edge[j*kb:(j+1)*kb], src[off+j*ld:off+j*ld+kb])
	}
	clear(edge[h*kb:])
	return bl.transposeRows(panel, edge, kb, 0, width, kb, width)
}

// transposeRows packs h rows of src (row j starts at src[off+j*ld], kb
// values each) into panel, transposed: panel[p*width+j] = src[off+j*ld+p],
// with the micro-kernel's register transposes (16 columns at a time; the
// last kb%16 columns by scalar code). It reports false, doing nothing, when
// there is no transpose for h rows.
func (bl *blocked) transposeRows(panel, src []float32, ld, off, h, kb, width int) bool {
	f, step := bl.micro.T16, 16
	if h == 12 {
		f, step = bl.micro.T12, 12
	}
	if f == nil || h%step != 0 || kb == 0 {
		return false
	}
	_ = src[off+(h-1)*ld+kb-1] // bounds: the last value read
	_ = panel[(kb-1)*width+h-1]
	blocks := kb / 16
	if blocks > 0 {
		for j0 := 0; j0 < h; j0 += step {
			f(&panel[j0], &src[off+j0*ld], ld*4, blocks, width*4, 1<<step-1)
		}
	}
	for j := 0; j < h; j++ {
		row := src[off+j*ld : off+j*ld+kb]
		for p := blocks * 16; p < kb; p++ {
			panel[p*width+j] = row[p]
		}
	}
	return true
}

// copyRows copies kb rows of w values (row p starts at src[off+p*ld]) into
// panel rows of width values (row p at panel[p*width]), zero-filling
// columns w..width, with the micro-kernel's vector copy. It reports false,
// doing nothing, when there is none.
func (bl *blocked) copyRows(panel, src []float32, ld, off, kb, w, width int) bool {
	cp := bl.micro.Copy
	if cp == nil || kb == 0 || w > 32 || width > 32 {
		return false
	}
	_ = src[off+(kb-1)*ld+w-1] // bounds: the last value read
	_ = panel[kb*width-1]
	lanes := func(n int) int { return 1<<min(n, 16) - 1 }
	masks := lanes(w) | lanes(max(w-16, 0))<<16 | lanes(width)<<32 | lanes(max(width-16, 0))<<48
	cp(&panel[0], &src[off], ld*4, kb, width*4, masks)
	return true
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

func ceilDiv(x, m int) int { return (x + m - 1) / m }
