package model

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/strand-ml/strand/gemm"
)

// A stage holding several model chunks (virtual pipeline stages) runs each
// chunk on its own Acts. Run in one process, chunk after chunk, holding
// every chunk, it must compute the whole model's loss and gradients bit
// for bit: the same blocks in the same order on the same parameters.
func TestChunksMatchWholeModel(t *testing.T) {
	cfg := parallelTestConfig(GELUTanh, LayerNorm)
	B, T := 2, 8
	wantLoss, wantGrad := fullGrads(t, cfg, B, T)
	for _, spans := range [][]Span{{{0, 2}, {2, 4}}, {{0, 1}, {1, 2}, {2, 4}}, {{0, 1}, {1, 2}, {2, 3}, {3, 4}}} {
		l := Chunked(nil, spans, true, true)
		m, err := NewSharded(cfg, l, B, T, gemm.New(1))
		if err != nil {
			t.Fatal(err)
		}
		m.Init(7)
		if m.Chunks() != len(spans) {
			t.Fatalf("%v: %d chunks", spans, m.Chunks())
		}
		tok, tgt := testBatch(B, T, cfg.VocabSize)
		acts := make([]*Acts, len(spans))
		ctx := context.Background()
		var hidden []float32
		var sum float64
		var count int
		for c := range spans {
			if acts[c], err = m.NewChunkActs(c, B, T, RecomputeNone); err != nil {
				t.Fatal(err)
			}
			if sum, count, err = m.ForwardActs(ctx, acts[c], tok, hidden, tgt, B, T); err != nil {
				t.Fatalf("%v chunk %d: %v", spans, c, err)
			}
			hidden = acts[c].Output()
		}
		if got := sum / float64(count); got != wantLoss {
			t.Errorf("%v: loss %v, whole model %v", spans, got, wantLoss)
		}
		var dOut []float32
		// the flat gradient buffer puts the last layers first: each
		// chunk's backward makes a longer prefix final
		var ready []int
		m.GradReady = func(n int) { ready = append(ready, n) }
		for c := len(spans) - 1; c >= 0; c-- {
			if err := m.BackwardActs(ctx, acts[c], dOut, float32(1/float64(count))); err != nil {
				t.Fatalf("%v chunk %d backward: %v", spans, c, err)
			}
			dOut = m.DInput(acts[c])
		}
		if !slices.IsSorted(ready) || ready[len(ready)-1] != len(m.Params.Grad) {
			t.Errorf("%v: gradient-ready prefixes %v are not increasing to %d", spans, ready, len(m.Params.Grad))
		}
		for _, p := range m.Params.List {
			if !slices.Equal(p.Grad, wantGrad[p.Name]) {
				t.Errorf("%v: gradient of %s differs from the whole model's", spans, p.Name)
			}
		}
	}
}

// A chunked stage holds exactly its chunks' blocks, named by global index
// (checkpoints are by global layer), laid out last first.
func TestChunkedLayoutParams(t *testing.T) {
	cfg := parallelTestConfig(GELUTanh, LayerNorm)
	cfg.NLayer = 8
	l := Chunked(nil, []Span{{1, 2}, {5, 7}}, false, false)
	m, err := NewSharded(cfg, l, 1, 4, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	for _, p := range m.Params.List {
		if strings.HasSuffix(p.Name, ".ln_1.weight") {
			blocks = append(blocks, p.Name)
		}
	}
	if want := []string{"h.6.ln_1.weight", "h.5.ln_1.weight", "h.1.ln_1.weight"}; !slices.Equal(blocks, want) {
		t.Errorf("blocks %v, want %v", blocks, want)
	}
	if l.NumBlocks() != 3 {
		t.Errorf("NumBlocks %d, want 3", l.NumBlocks())
	}
	for _, bad := range [][]Span{{{0, 2}, {1, 3}}, {{2, 2}}, {{0, 2}, {6, 9}}} {
		if _, err := NewSharded(cfg, Chunked(nil, bad, false, false), 1, 4, gemm.New(1)); err == nil {
			t.Errorf("chunks %v accepted", bad)
		}
	}
	if _, err := NewSharded(cfg, Chunked(nil, []Span{{1, 2}, {5, 8}}, true, true), 1, 4, gemm.New(1)); err == nil {
		t.Error("a first stage whose first chunk starts at block 1 accepted")
	}
}
