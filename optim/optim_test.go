package optim

import (
	"math"
	"testing"
)

// TestAdamWMatchesHandComputedStep checks one update against the formula
// evaluated in float64 by hand.
func TestAdamWMatchesHandComputedStep(t *testing.T) {
	cfg := AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}
	o, err := NewAdamW(cfg, 3, []Segment{{0, 2, true}, {2, 1, false}})
	if err != nil {
		t.Fatal(err)
	}
	p := []float32{1, -2, 0.5}
	g := []float32{0.1, -0.3, 2}
	lr := 0.01
	o.Update(p, g, lr)
	want := make([]float64, 3)
	for i, p0 := range []float64{1, -2, 0.5} {
		gi := []float64{0.1, -0.3, 2}[i]
		decay := 1.0
		if i < 2 {
			decay = 1 - lr*0.1
		}
		m := 0.1 * gi
		v := 0.05 * gi * gi
		mhat := m / 0.1
		vhat := v / 0.05
		want[i] = p0*decay - lr*mhat/(math.Sqrt(vhat)+1e-8)
	}
	for i := range p {
		if math.Abs(float64(p[i])-want[i]) > 1e-6 {
			t.Errorf("p[%d] = %.8f, want %.8f", i, p[i], want[i])
		}
	}
	if o.Step != 1 {
		t.Fatalf("step %d", o.Step)
	}
}

func TestAdamWRejectsBadSegments(t *testing.T) {
	if _, err := NewAdamW(DefaultAdamW(), 4, []Segment{{0, 3, true}, {2, 2, true}}); err == nil {
		t.Fatal("overlapping segments accepted")
	}
	if _, err := NewAdamW(DefaultAdamW(), 4, []Segment{{3, 2, true}}); err == nil {
		t.Fatal("segment past the end accepted")
	}
	if _, err := NewAdamW(AdamWConfig{Beta1: 1, Beta2: 0.9, Eps: 1e-8}, 1, []Segment{{0, 1, true}}); err == nil {
		t.Fatal("beta1 = 1 accepted")
	}
}

func TestClipScale(t *testing.T) {
	if s := ClipScale(0.5, 1); s != 1 {
		t.Fatalf("norm below max scaled by %g", s)
	}
	if s := ClipScale(4, 1); math.Abs(float64(s)-1/(4+1e-6)) > 1e-7 {
		t.Fatalf("scale %g", s)
	}
	if s := ClipScale(100, 0); s != 1 {
		t.Fatal("maxNorm 0 should disable clipping")
	}
	if n := GradNorm([]float32{3, 4}); n != 5 {
		t.Fatalf("norm %g", n)
	}
}

func TestScheduleShape(t *testing.T) {
	s := Schedule{Peak: 1, Warmup: 10, Total: 110, MinFrac: 0.1}
	if got := s.At(0); math.Abs(got-0.1) > 1e-12 {
		t.Fatalf("step 0: %g", got)
	}
	if got := s.At(9); got != 1 {
		t.Fatalf("end of warm-up: %g", got)
	}
	if got := s.At(60); math.Abs(got-0.55) > 1e-12 {
		t.Fatalf("midpoint: %g, want 0.55", got)
	}
	if got := s.At(110); math.Abs(got-0.1) > 1e-12 {
		t.Fatalf("end: %g", got)
	}
	prev := s.At(10)
	for i := 11; i < 110; i++ {
		if s.At(i) > prev {
			t.Fatalf("lr rose at step %d", i)
		}
		prev = s.At(i)
	}
	if err := (Schedule{Peak: 1, MinFrac: 2}).Validate(); err == nil {
		t.Fatal("MinFrac 2 accepted")
	}
}

// TestAdamWOnAShareMatchesTheWhole: updating two disjoint shares with two
// optimizers gives the same parameters as one optimizer over everything
// (what ZeRO-1 relies on).
func TestAdamWOnAShareMatchesTheWhole(t *testing.T) {
	segs := []Segment{{0, 3, true}, {3, 5, false}}
	pAll := []float32{1, 2, 3, 4, 5, 6, 7, 8}
	pShare := append([]float32(nil), pAll...)
	g := []float32{0.1, -0.2, 0.3, -0.4, 0.5, -0.6, 0.7, -0.8}
	whole, _ := NewAdamW(DefaultAdamW(), 8, segs)
	a, _ := NewAdamW(DefaultAdamW(), 8, Restrict(segs, [][2]int{{0, 4}}))
	b, _ := NewAdamW(DefaultAdamW(), 8, Restrict(segs, [][2]int{{4, 8}}))
	for step := 0; step < 3; step++ {
		whole.Update(pAll, g, 0.01)
		a.Update(pShare, g, 0.01)
		b.Update(pShare, g, 0.01)
	}
	for i := range pAll {
		if pAll[i] != pShare[i] {
			t.Fatalf("element %d: whole %g, shares %g", i, pAll[i], pShare[i])
		}
	}
	if len(a.M) != 4 || len(b.M) != 4 || a.Covers(8) || !whole.Covers(8) {
		t.Fatal("share state sizes wrong")
	}
}
