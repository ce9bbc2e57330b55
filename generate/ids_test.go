package generate

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/hf"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/safetensors"
)

// A Hugging Face Llama shipped without a tokenizer: prompt ids in, ids out,
// greedy as the PyTorch oracle (../hf/testdata), stopping at any of
// several eos ids.
func TestPromptIDsAndEOSIDsOnLlama(t *testing.T) {
	dir := filepath.Join("..", "hf", "testdata", "llama")
	cfg, meta, err := hf.ReadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.New(cfg, 1, 1, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := hf.Load(dir, m); err != nil {
		t.Fatal(err)
	}
	ref, err := safetensors.Read(filepath.Join(dir, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	rt, _ := ref.Tensor("greedy")
	greedy := make([]int, len(rt.Data)/4)
	for i := range greedy {
		b := rt.Data[4*i:]
		greedy[i] = int(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)
	}
	g := New(m, nil)
	g.EOSIDs = meta.EOS
	opts := Options{MaxTokens: len(greedy) - 5, Sampling: Sampling{Temperature: 0}}
	var streamed []int
	res, err := g.StreamIDs(context.Background(), greedy[:5], opts, func(id int, text []byte) error {
		if len(text) != 0 {
			t.Errorf("text %q without a tokenizer", text)
		}
		if id != NoToken {
			streamed = append(streamed, id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Tokens, greedy[5:]) || !slices.Equal(streamed, res.Tokens) {
		t.Fatalf("greedy ids %v (streamed %v), PyTorch %v", res.Tokens, streamed, greedy[5:])
	}
	// stop at the 3rd generated token, given as the second of two eos ids
	g.EOSIDs = []int{-5, greedy[7]}
	res, err = g.StreamIDs(context.Background(), greedy[:5], opts, func(int, []byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if res.Reason != "eos" || !slices.Equal(res.Tokens, greedy[5:7]) {
		t.Fatalf("with eos %d: %v (%s), want %v (eos)", greedy[7], res.Tokens, res.Reason, greedy[5:7])
	}
	if _, err := g.StreamIDs(context.Background(), []int{1, cfg.VocabSize}, opts, func(int, []byte) error { return nil }); err == nil {
		t.Error("a prompt id outside the vocabulary was accepted")
	}
	if _, err := g.Stream(context.Background(), "text", opts, func(int, []byte) error { return nil }); err == nil {
		t.Error("a text prompt without a tokenizer was accepted")
	}
}
