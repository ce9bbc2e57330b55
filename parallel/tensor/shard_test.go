package tensor

import (
	"context"
	"math"
	"reflect"
	"testing"
)

func iota32(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(i)
	}
	return x
}

func TestShardRoundTripEverySpec(t *testing.T) {
	shapes := [][]int{{6, 12}, {12}, {4, 6, 12}}
	specs := []ShardSpec{Replicated, Split(0, 1), Split(1, 1), Split(1, 3), Split(0, 2), Split(2, 3)}
	for _, shape := range shapes {
		for _, spec := range specs {
			if spec.Axis >= len(shape) {
				continue
			}
			for _, size := range []int{1, 2} {
				full := iota32(6 * 12 * len(shape) * len(shape))[:numel(shape)]
				ls, err := spec.LocalShape(shape, size)
				if err != nil {
					continue
				}
				back := make([]float32, len(full))
				for r := 0; r < size; r++ {
					local := make([]float32, numel(ls))
					spec.Extract(local, full, shape, r, size)
					spec.Insert(back, local, shape, r, size)
				}
				if !reflect.DeepEqual(back, full) {
					t.Fatalf("shape %v spec %+v size %d: round trip lost data", shape, spec, size)
				}
			}
		}
	}
}

func numel(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

func TestFusedQKVShardTakesEachPart(t *testing.T) {
	// A [1, 3C] bias with C = 4 split over 2 ranks: rank 1 holds q[2:4], k[2:4], v[2:4].
	full := iota32(12)
	local := make([]float32, 6)
	Split(0, 3).Extract(local, full, []int{12}, 1, 2)
	if want := []float32{2, 3, 6, 7, 10, 11}; !reflect.DeepEqual(local, want) {
		t.Fatalf("got %v want %v", local, want)
	}
	// weight [2, 12]: rows keep the same pattern
	w := iota32(24)
	lw := make([]float32, 12)
	Split(1, 3).Extract(lw, w, []int{2, 12}, 0, 2)
	if want := []float32{0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21}; !reflect.DeepEqual(lw, want) {
		t.Fatalf("got %v want %v", lw, want)
	}
	if _, err := Split(0, 3).LocalShape([]int{12}, 8); err == nil {
		t.Fatal("12 split in 3 parts x 8 ranks accepted")
	}
}

// sumGroup simulates a TP group in one goroutine: the ranks' buffers are
// registered up front and reductions are applied across them when the last
// rank calls (ranks run sequentially in the test, so we precompute).
type fakeGroup struct {
	rank, size int
	sum, max   func([]float32) // combines with the other ranks' contribution
}

func (g fakeGroup) Size() int { return g.size }
func (g fakeGroup) Rank() int { return g.rank }
func (g fakeGroup) AllReduceSum(_ context.Context, b []float32) error {
	g.sum(b)
	return nil
}
func (g fakeGroup) AllReduceMax(_ context.Context, b []float32) error {
	g.max(b)
	return nil
}

func TestVocabParallelCrossEntropyMatchesFull(t *testing.T) {
	N, V := 3, 8
	logits := []float32{
		1, 2, 3, 4, 5, 6, 7, 8,
		-1, 0.5, 2, -3, 0, 1, 9, -2,
		0, 0, 0, 0, 0, 0, 0, 0,
	}
	targets := []int32{7, 1, IgnoreIndex}
	full := NewVocabCrossEntropy(Solo{}, 0, N)
	fl := append([]float32(nil), logits...)
	fLoss := make([]float32, N)
	fSum, fCount, _ := full.Forward(context.Background(), fLoss, fl, targets, N, V)

	// two ranks of 4 columns each; run them in lockstep by hand
	halves := [2][]float32{make([]float32, N*4), make([]float32, N*4)}
	for r := 0; r < 2; r++ {
		for n := 0; n < N; n++ {
			copy(halves[r][n*4:(n+1)*4], logits[n*V+r*4:n*V+r*4+4])
		}
	}
	// Precompute what the collectives would return by running both ranks'
	// local phases: max over the two halves, then sums.
	maxes := make([]float32, N)
	for n := 0; n < N; n++ {
		m := float32(math.Inf(-1))
		for _, v := range logits[n*V : (n+1)*V] {
			m = max(m, v)
		}
		maxes[n] = m
	}
	var partial [2][]float32
	for r := 0; r < 2; r++ {
		g := fakeGroup{rank: r, size: 2,
			max: func(b []float32) { copy(b, maxes) },
			sum: func(b []float32) { partial[r] = append([]float32(nil), b...) },
		}
		ce := NewVocabCrossEntropy(g, r*4, N)
		ce.Forward(context.Background(), make([]float32, N), append([]float32(nil), halves[r]...), targets, N, 4)
	}
	total := make([]float32, 2*N)
	for i := range total {
		total[i] = partial[0][i] + partial[1][i]
	}
	for r := 0; r < 2; r++ {
		g := fakeGroup{rank: r, size: 2,
			max: func(b []float32) { copy(b, maxes) },
			sum: func(b []float32) { copy(b, total) },
		}
		ce := NewVocabCrossEntropy(g, r*4, N)
		losses := make([]float32, N)
		probs := append([]float32(nil), halves[r]...)
		sum, count, err := ce.Forward(context.Background(), losses, probs, targets, N, 4)
		if err != nil {
			t.Fatal(err)
		}
		if count != fCount || math.Abs(sum-fSum) > 1e-5 {
			t.Fatalf("rank %d: sum %g count %d, full %g %d", r, sum, count, fSum, fCount)
		}
		ce.Backward(probs, targets, N, 4, 0.5)
		full.Backward(fl, targets, N, V, 0.5)
		for n := 0; n < N; n++ {
			for i := 0; i < 4; i++ {
				if d := math.Abs(float64(probs[n*4+i] - fl[n*V+r*4+i])); d > 1e-6 {
					t.Fatalf("rank %d dlogit[%d,%d] = %g, full %g", r, n, i, probs[n*4+i], fl[n*V+r*4+i])
				}
			}
		}
		full = NewVocabCrossEntropy(Solo{}, 0, N)
		fl = append([]float32(nil), logits...)
		full.Forward(context.Background(), fLoss, fl, targets, N, V)
	}
}
