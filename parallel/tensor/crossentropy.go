package tensor

import (
	"context"
	"fmt"
	"math"

	"github.com/strand-ml/strand/vec"
)

// IgnoreIndex marks targets that contribute no loss (PyTorch's default).
const IgnoreIndex = -100

// VocabCrossEntropy is softmax + cross-entropy over logits whose vocabulary
// is split across the group: this rank holds columns [Offset, Offset+Vl) of
// every row. Three small all-reduces (row max, then row sum of exponentials
// together with the target's logit) replace a gather of the full logits.
// In a group of one there is nothing to reduce, and the three forward
// passes run on each row in turn while it is in cache.
//
// Rows are independent between the reductions, so a caller with several
// compute goroutines may set Split: each row-wise pass then runs through it
// (the losses are still summed in row order: the same bits either way).
type VocabCrossEntropy struct {
	Group  Group
	Offset int // first vocabulary id held by this rank
	// Split, if set, runs task over rows [0, n) cut into ranges on the
	// caller's goroutines; nil runs it in one piece.
	Split RowSplitter
	// per-row scratch: max, then [sumexp | target logit] reduced together,
	// and each row's loss in float64 (summed in row order)
	rowMax, rowStats []float32
	rowLoss          []float64
	pass             cePass // the row-wise pass being run
}

// RowSplitter runs a row-wise task over rows [0, n), cut into ranges
// however it likes (each row exactly once), and returns when all are done.
type RowSplitter interface {
	SplitRows(n int, task RowTask)
}

// RowTask processes rows [lo, hi).
type RowTask interface {
	Rows(lo, hi int)
}

// cePass is one row-wise pass of Forward or Backward with its operands.
type cePass struct {
	ce      *VocabCrossEntropy
	phase   int // ceMax, ceExp, ceNorm, ceBack or ceFused
	logits  []float32
	losses  []float32
	targets []int32
	N, Vl   int
	scale   float32
}

const (
	ceMax   = iota // row maxima
	ceExp          // exponentials in place, their sums, the target logits
	ceNorm         // probabilities and losses
	ceBack         // dlogits
	ceFused        // ceMax, ceExp and ceNorm on each row in turn (no reductions)
)

// NewVocabCrossEntropy prepares buffers for up to maxRows rows.
func NewVocabCrossEntropy(g Group, offset, maxRows int) *VocabCrossEntropy {
	return &VocabCrossEntropy{Group: g, Offset: offset, rowMax: make([]float32, maxRows),
		rowStats: make([]float32, 2*maxRows), rowLoss: make([]float64, maxRows)}
}

// run runs pass phase over all N rows, through Split when set.
func (ce *VocabCrossEntropy) run(phase int, logits, losses []float32, targets []int32, N, Vl int, scale float32) {
	ce.pass = cePass{ce: ce, phase: phase, logits: logits, losses: losses, targets: targets, N: N, Vl: Vl, scale: scale}
	if ce.Split != nil {
		ce.Split.SplitRows(N, &ce.pass)
	} else {
		ce.pass.Rows(0, N)
	}
	ce.pass = cePass{}
}

// Rows runs the pass on rows [lo, hi).
func (p *cePass) Rows(lo, hi int) {
	for n := lo; n < hi; n++ {
		if p.phase == ceFused {
			p.row(ceMax, n)
			p.row(ceExp, n)
			p.row(ceNorm, n)
			continue
		}
		p.row(p.phase, n)
	}
}

// row runs one phase on row n.
func (p *cePass) row(phase, n int) {
	ce, N, Vl := p.ce, p.N, p.Vl
	mx, stats := ce.rowMax, ce.rowStats // stats [0,N): sum of exp; [N,2N): target logit - max
	row := p.logits[n*Vl : (n+1)*Vl]
	t := p.targets[n]
	switch phase {
	case ceMax:
		mx[n] = vec.Max(row) // AVX-512 where available
	case ceExp:
		stats[N+n] = 0
		if j := int(t) - ce.Offset; t != IgnoreIndex && j >= 0 && j < Vl {
			// log softmax numerator = logit - max, exact even if exp underflows
			stats[N+n] = row[j] - mx[n]
		}
		// exp(logit - max) in place and its sum (AVX-512 where available)
		stats[n] = vec.ExpShiftSum(row, mx[n])
	case ceNorm:
		z := float64(stats[n])
		// probabilities: the product in float64, rounded once (AVX-512)
		vec.ScaleF64(row, 1/z)
		ce.rowLoss[n] = 0
		if t == IgnoreIndex {
			p.losses[n] = 0
			return
		}
		l := math.Log(z) - float64(stats[N+n])
		p.losses[n] = float32(l)
		ce.rowLoss[n] = l
	case ceBack:
		if t == IgnoreIndex {
			clear(row)
			return
		}
		vec.Scale(row, p.scale) // AVX-512 where available, same bits
		if j := int(t) - ce.Offset; j >= 0 && j < Vl {
			row[j] -= p.scale
		}
	}
}

// Forward turns local logits (N, Vl) into local probabilities in place and
// writes each row's loss to losses (N), identical on every rank. It returns
// the summed loss and the number of rows whose target is not IgnoreIndex.
func (ce *VocabCrossEntropy) Forward(ctx context.Context, losses, logits []float32, targets []int32, N, Vl int) (float64, int, error) {
	if ce.Group.Size() == 1 {
		// nothing to reduce: max, exponentials and normalization in one
		// pass per row while the row (Vl floats) is in cache, instead of
		// three passes over all N*Vl logits (same bits)
		ce.run(ceFused, logits, losses, targets, N, Vl, 0)
	} else if err := ce.reduceRows(ctx, logits, losses, targets, N, Vl); err != nil {
		return 0, 0, err
	}
	var sum float64
	count := 0
	for n := 0; n < N; n++ { // in row order, whatever the split
		if targets[n] != IgnoreIndex {
			sum += ce.rowLoss[n]
			count++
		}
	}
	return sum, count, nil
}

// reduceRows is Forward's three passes over the rows with the group's
// reductions between them: row maxima, exponentials and their sums, then
// probabilities and losses.
func (ce *VocabCrossEntropy) reduceRows(ctx context.Context, logits, losses []float32, targets []int32, N, Vl int) error {
	ce.run(ceMax, logits, losses, targets, N, Vl, 0)
	if err := ce.Group.AllReduceMax(ctx, ce.rowMax[:N]); err != nil {
		return fmt.Errorf("vocab-parallel cross-entropy max: %w", err)
	}
	ce.run(ceExp, logits, losses, targets, N, Vl, 0)
	if err := ce.Group.AllReduceSum(ctx, ce.rowStats[:2*N]); err != nil {
		return fmt.Errorf("vocab-parallel cross-entropy sum: %w", err)
	}
	ce.run(ceNorm, logits, losses, targets, N, Vl, 0)
	return nil
}

// Backward overwrites local probabilities (N, Vl) with dlogits =
// scale*(p - onehot(target)); ignored rows become zero. No communication.
func (ce *VocabCrossEntropy) Backward(probs []float32, targets []int32, N, Vl int, scale float32) {
	ce.run(ceBack, probs, nil, targets, N, Vl, scale)
}
