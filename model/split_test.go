package model

import (
	"math"
	"testing"

	"github.com/strand-ml/strand/gemm"
)

// TestSplitLayersBitIdenticalAcrossThreads: the norms, activations, bias
// and residual adds, bias gradients and ZeroGrad split over 1, 2 or 3
// goroutines (forced down to a few rows each) give the same loss and the
// same gradient bits, for both activation/norm families.
func TestSplitLayersBitIdenticalAcrossThreads(t *testing.T) {
	for _, c := range []struct{ act, norm string }{{GELUTanh, LayerNorm}, {SwiGLU, RMSNorm}, {GELUErf, LayerNorm}} {
		cfg := parallelTestConfig(c.act, c.norm)
		cfg.NEmbd, cfg.NPositions = 48, 16
		B, T := 3, 16
		run := func(threads int) (float64, []float32, float64) {
			m, err := New(cfg, B, T, gemm.New(threads))
			if err != nil {
				t.Fatal(err)
			}
			m.splitMin = 5 // odd, so ranges end mid-row-block
			m.Init(3)
			for i := range m.Params.Data { // biases and norms start at 0 and 1: move them
				m.Params.Data[i] += 0.05 * float32(math.Sin(float64(i)))
			}
			for i := range m.Params.Grad {
				m.Params.Grad[i] = float32(i) // ZeroGrad must clear all of it
			}
			m.Params.ZeroGrad()
			tok, tgt := testBatch(B, T, cfg.VocabSize)
			sum, count, err := m.Forward(tok, tgt, B, T)
			if err != nil {
				t.Fatal(err)
			}
			m.Backward(float32(1 / float64(count)))
			return sum, append([]float32(nil), m.Params.Grad...), m.Params.NormSumSquares()
		}
		loss1, g1, ss1 := run(1)
		var seq float64
		for _, p := range g1 {
			seq += float64(p) * float64(p)
		}
		if math.Abs(ss1-seq) > 1e-12*seq {
			t.Errorf("%s/%s: NormSumSquares %v, sequential sum %v", c.act, c.norm, ss1, seq)
		}
		for _, threads := range []int{2, 3} {
			loss, g, ss := run(threads)
			if math.Float64bits(ss) != math.Float64bits(ss1) {
				t.Errorf("%s/%s, %d threads: NormSumSquares %v, 1 thread %v", c.act, c.norm, threads, ss, ss1)
			}
			if loss != loss1 {
				t.Errorf("%s/%s, %d threads: loss %v, 1 thread %v", c.act, c.norm, threads, loss, loss1)
			}
			for i := range g {
				if math.Float32bits(g[i]) != math.Float32bits(g1[i]) {
					t.Errorf("%s/%s, %d threads: grad[%d] = %v, 1 thread %v", c.act, c.norm, threads, i, g[i], g1[i])
					break
				}
			}
		}
		if nz := countNonzero(g1); nz < len(g1)/2 {
			t.Errorf("%s/%s: only %d of %d gradients are nonzero", c.act, c.norm, nz, len(g1))
		}
	}
}

func countNonzero(x []float32) int {
	n := 0
	for _, v := range x {
		if v != 0 {
			n++
		}
	}
	return n
}
