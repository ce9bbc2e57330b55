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
// whatever the thread count. Each op has its own small task type holding
// only its operands (splitOps keeps one of each, reused).

// cut is a split operation's division of total units (rows, columns or
// elements) into parts contiguous ranges, one per goroutine.
type cut struct {
	total, parts int
	align        bool // cut on multiples of 16 values (whole AVX-512 vectors)
}

// bounds is range i, cut on multiples of 16 where align asks and total
// allows.
func (c *cut) bounds(i int) (lo, hi int) {
	step := (c.total + c.parts - 1) / c.parts
	if c.align {
		step = (step + 15) &^ 15
	}
	return min(i*step, c.total), min((i+1)*step, c.total)
}

func (c *cut) ranges() *cut { return c }

// splitOps holds one task per split operation, reused call after call so
// a call allocates nothing. Each task type carries only its own operands.
type splitOps struct {
	norm           normTask
	activate       activateTask
	biasGELU       biasGELUTask
	activateBack   activateBackTask
	geluBackBias   geluBackBiasTask
	addRows        addRowsTask
	biasResidual   biasResidualTask
	columnSums     columnSumsTask
	clear          clearTask
	normBackRows   normBackRowsTask
	normBackParams normBackParamsTask
	rows           rowsTask
}

// normTask: the configured norm of a (N, W) into out, rows split; mean
// (LayerNorm) and rstd kept per row.
type normTask struct {
	cut
	m                           *GPT
	W                           int
	out, mean, rstd, a, w, bias []float32
}

func (t *normTask) run(_, i int) {
	if lo, hi := t.bounds(i); lo < hi {
		W := t.W
		t.m.normRows(t.out[lo*W:hi*W], t.mean[lo:hi], t.rstd[lo:hi], t.a[lo*W:hi*W], t.w, t.bias, hi-lo)
	}
}

// activateTask: the MLP activation of a into out (W wide), rows split.
type activateTask struct {
	cut
	m      *GPT
	W      int
	out, a []float32
}

func (t *activateTask) run(_, i int) {
	if lo, hi := t.bounds(i); lo < hi {
		t.m.activateRows(t.out, t.a, lo, hi, t.W)
	}
}

// biasGELUTask: a[n,:] += bias, out[n,:] = GELUTanh(a[n,:]), rows split.
type biasGELUTask struct {
	cut
	W            int
	out, a, bias []float32
}

func (t *biasGELUTask) run(_, i int) {
	lo, hi := t.bounds(i)
	W := t.W
	for n := lo; n < hi; n++ {
		vec.GELUTanhBias(t.out[n*W:(n+1)*W], t.a[n*W:(n+1)*W], t.bias)
	}
}

// activateBackTask: the activation's backward, dinp (out) from its input
// a and output gradient dout, rows split.
type activateBackTask struct {
	cut
	m            *GPT
	W            int
	out, a, dout []float32
}

func (t *activateBackTask) run(_, i int) {
	if lo, hi := t.bounds(i); lo < hi {
		t.m.activateBackwardRows(t.out, t.a, t.dout, lo, hi, t.W)
	}
}

// geluBackBiasTask: tanh GELU backward and the bias gradient (bias +=
// column sums of out) by column ranges, rows in order as biasGrad's
// column sums: the same bits per column.
type geluBackBiasTask struct {
	cut
	N, W               int
	out, a, dout, bias []float32
}

func (t *geluBackBiasTask) run(_, i int) {
	lo, hi := t.bounds(i)
	if lo >= hi {
		return
	}
	for n := 0; n < t.N; n++ {
		r := n * t.W
		vec.GELUTanhBackwardBias(t.out[r+lo:r+hi], t.a[r+lo:r+hi], t.dout[r+lo:r+hi], t.bias[lo:hi])
	}
}

// addRowsTask: out[n,:] += bias, rows split.
type addRowsTask struct {
	cut
	W         int
	out, bias []float32
}

func (t *addRowsTask) run(_, i int) {
	lo, hi := t.bounds(i)
	for n := lo; n < hi; n++ {
		vec.Add(t.out[n*t.W:(n+1)*t.W], t.bias)
	}
}

// biasResidualTask: out[n,:] += bias + res[n,:], rows split (bias nil: a
// layer without one).
type biasResidualTask struct {
	cut
	W              int
	out, bias, res []float32
}

func (t *biasResidualTask) run(_, i int) {
	lo, hi := t.bounds(i)
	W := t.W
	for n := lo; n < hi; n++ {
		o := t.out[n*W : (n+1)*W]
		if t.bias != nil {
			vec.Add(o, t.bias) // in this order, as before: same bits
		}
		vec.Add(o, t.res[n*W:(n+1)*W])
	}
}

// columnSumsTask: out[c] += sum over rows of a[n,c], by column ranges,
// rows in order as the serial loop: the same bits per column.
type columnSumsTask struct {
	cut
	N, W   int
	out, a []float32
}

func (t *columnSumsTask) run(_, i int) {
	lo, hi := t.bounds(i)
	if lo >= hi {
		return
	}
	dst := t.out[lo:hi]
	for n := 0; n < t.N; n++ {
		vec.Add(dst, t.a[n*t.W+lo:n*t.W+hi])
	}
}

// clearTask: clear(out) by ranges.
type clearTask struct {
	cut
	out []float32
}

func (t *clearTask) run(_, i int) {
	lo, hi := t.bounds(i)
	clear(t.out[lo:hi])
}

// normBackRowsTask is the norm backward's first pass, over rows: each
// row's statistics (LayerNorm's kept in GPT.lnStats; RMSNorm's one in a
// local) and dinp (out) from dout, x, w, mean and rstd (mean unused by
// RMSNorm).
type normBackRowsTask struct {
	cut
	m                           *GPT
	W                           int
	rms                         bool
	out, dout, x, w, mean, rstd []float32
}

func (t *normBackRowsTask) run(_, i int) {
	lo, hi := t.bounds(i)
	st, W := t.m.lnStats, t.W
	for n := lo; n < hi; n++ {
		r := n * W
		d, x := t.dout[r:r+W], t.x[r:r+W]
		if t.rms {
			dot := vec.RMSNormBackwardDot(d, x, t.w, t.rstd[n])
			vec.RMSNormBackwardDx(t.out[r:r+W], d, x, t.w, t.rstd[n], dot)
			continue
		}
		st[2*n], st[2*n+1] = vec.LayerNormBackwardDots(d, x, t.w, t.mean[n], t.rstd[n])
		vec.LayerNormBackwardDx(t.out[r:r+W], d, x, t.w, t.mean[n], t.rstd[n], st[2*n], st[2*n+1])
	}
}

// normBackParamsTask is the norm backward's second pass, over columns:
// dw (and LayerNorm's db) summed over the rows in order (the serial sums'
// bits).
type normBackParamsTask struct {
	cut
	N, W                        int
	rms                         bool
	dw, db, dout, x, mean, rstd []float32
}

func (t *normBackParamsTask) run(_, i int) {
	lo, hi := t.bounds(i)
	if lo >= hi {
		return
	}
	dw := t.dw[lo:hi]
	if t.rms {
		for n := 0; n < t.N; n++ {
			r := n * t.W
			vec.RMSNormBackwardParams(dw, t.dout[r+lo:r+hi], t.x[r+lo:r+hi], t.rstd[n])
		}
		return
	}
	db := t.db[lo:hi]
	for n := 0; n < t.N; n++ {
		r := n * t.W
		vec.LayerNormBackwardParams(dw, db, t.dout[r+lo:r+hi], t.x[r+lo:r+hi], t.mean[n], t.rstd[n])
	}
}

// rowsTask runs a tensor.RowTask over ranges of rows (the cross-entropy's
// passes).
type rowsTask struct {
	cut
	rows tensor.RowTask
}

func (t *rowsTask) run(_, i int) {
	if lo, hi := t.bounds(i); lo < hi {
		t.rows.Rows(lo, hi)
	}
}

// splitTask is what runSplit runs: a headTask with its cut.
type splitTask interface {
	headTask
	ranges() *cut
}

// threads is the number of compute goroutines the model's layers use.
func (m *GPT) threads() int { return m.attn.Threads }

// runSplit runs t (one of m.split's tasks, its operands set) over total
// units (rows, columns or elements) on up to m.threads() goroutines, then
// zeroes it (dropping its references to the layer's buffers); small
// problems run inline, where waking a goroutine would cost more than it
// saves.
func runSplit[T any, P interface {
	*T
	splitTask
}](m *GPT, t P, total, minPerPart int) {
	c := t.ranges()
	c.total = total
	if m.splitMin > 0 { // tests: split even tiny problems
		minPerPart = m.splitMin
	}
	c.parts = max(1, min(m.threads(), total/max(minPerPart, 1)))
	m.pool.p.run(t, c.parts, c.parts)
	var zero T
	*t = zero
}

// minSplitValues is the least work (values touched) worth a second
// goroutine: waking one costs a few microseconds.
const minSplitValues = 1 << 15

// rowsPerPart is the fewest rows of width w worth one goroutine.
func rowsPerPart(w int) int { return max(1, minSplitValues/max(w, 1)) }

// clearSplit clears g on the compute goroutines (Params.ZeroGrad).
func (m *GPT) clearSplit(g []float32) {
	t := &m.split.clear
	t.out, t.align = g, true
	runSplit(m, t, len(g), 1<<18)
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
	m.pool.p.run(t, len(ps.List), workers)
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
	t := &m.split.rows
	t.rows = task
	runSplit(m, t, n, 8)
}
