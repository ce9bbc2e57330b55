package model

import (
	"github.com/strand-ml/strand/parallel/tensor"
	"github.com/strand-ml/strand/vec"
)

// This file spreads the layers that are not matrix products (norms,
// activations, bias and residual adds, bias gradients, clearing gradients)
// over the model's compute goroutines, the same pool attention uses. With
// one thread they run inline. Each split op cuts its work into one
// contiguous range per goroutine — rows for row-wise layers, columns for
// sums over rows — and every element is computed by exactly the code and
// in exactly the order of the serial version, so results are bit-identical
// whatever the thread count.

// splitKind names the layer a splitTask runs.
type splitKind int

const (
	splitNorm         splitKind = iota // m.norm over rows
	splitActivate                      // m.activate over rows
	splitBiasGELU                      // a[n,:] += bias (b), out[n,:] = GELUTanh(a[n,:]) over rows
	splitActivateBack                  // m.activateBackward over rows
	splitGELUBackBias                  // tanh GELU backward and bias gradient (bias += column sums of out) by column ranges
	splitAddRows                       // out[n,:] += bias (a) over rows
	splitBiasResidual                  // out[n,:] += bias (a) + res[n,:] (b) over rows
	splitColumnSums                    // out[c] += sum over rows of a[n,c], by column ranges
	splitClear                         // clear(out) by ranges
	// LayerNorm backward, two passes: over rows, each row's statistics
	// (kept in GPT.lnStats) and dinp (out) from dout (a), x (b), w, mean,
	// rstd; then over columns, dw (out) and db (bias) summed over the rows
	splitNormBackRows
	splitNormBackParams
	splitRowTask // rows.Rows over ranges of rows (the cross-entropy's passes)
)

// splitTask is one split layer call: the operands of whichever kind runs.
// It lives in the GPT and is reused, so a call allocates nothing.
type splitTask struct {
	m     *GPT
	kind  splitKind
	parts int // ranges: one per goroutine
	// rows (or columns, or elements for splitClear) cut into parts
	total int
	// row count and width of the row-wise operands
	N, W       int
	out, a, b  []float32
	mean, rstd []float32
	w, bias    []float32
	rows       tensor.RowTask
}

// bounds is range i of parts over total, cut on multiples of 16 values
// (whole AVX-512 vectors) where total allows.
func (t *splitTask) bounds(i int) (lo, hi int) {
	step := (t.total + t.parts - 1) / t.parts
	if t.kind == splitClear || t.kind == splitColumnSums {
		step = (step + 15) &^ 15
	}
	lo, hi = min(i*step, t.total), min((i+1)*step, t.total)
	return lo, hi
}

func (t *splitTask) run(_, i int) {
	lo, hi := t.bounds(i)
	if lo >= hi {
		return
	}
	m, W := t.m, t.W
	switch t.kind {
	case splitNorm:
		m.normRows(t.out[lo*W:hi*W], t.mean[lo:hi], t.rstd[lo:hi], t.a[lo*W:hi*W], t.w, t.bias, hi-lo)
	case splitActivate:
		m.activateRows(t.out, t.a, lo, hi, W)
	case splitBiasGELU:
		for n := lo; n < hi; n++ {
			vec.GELUTanhBias(t.out[n*W:(n+1)*W], t.a[n*W:(n+1)*W], t.b)
		}
	case splitGELUBackBias:
		// rows in order, as biasGrad's column sums: same bits per column
		for n := 0; n < t.N; n++ {
			r := n * W
			vec.GELUTanhBackwardBias(t.out[r+lo:r+hi], t.a[r+lo:r+hi], t.b[r+lo:r+hi], t.bias[lo:hi])
		}
	case splitActivateBack:
		m.activateBackwardRows(t.out, t.a, t.b, lo, hi, W)
	case splitAddRows:
		for n := lo; n < hi; n++ {
			vec.Add(t.out[n*W:(n+1)*W], t.a)
		}
	case splitBiasResidual:
		for n := lo; n < hi; n++ {
			o := t.out[n*W : (n+1)*W]
			if t.a != nil { // nil: a layer without bias
				vec.Add(o, t.a) // in this order, as before: same bits
			}
			vec.Add(o, t.b[n*W:(n+1)*W])
		}
	case splitColumnSums:
		// rows in order, as the serial loop: same bits per column
		dst := t.out[lo:hi]
		for n := 0; n < t.N; n++ {
			vec.Add(dst, t.a[n*W+lo:n*W+hi])
		}
	case splitClear:
		clear(t.out[lo:hi])
	case splitRowTask:
		t.rows.Rows(lo, hi)
	case splitNormBackRows:
		st := m.lnStats
		for n := lo; n < hi; n++ {
			r := n * W
			d, x := t.a[r:r+W], t.b[r:r+W]
			st[2*n], st[2*n+1] = vec.LayerNormBackwardDots(d, x, t.w, t.mean[n], t.rstd[n])
			vec.LayerNormBackwardDx(t.out[r:r+W], d, x, t.w, t.mean[n], t.rstd[n], st[2*n], st[2*n+1])
		}
	case splitNormBackParams:
		dw, db := t.out[lo:hi], t.bias[lo:hi]
		for n := 0; n < t.N; n++ { // rows in order: the serial sums' bits
			r := n * W
			vec.LayerNormBackwardParams(dw, db, t.a[r+lo:r+hi], t.b[r+lo:r+hi], t.mean[n], t.rstd[n])
		}
	}
}

// threads is the number of compute goroutines the model's layers use.
func (m *GPT) threads() int { return m.attn.Threads }

// runSplit runs the prepared m.split over total units (rows, columns or
// elements) on up to m.threads() goroutines; small problems run inline,
// where waking a goroutine would cost more than it saves.
func (m *GPT) runSplit(total, minPerPart int) {
	t := &m.split
	t.m, t.total = m, total
	if m.splitMin > 0 { // tests: split even tiny problems
		minPerPart = m.splitMin
	}
	t.parts = max(1, min(m.threads(), total/max(minPerPart, 1)))
	m.attn.pool.p.run(t, t.parts, t.parts)
	*t = splitTask{}
}

// minSplitValues is the least work (values touched) worth a second
// goroutine: waking one costs a few microseconds.
const minSplitValues = 1 << 15

// rowsPerPart is the fewest rows of width w worth one goroutine.
func rowsPerPart(w int) int { return max(1, minSplitValues/max(w, 1)) }

// clearSplit clears g on the compute goroutines (Params.ZeroGrad).
func (m *GPT) clearSplit(g []float32) {
	t := &m.split
	t.kind, t.out = splitClear, g
	m.runSplit(len(g), 1<<18)
}

// sumSquaresSplit is ps.NormSumSquares with the parameters spread over the
// compute goroutines: item i is parameter i, its sum kept in a slot of its
// own, and the slots are added in parameter order.
func (m *GPT) sumSquaresSplit(ps *Params) float64 {
	t := &m.sumSq
	t.ps = ps
	if cap(t.sums) < len(ps.List) {
		t.sums = make([]float64, len(ps.List))
	}
	t.sums = t.sums[:len(ps.List)]
	workers := 1
	if len(ps.Grad) >= 2*minSplitValues || m.splitMin > 0 {
		workers = m.threads()
	}
	m.attn.pool.p.run(t, len(ps.List), workers)
	t.ps = nil
	var s float64
	for _, v := range t.sums {
		s += v
	}
	return s
}

// sumSqTask computes one parameter's gradient sum of squares per item.
type sumSqTask struct {
	ps   *Params
	sums []float64
}

func (t *sumSqTask) run(_, i int) {
	t.sums[i] = 0
	if p := t.ps.List[i]; p.InNorm {
		t.sums[i] = vec.SumSquares(p.Grad)
	}
}

// SplitRows runs task over rows [0, n) on the compute goroutines (the
// cross-entropy's row passes, tensor.RowSplitter).
func (m *GPT) SplitRows(n int, task tensor.RowTask) {
	t := &m.split
	t.kind, t.rows = splitRowTask, task
	m.runSplit(n, 8)
}
