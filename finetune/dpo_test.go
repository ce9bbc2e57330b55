package finetune

import (
	"context"
	"math"
	"testing"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/tokenizer"
)

func pairFixture(t *testing.T) *PairData {
	t.Helper()
	enc := Encoder{Tok: tokenizer.Bytes{}, EOS: 0}
	recs := []Record{
		{Line: 1, Prompt: "ab=", Chosen: "ba", Rejected: "ab"},
		{Line: 2, Prompt: "cde=", Chosen: "edc", Rejected: "cd"},
	}
	d, err := EncodePairs(enc, recs, 8)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDPOObjectiveGradient: the per-position weights DPOBatches gives the
// trainer produce the gradient of the DPO loss of LogProbs, checked by
// central differences on a few parameters.
func TestDPOObjectiveGradient(t *testing.T) {
	d := pairFixture(t)
	cfg := model.Config{VocabSize: 256, NLayer: 1, NHead: 2, NEmbd: 8, NPositions: 8, LayerNormEps: 1e-5,
		Activation: model.GELUTanh, Norm: model.LayerNorm, Position: model.PosLearned, InitStd: 0.3}
	m, err := model.New(cfg, 4, 8, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	m.Init(1)
	ctx := context.Background()
	ref, err := LogProbs(ctx, m, d)
	if err != nil {
		t.Fatal(err)
	}
	// move the policy away from the reference so the loss is not at its
	// symmetric point
	for i := range m.Params.Data {
		m.Params.Data[i] *= 1.1
	}
	const beta = 0.5
	dpoLoss := func() float64 {
		lp, err := LogProbs(ctx, m, d)
		if err != nil {
			t.Fatal(err)
		}
		var pc, pr []float64
		for i := 0; i < d.Pairs; i++ {
			pc, pr = append(pc, lp[2*i]), append(pr, lp[2*i+1])
		}
		l, err := DPO(pc, pr, []float64{ref[0], ref[2]}, []float64{ref[1], ref[3]}, beta)
		if err != nil {
			t.Fatal(err)
		}
		return l.Loss
	}
	b, err := NewDPOBatches(d, ref, beta, BatchConfig{Batch: 4})
	if err != nil {
		t.Fatal(err)
	}
	in, tg := make([]int32, 4*8), make([]int32, 4*8)
	if err := b.Next(in, tg); err != nil {
		t.Fatal(err)
	}
	a := m.NewActs(4, 8)
	if _, _, err := m.ForwardActs(ctx, a, in, nil, tg, 4, 8); err != nil {
		t.Fatal(err)
	}
	w := make([]float32, 4*8)
	sum, err := b.Forward(0, tg, a.Losses(), w)
	if err != nil {
		t.Fatal(err)
	}
	if want := dpoLoss() * 2; math.Abs(sum-want) > 1e-6 {
		t.Fatalf("objective sum %g, want %g (2 pairs x mean loss)", sum, want)
	}
	a.SetLossWeights(w)
	m.Params.ZeroGrad()
	if err := m.BackwardActs(ctx, a, nil, 1/float32(b.Units(tg))); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"h.0.mlp.c_fc.weight", "wte.weight", "h.0.attn.c_attn.weight"} {
		p, _ := m.Params.Lookup(name)
		worst := 0.0
		for k := 0; k < 6; k++ {
			// the largest gradients are the informative ones
			i := argmaxAbs(p.Grad, k)
			orig := p.Data[i]
			const h = 1e-2
			p.Data[i] = orig + h
			lp := dpoLoss()
			p.Data[i] = orig - h
			lm := dpoLoss()
			p.Data[i] = orig
			num := (lp - lm) / (2 * h)
			g := float64(p.Grad[i])
			e := math.Abs(num-g) / math.Max(1e-3, math.Abs(num)+math.Abs(g))
			worst = math.Max(worst, e)
			if e > 3e-2 {
				t.Errorf("%s[%d]: analytic %.6g numeric %.6g", name, i, g, num)
			}
		}
		t.Logf("%s: max relative error %.2g", name, worst)
	}
	if b.Stats.Pairs != 2 {
		t.Fatalf("stats count %g pairs, want 2", b.Stats.Pairs)
	}
}

// argmaxAbs is the index of the k-th largest |x| (k < 8), by selection.
func argmaxAbs(x []float32, k int) int {
	used := map[int]bool{}
	best := -1
	for step := 0; step <= k; step++ {
		best = -1
		for i, v := range x {
			if !used[i] && (best < 0 || math.Abs(float64(v)) > math.Abs(float64(x[best]))) {
				best = i
			}
		}
		used[best] = true
	}
	return best
}

func TestDPOBatchesSplitPairs(t *testing.T) {
	d := pairFixture(t)
	if _, err := NewDPOBatches(d, nil, 0.1, BatchConfig{Batch: 3}); err == nil {
		t.Fatal("odd rows per rank accepted")
	}
	b0, _ := NewDPOBatches(d, nil, 0.1, BatchConfig{Batch: 2, DPRank: 0, DPSize: 2})
	b1, _ := NewDPOBatches(d, nil, 0.1, BatchConfig{Batch: 2, DPRank: 1, DPSize: 2})
	i0, t0, i1, t1 := make([]int32, 16), make([]int32, 16), make([]int32, 16), make([]int32, 16)
	if err := b0.Next(i0, t0); err != nil {
		t.Fatal(err)
	}
	if err := b1.Next(i1, t1); err != nil {
		t.Fatal(err)
	}
	if !equal32(i0, d.Inputs[:16]) || !equal32(i1, d.Inputs[16:32]) {
		t.Fatal("data-parallel ranks do not take consecutive pairs of the global batch")
	}
	if _, err := b0.Forward(0, t0, make([]float32, 16), make([]float32, 16)); err == nil {
		t.Fatal("forward without reference log-probs accepted")
	}
}
