package optim

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// TestUpdateScaledMatchesScaleThenUpdate: UpdateScaled on 1, 2 or 3
// goroutines gives, to the bit, what Scale followed by a serial Update
// gives, over several steps, with decaying and non-decaying segments and a
// hole the optimizer does not own; the gradients are left as they were.
func TestUpdateScaledMatchesScaleThenUpdate(t *testing.T) {
	const n = 3*minValuesPerPart + 1000 // enough for 3 parts
	segs := []Segment{{Offset: 0, Size: 777, Decay: false}, {Offset: 777, Size: 2*minValuesPerPart + 5, Decay: true},
		{Offset: 2*minValuesPerPart + 800, Size: minValuesPerPart + 150, Decay: false}} // 18 values not owned
	r := rand.New(rand.NewPCG(1, 2))
	p0, g := make([]float32, n), make([]float32, n)
	for i := range p0 {
		p0[i], g[i] = float32(r.NormFloat64()), float32(r.NormFloat64()*0.1)
	}
	g0 := append([]float32(nil), g...)
	const scale = 0.4
	want := append([]float32(nil), p0...)
	ref, err := NewAdamW(DefaultAdamW(), n, segs)
	if err != nil {
		t.Fatal(err)
	}
	for step := range 3 {
		gs := append([]float32(nil), g...)
		Scale(gs, scale)
		ref.Update(want, gs, 1e-3*float64(step+1))
	}
	for _, threads := range []int{1, 2, 3} {
		o, err := NewAdamW(DefaultAdamW(), n, segs)
		if err != nil {
			t.Fatal(err)
		}
		o.Threads = threads
		p := append([]float32(nil), p0...)
		for step := range 3 {
			o.UpdateScaled(p, g, 1e-3*float64(step+1), scale)
		}
		for i := range p {
			if math.Float32bits(p[i]) != math.Float32bits(want[i]) || o.M[min(i, len(o.M)-1)] != ref.M[min(i, len(o.M)-1)] || o.V[min(i, len(o.V)-1)] != ref.V[min(i, len(o.V)-1)] {
				t.Fatalf("%d threads: element %d: p %v, want %v", threads, i, p[i], want[i])
			}
		}
		for i := range g {
			if g[i] != g0[i] {
				t.Fatalf("%d threads: gradient %d changed", threads, i)
			}
		}
		if p[2*minValuesPerPart+790] != p0[2*minValuesPerPart+790] {
			t.Fatalf("%d threads: a parameter outside the segments changed", threads)
		}
	}
}

// TestUpdateWorkersStop: an AdamW's worker goroutines exit once it is
// unreachable.
func TestUpdateWorkersStop(t *testing.T) {
	for range 5 { // let earlier tests' optimizers' workers exit
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	before := runtime.NumGoroutine()
	func() {
		o, err := NewAdamW(DefaultAdamW(), 4*minValuesPerPart, []Segment{{Size: 4 * minValuesPerPart, Decay: true}})
		if err != nil {
			t.Fatal(err)
		}
		o.Threads = 4
		p, g := make([]float32, 4*minValuesPerPart), make([]float32, 4*minValuesPerPart)
		o.Update(p, g, 1e-3)
		if runtime.NumGoroutine() < before+3 {
			t.Fatalf("goroutines %d, want at least %d while the optimizer lives", runtime.NumGoroutine(), before+3)
		}
		runtime.KeepAlive(o) // else it may be collected (and its workers stopped) already
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines %d after the optimizer became unreachable, had %d", runtime.NumGoroutine(), before)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
