package zero

import (
	"slices"
	"testing"
)

// The core's decisions, step by step, on three units of a forward pass.
func TestCorePrefetchesAlongThePass(t *testing.T) {
	c := newCore([]int{10, 20, 30}, []int{10, 20, 30}, []int{0, 1, 2}, []int{2, 1, 0}, true, false)
	steps := []struct {
		need      bool
		u         int
		wantStart []int
		release   bool
		live      int
	}{
		{true, 0, []int{0, 1}, false, 30}, // gather 0, prefetch 1
		{false, 0, nil, true, 20},         // hand 0 back
		{true, 1, []int{2}, false, 50},    // 1 was prefetched; prefetch 2
		{false, 1, nil, true, 30},
		{true, 2, nil, false, 30}, // end of the pass: nothing to prefetch
		{false, 2, nil, true, 0},
	}
	for i, s := range steps {
		if s.need {
			st := c.need(s.u, false)
			if !slices.Equal(st.start, s.wantStart) {
				t.Fatalf("step %d: need(%d) starts %v, want %v", i, s.u, st.start, s.wantStart)
			}
		} else if st := c.done(s.u, false); st.release != s.release {
			t.Fatalf("step %d: done(%d) release %v, want %v", i, s.u, st.release, s.release)
		}
		if c.live != s.live {
			t.Fatalf("step %d: %d elements gathered, want %d", i, c.live, s.live)
		}
	}
	if c.peak != 50 || c.hits != 2 {
		t.Fatalf("peak %d, prefetch hits %d; want 50, 2", c.peak, c.hits)
	}
}

func TestCorePeaks(t *testing.T) {
	// units in layout order: head 0, h.1 1, h.0 2, wte[0] 3, wte[1] 4 (a
	// tied single-stage model without wpe, its embedding in two chunks)
	size := []int{5, 100, 100, 150, 150}
	fwd := [][]int{{3}, {4}, {2}, {1}, {0, 3}, {4}}
	bwd := [][]int{{0, 3}, {4}, {1}, {2}}
	for _, c := range []struct {
		name          string
		gather, keep  bool
		params, grads int
	}{
		// forward: at the head, ln_f + wte[0] + wte[1] prefetched (305);
		// backward: wte[1] + h.1 (prefetched) gradients with wte[0]'s
		// still reducing... at most h.1 + wte[1] (one reduce-scatter in
		// flight) = 250
		{"zero3", true, false, 305, 250},
		{"zero3 keep", true, true, 505, 250},
		{"zero2", false, false, 0, 250},
	} {
		p, g := Peaks(size, size, fwd, bwd, c.gather, c.keep)
		if p != c.params || g != c.grads {
			t.Errorf("%s: peaks %d parameters, %d gradients; want %d, %d", c.name, p, g, c.params, c.grads)
		}
	}
}

// A pass that starts anew (an evaluation's forward after a step's, or one
// cut short) finds its place in the order again.
func TestCoreRestartsAPass(t *testing.T) {
	c := newCore([]int{1, 1, 1}, []int{1, 1, 1}, []int{0, 1, 2}, []int{2, 1, 0}, true, false)
	c.need(0, false)
	c.done(0, false)
	// a new forward from the start: 0 again, then 1 is prefetched
	if st := c.need(0, false); !slices.Equal(st.start, []int{0}) {
		t.Fatalf("restarted pass starts %v, want [0] (1 is still prefetched)", st.start)
	}
	c.done(0, false)
	if st := c.need(1, false); !slices.Equal(st.start, []int{2}) || c.hits != 1 {
		t.Fatalf("need(1) starts %v with %d hits, want [2] with 1", st.start, c.hits)
	}
}
