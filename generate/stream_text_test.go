package generate

import (
	"bytes"
	"context"
	"testing"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/tokenizer"
)

// TestStreamedTextIsTheDecodedText: with a SentencePiece tokenizer (word
// marks decode to spaces between pieces, not at the text's start) the text
// streamed token by token equals the decoding of all generated tokens.
func TestStreamedTextIsTheDecodedText(t *testing.T) {
	tok, err := tokenizer.LoadDir("../tokenizer/testdata/spbpe")
	if err != nil {
		t.Fatal(err)
	}
	cfg := model.Config{VocabSize: tok.VocabSize(), NLayer: 1, NHead: 2, NEmbd: 16, NPositions: 48, LayerNormEps: 1e-5,
		Activation: model.GELUTanh, Norm: model.LayerNorm, Position: model.PosLearned, InitStd: 0.5}
	m, err := model.New(cfg, 1, 48, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	m.Init(11)
	g := New(m, tok)
	var streamed bytes.Buffer
	res, err := g.Stream(context.Background(), "hello world", Options{MaxTokens: 30, Sampling: Sampling{Temperature: 1, TopP: 1}, Seed: 2},
		func(_ int, b []byte) error { streamed.Write(b); return nil })
	if err != nil {
		t.Fatal(err)
	}
	want, err := tok.Decode(res.Tokens)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tokens) < 10 || !bytes.Equal(streamed.Bytes(), want) || !bytes.Equal(res.Text, want) {
		t.Fatalf("%d tokens: streamed %q, result %q, decoded %q", len(res.Tokens), streamed.Bytes(), res.Text, want)
	}
}
