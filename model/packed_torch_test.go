package model

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"testing"

	"github.com/strand-ml/strand/gemm"
)

// TestPackedMaskedSFTMatchesPyTorch: a packed batch (several examples per
// row, prompt targets ignored, a padding segment) through a whole GPT
// gives PyTorch's loss and gradients (testdata/finetune_packed.json from
// gen_finetune_fixtures.py, where attention is masked to each segment and
// positions restart per segment).
func TestPackedMaskedSFTMatchesPyTorch(t *testing.T) {
	raw, err := os.ReadFile("testdata/finetune_packed.json")
	if err != nil {
		t.Fatal(err)
	}
	var fx struct {
		Config                    struct{ Vocab, Layers, Heads, Embd, Positions, T int }
		Tokens, Targets, Segments []int32
		Loss                      float64
		Params, Grads             map[string][]float64
	}
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	c := fx.Config
	cfg := Config{VocabSize: c.Vocab, NLayer: c.Layers, NHead: c.Heads, NEmbd: c.Embd, NPositions: c.Positions,
		LayerNormEps: 1e-5, Activation: GELUTanh, Norm: LayerNorm, Position: PosLearned}
	B, T := len(fx.Tokens)/c.T, c.T
	m, err := New(cfg, B, T, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Params.List {
		v, ok := fx.Params[p.Name]
		if !ok || len(v) != len(p.Data) {
			t.Fatalf("fixture parameter %s: %d values, want %d", p.Name, len(v), len(p.Data))
		}
		copy(p.Data, f32s(v))
	}
	a := m.NewActs(B, T)
	a.SetSegments(fx.Segments)
	ctx := context.Background()
	sum, count, err := m.ForwardActs(ctx, a, fx.Tokens, nil, fx.Targets, B, T)
	if err != nil {
		t.Fatal(err)
	}
	if got := sum / float64(count); math.Abs(got-fx.Loss) > 1e-5*fx.Loss {
		t.Fatalf("packed masked loss %.7g, PyTorch %.7g", got, fx.Loss)
	}
	if err := m.BackwardActs(ctx, a, nil, float32(1/float64(count))); err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Params.List {
		closeRel(t, "packed grad "+p.Name, p.Grad, f32s(fx.Grads[p.Name]), 1e-4)
	}
}
