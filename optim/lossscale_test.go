package optim

import (
	"math"
	"testing"
)

func TestLossScalerSkipsShrinksAndGrows(t *testing.T) {
	s := &LossScaler{Scale: 1024, Growth: 2, Backoff: 0.5, Interval: 3, MinScale: 128}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		finite    bool
		wantSkip  bool
		wantScale float64
	}{
		{true, false, 1024},
		{false, true, 512}, // overflow: skip and halve, good count restarts
		{true, false, 512},
		{true, false, 512},
		{true, false, 1024}, // third good step in a row: grow
		{false, true, 512},
		{false, true, 256},
		{false, true, 128},
		{false, true, 128}, // floor
	}
	for i, st := range steps {
		if skip := s.Update(st.finite); skip != st.wantSkip || s.Scale != st.wantScale {
			t.Fatalf("step %d (finite %v): skip %v scale %g, want %v %g", i+1, st.finite, skip, s.Scale, st.wantSkip, st.wantScale)
		}
	}
}

func TestLossScalerValidate(t *testing.T) {
	bad := []LossScaler{
		{Scale: 0, Growth: 2, Backoff: 0.5, Interval: 1},
		{Scale: math.Inf(1), Growth: 2, Backoff: 0.5, Interval: 1},
		{Scale: 1, Growth: 1, Backoff: 0.5, Interval: 1},
		{Scale: 1, Growth: 2, Backoff: 1, Interval: 1},
		{Scale: 1, Growth: 2, Backoff: 0.5, Interval: 0},
	}
	for i, s := range bad {
		if s.Validate() == nil {
			t.Errorf("case %d: %+v accepted", i, s)
		}
	}
	if err := NewLossScaler().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestFinite(t *testing.T) {
	if !Finite([]float32{0, -1, 3e38, 1e-45}) {
		t.Fatal("finite values reported non-finite")
	}
	for _, v := range []float64{math.Inf(1), math.Inf(-1), math.NaN()} {
		if Finite([]float32{1, float32(v), 2}) {
			t.Fatalf("%v reported finite", v)
		}
	}
}
