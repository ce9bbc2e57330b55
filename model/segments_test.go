package model

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/strand-ml/strand/gemm"
)

func segConfig(pos string) Config {
	return Config{VocabSize: 11, NLayer: 2, NHead: 2, NEmbd: 8, NPositions: 12, LayerNormEps: 1e-5,
		Activation: GELUTanh, Norm: LayerNorm, Position: pos, InitStd: 0.3, RopeTheta: 100}
}

// TestPackedEqualsUnpacked packs three examples (lengths 4, 5, 3) into one
// row of 12 and checks loss and every gradient against running each
// example alone: attention must not cross segments and learned positions
// must restart.
func TestPackedEqualsUnpacked(t *testing.T) {
	for _, pos := range []string{PosLearned, PosRoPE, PosALiBi} {
		t.Run(pos, func(t *testing.T) {
			cfg := segConfig(pos)
			lens := []int{4, 5, 3}
			T := 12
			r := rand.New(rand.NewPCG(3, 9))
			tok, tgt, seg := make([]int32, T), make([]int32, T), make([]int32, T)
			n := 0
			for s, l := range lens {
				for i := 0; i < l; i++ {
					tok[n], tgt[n], seg[n] = int32(r.IntN(11)), int32(r.IntN(11)), int32(s)
					if i == 0 {
						tgt[n] = IgnoreIndex // a masked prompt position
					}
					n++
				}
			}
			packed, err := New(cfg, 1, T, gemm.New(1))
			if err != nil {
				t.Fatal(err)
			}
			packed.Init(5)
			a := packed.NewActs(1, T)
			a.SetSegments(seg)
			ctx := context.Background()
			sum, count, err := packed.ForwardActs(ctx, a, tok, nil, tgt, 1, T)
			if err != nil {
				t.Fatal(err)
			}
			if err := packed.BackwardActs(ctx, a, nil, 1); err != nil {
				t.Fatal(err)
			}

			alone, err := New(cfg, 1, T, gemm.New(1))
			if err != nil {
				t.Fatal(err)
			}
			copy(alone.Params.Data, packed.Params.Data)
			var wantSum float64
			wantCount, off := 0, 0
			for _, l := range lens {
				s, c, err := alone.Forward(tok[off:off+l], tgt[off:off+l], 1, l)
				if err != nil {
					t.Fatal(err)
				}
				alone.Backward(1) // gradients accumulate over the examples
				wantSum += s
				wantCount += c
				off += l
			}
			if count != wantCount || math.Abs(sum-wantSum) > 1e-5*math.Abs(wantSum) {
				t.Fatalf("packed loss %.7g over %d, alone %.7g over %d", sum, count, wantSum, wantCount)
			}
			for _, p := range packed.Params.List {
				got := packed.Params.Grad[p.Offset : p.Offset+p.Size()]
				want := alone.Params.Grad[p.Offset : p.Offset+p.Size()]
				for i := range got {
					if d := math.Abs(float64(got[i] - want[i])); d > 1e-5+1e-4*math.Abs(float64(want[i])) {
						t.Fatalf("%s[%d]: packed %g alone %g", p.Name, i, got[i], want[i])
					}
				}
			}
			// Clearing the segments restores one sequence per row: the
			// packed examples then see each other and the loss changes.
			a.SetSegments(nil)
			s2, _, err := packed.ForwardActs(ctx, a, tok, nil, tgt, 1, T)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(s2-sum) < 1e-6 {
				t.Fatalf("loss without segments %g equals the packed loss", s2)
			}
		})
	}
}

// TestPackedGradientsFiniteDifference checks packed gradients numerically.
func TestPackedGradientsFiniteDifference(t *testing.T) {
	cfg := segConfig(PosLearned)
	B, T := 2, 6
	m, err := New(cfg, B, T, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	m.Init(42)
	r := rand.New(rand.NewPCG(14, 1))
	tok, tgt := make([]int32, B*T), make([]int32, B*T)
	for i := range tok {
		tok[i], tgt[i] = int32(r.IntN(11)), int32(r.IntN(11))
	}
	seg := []int32{0, 0, 1, 1, 1, 2, 0, 0, 0, 0, 3, 3}
	a := m.NewActs(B, T)
	a.SetSegments(seg)
	ctx := context.Background()
	loss := func() float64 {
		s, _, err := m.ForwardActs(ctx, a, tok, nil, tgt, B, T)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	loss()
	m.Params.ZeroGrad()
	if err := m.BackwardActs(ctx, a, nil, 1); err != nil {
		t.Fatal(err)
	}
	grad := append([]float32(nil), m.Params.Grad...)
	for _, name := range []string{"wpe.weight", "wte.weight", "h.0.attn.c_attn.weight", "h.1.attn.c_attn.weight"} {
		p, _ := m.Params.Lookup(name)
		checkGrad(t, name, p.Data, grad[p.Offset:p.Offset+p.Size()], loss, 10, r)
	}
}

func TestSegmentsBadLength(t *testing.T) {
	m, err := New(segConfig(PosLearned), 1, 4, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	a := m.NewActs(1, 4)
	a.SetSegments([]int32{0, 0, 1})
	if _, _, err := m.ForwardActs(context.Background(), a, []int32{1, 2, 3, 4}, nil, nil, 1, 4); err == nil {
		t.Fatal("3 segment ids for 4 positions accepted")
	}
}

// TestSegmentsFollowTheirActs: a pipeline keeps several micro-batches in
// flight, so a backward must use its own Acts' segments even after another
// micro-batch with different segments ran forward.
func TestSegmentsFollowTheirActs(t *testing.T) {
	cfg := segConfig(PosLearned)
	T := 8
	m, err := New(cfg, 1, T, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	m.Init(2)
	tok, tgt := []int32{1, 2, 3, 4, 5, 6, 7, 8}, []int32{2, 3, 4, 5, 6, 7, 8, 9}
	ctx := context.Background()
	a, b := m.NewActs(1, T), m.NewActs(1, T)
	a.SetSegments([]int32{0, 0, 0, 1, 1, 1, 1, 1})
	b.SetSegments([]int32{0, 1, 2, 3, 4, 5, 6, 7})
	run := func(interleave bool) []float32 {
		m.Params.ZeroGrad()
		if _, _, err := m.ForwardActs(ctx, a, tok, nil, tgt, 1, T); err != nil {
			t.Fatal(err)
		}
		if interleave {
			if _, _, err := m.ForwardActs(ctx, b, tok, nil, tgt, 1, T); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.BackwardActs(ctx, a, nil, 1); err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), m.Params.Grad...)
	}
	alone, interleaved := run(false), run(true)
	for i := range alone {
		if alone[i] != interleaved[i] {
			t.Fatalf("grad[%d] %g after another micro-batch's forward, %g alone", i, interleaved[i], alone[i])
		}
	}
}
