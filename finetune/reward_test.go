package finetune

import (
	"context"
	"math"
	"testing"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/tokenizer"
)

// TestRewardModelGradient: the Bradley-Terry loss of a reward model,
// backpropagated through the head and the transformer, agrees with
// central differences.
func TestRewardModelGradient(t *testing.T) {
	enc := Encoder{Tok: tokenizer.Bytes{}, EOS: 0}
	d, err := EncodeRewardPairs(enc, []Record{
		{Line: 1, Prompt: "ab=", Chosen: "ba", Rejected: "ab"},
		{Line: 2, Prompt: "cde=", Chosen: "edc", Rejected: "cdeee"},
	}, 8)
	if err != nil {
		t.Fatal(err)
	}
	if d.Last[0] != 5 || d.Last[3] != 7 || d.Truncated != 1 {
		t.Fatalf("last positions %v, truncated %d", d.Last, d.Truncated)
	}
	cfg := model.Config{VocabSize: 256, NLayer: 1, NHead: 2, NEmbd: 8, NPositions: 8, LayerNormEps: 1e-5,
		Activation: model.GELUTanh, Norm: model.LayerNorm, Position: model.PosLearned, InitStd: 0.3}
	m, err := model.New(cfg, 4, 8, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	m.Init(4)
	rm, err := NewRewardModel(m, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	loss := func() float64 {
		r, err := rm.Rewards(ctx, d, 0, 4)
		if err != nil {
			t.Fatal(err)
		}
		l, err := BradleyTerry([]float64{r[0], r[2]}, []float64{r[1], r[3]})
		if err != nil {
			t.Fatal(err)
		}
		return l.Loss
	}
	loss()
	r, _ := rm.Rewards(ctx, d, 0, 4)
	l, _ := BradleyTerry([]float64{r[0], r[2]}, []float64{r[1], r[3]})
	m.Params.ZeroGrad()
	clear(rm.dHead)
	if err := rm.Backward(ctx, d, 0, []float64{l.DChosen[0], l.DRejected[0], l.DChosen[1], l.DRejected[1]}); err != nil {
		t.Fatal(err)
	}
	check := func(name string, x, g []float32) {
		worst := 0.0
		for k := 0; k < 5; k++ {
			i := argmaxAbs(g, k)
			orig := x[i]
			const h = 1e-2
			x[i] = orig + h
			lp := loss()
			x[i] = orig - h
			lm := loss()
			x[i] = orig
			num := (lp - lm) / (2 * h)
			e := math.Abs(num-float64(g[i])) / math.Max(1e-3, math.Abs(num)+math.Abs(float64(g[i])))
			worst = math.Max(worst, e)
			if e > 3e-2 {
				t.Errorf("%s[%d]: analytic %.6g numeric %.6g", name, i, g[i], num)
			}
		}
		t.Logf("%s: max relative error %.2g", name, worst)
	}
	check("head.weight", rm.Head.Weight, rm.dHead[:8])
	for _, name := range []string{"ln_f.weight", "h.0.mlp.c_fc.weight", "wte.weight"} {
		p, _ := m.Params.Lookup(name)
		check(name, p.Data, p.Grad)
	}
	if err := rm.SetHead(RewardHead{Weight: make([]float32, 3)}); err == nil {
		t.Fatal("head of the wrong width accepted")
	}
}
