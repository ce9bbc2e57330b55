package model

import (
	"context"
	"strings"
	"testing"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/internal/alloctest"
)

// TestKVCacheMatchesFullForward: the logits after each appended token equal
// the logits of a full forward over the whole prefix, for every position
// encoding, whether the prompt is appended at once or token by token.
func TestKVCacheMatchesFullForward(t *testing.T) {
	ctx := context.Background()
	for _, pos := range []string{PosLearned, PosRoPE, PosALiBi} {
		t.Run(pos, func(t *testing.T) {
			cfg := Config{VocabSize: 40, NLayer: 2, NHead: 4, NEmbd: 32, NPositions: 16, LayerNormEps: 1e-5,
				Activation: GELUTanh, Norm: LayerNorm, Position: pos, InitStd: 0.2}
			T := 16
			if pos == PosRoPE {
				cfg.RopeScaling = &RopeScaling{Type: ScaleYaRN, Factor: 2}
				T = 24 // past n_positions
			}
			m, err := New(cfg, 1, T, gemm.New(2))
			if err != nil {
				t.Fatal(err)
			}
			m.Init(3)
			tok := make([]int32, T)
			for i := range tok {
				tok[i] = int32((i*13 + 5) % cfg.VocabSize)
			}
			if _, _, err := m.Forward(tok, nil, 1, T); err != nil {
				t.Fatal(err)
			}
			full := m.Logits()
			V := cfg.VocabSize
			c, err := m.NewKVCache(T)
			if err != nil {
				t.Fatal(err)
			}
			const prompt = 5
			got, err := c.Forward(ctx, tok[:prompt])
			if err != nil {
				t.Fatal(err)
			}
			closeRel(t, "prefill logits", got, full[(prompt-1)*V:prompt*V], 1e-5)
			for p := prompt; p < T; p++ {
				got, err := c.Forward(ctx, tok[p:p+1])
				if err != nil {
					t.Fatal(err)
				}
				closeRel(t, "cached logits", got, full[p*V:(p+1)*V], 1e-5)
			}
			if c.Len() != T {
				t.Fatalf("cache holds %d positions, want %d", c.Len(), T)
			}
			if _, err := c.Forward(ctx, tok[:1]); err == nil || !strings.Contains(err.Error(), "exceed") {
				t.Fatalf("append past capacity: %v", err)
			}
			c.Reset()
			if _, err := c.Forward(ctx, []int32{int32(V)}); err == nil || !strings.Contains(err.Error(), "vocabulary") {
				t.Fatalf("token outside the vocabulary: %v", err)
			}
			if _, err := c.Forward(ctx, nil); err == nil {
				t.Fatal("empty append accepted")
			}
		})
	}
}

func TestKVCacheLearnedPositionLimit(t *testing.T) {
	cfg, _ := Preset("tiny")
	m, err := New(cfg, 1, 8, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.NewKVCache(cfg.NPositions + 1); err == nil || !strings.Contains(err.Error(), "learned") {
		t.Fatalf("learned model with a cache past n_positions: %v", err)
	}
	if _, err := m.NewKVCache(0); err == nil {
		t.Fatal("capacity 0 accepted")
	}
}

// TestKVCacheTokenAllocatesNothing: once the cache's score buffers have
// grown, a decoding step (one token through every layer, heads on the
// pool) allocates nothing.
func TestKVCacheTokenAllocatesNothing(t *testing.T) {
	cfg := Config{VocabSize: 40, NLayer: 2, NHead: 4, NEmbd: 32, NPositions: 64, LayerNormEps: 1e-5,
		Activation: GELUTanh, Norm: LayerNorm, Position: PosLearned, InitStd: 0.2}
	m, err := New(cfg, 1, 64, gemm.New(2))
	if err != nil {
		t.Fatal(err)
	}
	m.Init(3)
	c, err := m.NewKVCache(64)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tok := []int32{7}
	// the score buffers grow to the longest row seen: fill, reset, refill
	for range 2 {
		for c.Len() < 40 {
			if _, err := c.Forward(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
		c.Reset()
	}
	// starting over at 40 rows keeps every step within the grown buffers
	allocs := alloctest.PerCall(1, 6, 8, func() {
		if c.Len() >= 40 {
			c.Reset()
		}
		if _, err := c.Forward(ctx, tok); err != nil {
			t.Fatal(err)
		}
	})
	if allocs >= alloctest.Tolerance {
		t.Fatalf("a decoding step allocated %.2f times", allocs)
	}
}
