package finetune

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/tokenizer"
)

func TestReadChoices(t *testing.T) {
	in := `{"ctx": "ab", "endings": ["c", "d"], "label": 1}
{"context": "x", "choices": ["y"], "label": 0}
{"context": "x", "choices": ["y", "z"], "label": 2}
{"context": "x", "choices": ["y", ""], "label": 0}
{"context": "q", "choices": ["r", "s", "t"], "label": 2}`
	qs, rep, err := ReadChoices(strings.NewReader(in), Skip)
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) != 2 || rep.Skipped != 3 || qs[0].Context != "ab" || qs[0].Label != 1 || qs[1].Line != 5 {
		t.Fatalf("questions %+v, report %+v", qs, rep)
	}
	if _, _, err := ReadChoices(strings.NewReader(in), Fail); err == nil || !strings.HasPrefix(err.Error(), "line 2:") {
		t.Fatalf("fail policy: %v", err)
	}
}

// TestScoreChoices compares the choice log-likelihoods with a log-softmax
// of the model's logits computed here: labelling each question with the
// reference's best choice gives accuracy 1, with another choice 0.
func TestScoreChoices(t *testing.T) {
	cfg := model.Config{VocabSize: 256, NLayer: 1, NHead: 2, NEmbd: 8, NPositions: 12, LayerNormEps: 1e-5,
		Activation: model.GELUTanh, Norm: model.LayerNorm, Position: model.PosLearned, InitStd: 0.5}
	m, err := model.New(cfg, 4, 12, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	m.Init(9)
	enc := Encoder{Tok: tokenizer.Bytes{}, EOS: 0}
	qs := []Choice{{Context: "abc", Choices: []string{"d", "xyz", "cba"}}, {Context: "hello w", Choices: []string{"orld", "hat", "ow", "e"}}}
	ref := func(ctxText, opt string) float64 {
		toks := append([]byte(ctxText), opt...)
		in := make([]int32, len(toks)-1)
		for i := range in {
			in[i] = int32(toks[i])
		}
		if _, _, err := m.Forward(in, nil, 1, len(in)); err != nil {
			t.Fatal(err)
		}
		lg := m.Logits()
		var lp float64
		for i := len(ctxText) - 1; i < len(in); i++ {
			row := lg[i*256 : (i+1)*256]
			mx := row[0]
			for _, v := range row {
				mx = max(mx, v)
			}
			var z float64
			for _, v := range row {
				z += math.Exp(float64(v - mx))
			}
			lp += float64(row[toks[i+1]]-mx) - math.Log(z)
		}
		return lp
	}
	for i := range qs {
		best, bestLP := 0, math.Inf(-1)
		for b, s := range qs[i].Choices {
			if lp := ref(qs[i].Context, s); lp > bestLP {
				best, bestLP = b, lp
			}
		}
		qs[i].Label = best
	}
	res, err := ScoreChoices(context.Background(), m, enc, qs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accuracy != 1 || res.Questions != 2 {
		t.Fatalf("accuracy %g over %d with the reference's labels, want 1", res.Accuracy, res.Questions)
	}
	for i := range qs {
		qs[i].Label = (qs[i].Label + 1) % len(qs[i].Choices)
	}
	if res, _ = ScoreChoices(context.Background(), m, enc, qs); res.Accuracy != 0 {
		t.Fatalf("accuracy %g with wrong labels, want 0", res.Accuracy)
	}
}
