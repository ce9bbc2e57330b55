package collective

import (
	"fmt"
	"math/rand"
	"testing"
)

func TestTopology(t *testing.T) {
	for _, tc := range []struct {
		labels []string
		ok     bool
	}{
		{nil, false}, {[]string{"a", "a"}, false}, {[]string{"a", "b"}, false},
		{[]string{"a", "b", "a", "b"}, true}, {[]string{"a", "a", "b"}, false}, {[]string{"x", "x", "y", "y", "z", "z"}, true},
	} {
		if got := newTopology(tc.labels) != nil; got != tc.ok {
			t.Errorf("%v: usable %v, want %v", tc.labels, got, tc.ok)
		}
	}
	tp := newTopology([]string{"b", "a", "b", "a"})
	if fmt.Sprint(tp.local) != "[[0 2] [1 3]]" || fmt.Sprint(tp.slot) != "[0 0 1 1]" {
		t.Errorf("local %v slot %v", tp.local, tp.slot)
	}
}

// The hierarchical plan sums every element on every rank, deadlock-free,
// for nodes x ranks-per-node layouts (ranks of a node interleaved or
// contiguous in group order), counts including 0, 1 and primes, and
// segment sizes that cut chunks into many pieces.
func TestHierAllReducePlan(t *testing.T) {
	layouts := [][]string{
		{"a", "a", "b", "b"},
		{"a", "b", "a", "b"},
		{"a", "a", "a", "b", "b", "b"},
		{"a", "b", "c", "a", "b", "c"},
		{"a", "a", "b", "b", "c", "c", "d", "d"},
	}
	for _, labels := range layouts {
		tp := newTopology(labels)
		n := len(labels)
		for _, count := range planCount {
			for _, seg := range planSegs {
				t.Run(fmt.Sprintf("%v/count%d/seg%d", labels, count, seg), func(t *testing.T) {
					plans := make([]*Plan, n)
					for r := range plans {
						plans[r] = hierAllReducePlan(tp, r, count, seg)
					}
					bufs := newBufs(n, count)
					simulate(t, plans, bufs, rand.New(rand.NewSource(int64(count+seg))))
					for r := range bufs {
						for i := 0; i < count; i++ {
							if bufs[r][0][i] != sumAt(n, i) {
								t.Fatalf("rank %d element %d: %v, want %v", r, i, bufs[r][0][i], sumAt(n, i))
							}
						}
					}
					// Exactly one receive completes each element (Avg divides there).
					finals := make([]int, count)
					for r, p := range plans {
						for _, s := range p.Recvs {
							if s.Final {
								if !s.Reduce {
									t.Fatalf("rank %d: a non-reducing final step", r)
								}
								for i := s.Off; i < s.Off+s.N; i++ {
									finals[i]++
								}
							}
						}
					}
					for i, f := range finals {
						if f != 1 {
							t.Fatalf("element %d completed by %d final steps", i, f)
						}
					}
				})
			}
		}
	}
}

// The hierarchical plan runs over a transport without native posted or
// chunked receives (loopback: the shallowest receive window, staged
// reductions, and the plan's fences); TestReceiveLaneAtEveryDepth runs
// it at the other depths.
func TestHierarchicalOverLoopback(t *testing.T) {
	for _, labels := range [][]string{{"a", "a", "b", "b"}, {"a", "b", "c", "a", "b", "c"}} {
		ts := loopbackWorld(t, len(labels))
		for _, count := range []int{0, 1, 13, 1031, 20011} {
			checkAllOps(t, ts, count, Options{Name: fmt.Sprint(count), SmallBytes: 1, SegmentBytes: 256, Nodes: labels, HierarchicalBytes: 1})
		}
	}
}
