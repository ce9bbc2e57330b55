package model

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/strand-ml/strand/internal/alloctest"
)

// flashCase is one attention configuration checked against the reference
// Attention, which keeps the full (T, T) probability matrix.
type flashCase struct {
	name             string
	B, T, C, NH      int
	alibi, segmented bool
	threads          int
}

// segStarts packs each row into segments of varying length and returns
// every position's first visible key.
func segStarts(r *rand.Rand, B, T int) []int32 {
	s := make([]int32, B*T)
	for b := 0; b < B; b++ {
		first := 0
		for t := 0; t < T; t++ {
			if t > 0 && r.IntN(23) == 0 {
				first = t
			}
			s[b*T+t] = int32(first)
		}
	}
	return s
}

func TestFlashAttentionMatchesReference(t *testing.T) {
	cases := []flashCase{
		{"one block", 2, 5, 8, 2, false, false, 1},
		{"block edge", 1, flashBlock, 12, 3, false, false, 2},
		{"odd sizes, several blocks", 2, 2*flashBlock + 7, 20, 4, false, false, 3},
		{"alibi", 2, flashBlock + 9, 12, 3, true, false, 2},
		{"segments", 2, 2*flashBlock + 3, 12, 2, false, true, 2},
		{"alibi and segments", 1, 3*flashBlock - 1, 8, 2, true, true, 1},
	}
	r := rand.New(rand.NewPCG(21, 4))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			B, T, C, NH := c.B, c.T, c.C, c.NH
			ref, fa := NewReferenceAttention(c.threads, T), NewFlashAttention(c.threads, T)
			if c.alibi {
				ref.Slopes = alibiSlopes(NH, NH, 0, NH)
				fa.Slopes = ref.Slopes
			}
			if c.segmented {
				ref.SegStart = segStarts(r, B, T)
				fa.SegStart = ref.SegStart
			}
			qkv, dout := randn(r, B*T*3*C, 2), randn(r, B*T*C, 1)
			want, att := make([]float32, B*T*C), make([]float32, B*NH*T*T)
			got, lse := make([]float32, B*T*C), make([]float32, B*NH*T)
			ref.Forward(want, att, qkv, B, T, C, NH)
			fa.Forward(got, lse, qkv, B, T, C, NH)
			assertClose(t, "out", got, want, 2e-5)
			wantD, gotD := make([]float32, len(qkv)), make([]float32, len(qkv))
			for i := range gotD {
				gotD[i] = float32(math.NaN()) // Backward must overwrite every entry
			}
			ref.Backward(wantD, dout, qkv, att, B, T, C, NH)
			fa.Backward(gotD, dout, qkv, got, lse, B, T, C, NH)
			assertClose(t, "dqkv", gotD, wantD, 5e-5)
		})
	}
}

// assertClose fails when |got-want| > tol*(1+|want|) anywhere.
func assertClose(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		if math.IsNaN(g) || math.Abs(g-w) > tol*(1+math.Abs(w)) {
			t.Fatalf("%s[%d] = %g, reference %g", what, i, g, w)
		}
	}
}

func TestFlashAttentionGradientsFiniteDifference(t *testing.T) {
	r := rand.New(rand.NewPCG(22, 1))
	B, T, C, NH := 1, flashBlock+5, 8, 2
	a := NewFlashAttention(2, T)
	a.Slopes = alibiSlopes(NH, NH, 0, NH)
	a.SegStart = segStarts(r, B, T)
	qkv, R := randn(r, B*T*3*C, 1), randn(r, B*T*C, 1)
	out, lse := make([]float32, B*T*C), make([]float32, B*NH*T)
	loss := func() float64 { a.Forward(out, lse, qkv, B, T, C, NH); return dotR(out, R) }
	loss()
	dqkv := make([]float32, len(qkv))
	a.Backward(dqkv, R, qkv, out, lse, B, T, C, NH)
	checkGrad(t, "flash dqkv", qkv, dqkv, loss, 60, r)
}

func TestFlashAttentionAllocatesNothing(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 1))
	B, T, C, NH := 2, flashBlock+3, 16, 4
	a := NewFlashAttention(3, T)
	qkv, dout := randn(r, B*T*3*C, 1), randn(r, B*T*C, 1)
	out, lse, dqkv := make([]float32, B*T*C), make([]float32, B*NH*T), make([]float32, len(qkv))
	allocs := alloctest.PerCall(3, 10, 8, func() {
		a.Forward(out, lse, qkv, B, T, C, NH)
		a.Backward(dqkv, dout, qkv, out, lse, B, T, C, NH)
	})
	if allocs >= alloctest.Tolerance {
		t.Fatalf("%.2f allocations per forward+backward, want 0", allocs)
	}
}

func TestFlashAttentionPoolStopsWhenUnreachable(t *testing.T) {
	a := NewFlashAttention(3, 8)
	p := a.pool.p
	r := rand.New(rand.NewPCG(24, 1))
	qkv := randn(r, 8*3*8, 1)
	a.Forward(make([]float32, 8*8), make([]float32, 2*8), qkv, 1, 8, 8, 2)
	if n := p.live.Load(); n != 1 {
		t.Fatalf("%d pool workers after a 2-head call on 3 threads, want 1", n)
	}
	a = nil
	deadline := time.Now().Add(5 * time.Second)
	for p.live.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d pool workers still running after the attention became unreachable", p.live.Load())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
