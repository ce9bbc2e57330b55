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
type VocabCrossEntropy struct {
	Group  Group
	Offset int // first vocabulary id held by this rank
	// per-row scratch: max, then [sumexp | target logit] reduced together
	rowMax, rowStats []float32
}

// NewVocabCrossEntropy prepares buffers for up to maxRows rows.
func NewVocabCrossEntropy(g Group, offset, maxRows int) *VocabCrossEntropy {
	return &VocabCrossEntropy{Group: g, Offset: offset, rowMax: make([]float32, maxRows), rowStats: make([]float32, 2*maxRows)}
}

// Forward turns local logits (N, Vl) into local probabilities in place and
// writes each row's loss to losses (N), identical on every rank. It returns
// the summed loss and the number of rows whose target is not IgnoreIndex.
func (ce *VocabCrossEntropy) Forward(ctx context.Context, losses, logits []float32, targets []int32, N, Vl int) (float64, int, error) {
	mx := ce.rowMax[:N]
	for n := 0; n < N; n++ {
		row := logits[n*Vl : (n+1)*Vl]
		m := float32(math.Inf(-1))
		for _, v := range row {
			if v > m {
				m = v
			}
		}
		mx[n] = m
	}
	if err := ce.Group.AllReduceMax(ctx, mx); err != nil {
		return 0, 0, fmt.Errorf("vocab-parallel cross-entropy max: %w", err)
	}
	stats := ce.rowStats[:2*N] // [0,N): sum of exp; [N,2N): target logit - max
	for n := 0; n < N; n++ {
		row := logits[n*Vl : (n+1)*Vl]
		stats[N+n] = 0
		if t := int(targets[n]) - ce.Offset; targets[n] != IgnoreIndex && t >= 0 && t < Vl {
			// log softmax numerator = logit - max, exact even if exp underflows
			stats[N+n] = row[t] - mx[n]
		}
		// exp(logit - max) in place and its sum (AVX-512 where available)
		stats[n] = vec.ExpShiftSum(row, mx[n])
	}
	if err := ce.Group.AllReduceSum(ctx, stats); err != nil {
		return 0, 0, fmt.Errorf("vocab-parallel cross-entropy sum: %w", err)
	}
	var sum float64
	count := 0
	for n := 0; n < N; n++ {
		z := float64(stats[n])
		// probabilities: the product in float64, rounded once (AVX-512)
		vec.ScaleF64(logits[n*Vl:(n+1)*Vl], 1/z)
		if targets[n] == IgnoreIndex {
			losses[n] = 0
			continue
		}
		l := math.Log(z) - float64(stats[N+n])
		losses[n] = float32(l)
		sum += l
		count++
	}
	return sum, count, nil
}

// Backward overwrites local probabilities (N, Vl) with dlogits =
// scale*(p - onehot(target)); ignored rows become zero. No communication.
func (ce *VocabCrossEntropy) Backward(probs []float32, targets []int32, N, Vl int, scale float32) {
	for n := 0; n < N; n++ {
		row := probs[n*Vl : (n+1)*Vl]
		if targets[n] == IgnoreIndex {
			clear(row)
			continue
		}
		vec.Scale(row, scale) // AVX-512 where available, same bits
		if t := int(targets[n]) - ce.Offset; t >= 0 && t < Vl {
			row[t] -= scale
		}
	}
}
