// Package tensortest provides an in-process tensor-parallel group for tests:
// ranks are goroutines that meet at each reduction.
package tensortest

import (
	"context"
	"sync"

	"github.com/strand-ml/strand/parallel/tensor"
)

// Groups returns n connected in-memory groups, one per rank. Reductions
// combine contributions in rank order, so results are deterministic and
// identical on every rank.
func Groups(n int) []tensor.Group {
	s := &shared{n: n, bufs: make([][]float32, n)}
	s.cond = sync.NewCond(&s.mu)
	out := make([]tensor.Group, n)
	for r := range out {
		out[r] = &group{s: s, rank: r}
	}
	return out
}

type shared struct {
	mu      sync.Mutex
	cond    *sync.Cond
	n       int
	bufs    [][]float32
	arrived int
	gen     int
	result  []float32
	readers int
}

type group struct {
	s    *shared
	rank int
}

func (g *group) Size() int { return g.s.n }
func (g *group) Rank() int { return g.rank }

func (g *group) AllReduceSum(ctx context.Context, buf []float32) error {
	return g.reduce(buf, func(a, b float32) float32 { return a + b })
}

func (g *group) AllReduceMax(ctx context.Context, buf []float32) error {
	return g.reduce(buf, func(a, b float32) float32 { return max(a, b) })
}

func (g *group) reduce(buf []float32, op func(a, b float32) float32) error {
	s := g.s
	s.mu.Lock()
	defer s.mu.Unlock()
	// wait for the previous reduction's readers to finish
	for s.readers > 0 {
		s.cond.Wait()
	}
	gen := s.gen
	s.bufs[g.rank] = buf
	s.arrived++
	if s.arrived == s.n {
		res := append([]float32(nil), s.bufs[0]...)
		for r := 1; r < s.n; r++ {
			for i, v := range s.bufs[r] {
				res[i] = op(res[i], v)
			}
		}
		s.result = res
		s.arrived = 0
		s.readers = s.n
		s.gen++
		s.cond.Broadcast()
	}
	for s.gen == gen {
		s.cond.Wait()
	}
	copy(buf, s.result)
	s.readers--
	if s.readers == 0 {
		s.cond.Broadcast()
	}
	return nil
}
