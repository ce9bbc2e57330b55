package optim

import (
	"fmt"
	"math"
)

// Schedule is linear warm-up to Peak over Warmup steps, then cosine decay to
// Peak*MinFrac at step Total (constant after it), as in llm.c and nanoGPT.
type Schedule struct {
	Peak    float64
	Warmup  int
	Total   int
	MinFrac float64
}

// Validate reports a nonsensical schedule.
func (s Schedule) Validate() error {
	switch {
	case s.Peak < 0 || math.IsNaN(s.Peak) || math.IsInf(s.Peak, 0):
		return fmt.Errorf("learning rate %g must be a finite non-negative number", s.Peak)
	case s.Warmup < 0:
		return fmt.Errorf("warm-up steps %d must not be negative", s.Warmup)
	case s.MinFrac < 0 || s.MinFrac > 1:
		return fmt.Errorf("final learning-rate fraction %g outside [0, 1]", s.MinFrac)
	}
	return nil
}

// At returns the learning rate for step (0-based).
func (s Schedule) At(step int) float64 {
	if step < s.Warmup {
		return s.Peak * float64(step+1) / float64(s.Warmup)
	}
	minLR := s.Peak * s.MinFrac
	if s.Total <= s.Warmup || step >= s.Total {
		if s.Total <= s.Warmup {
			return s.Peak
		}
		return minLR
	}
	ratio := float64(step-s.Warmup) / float64(s.Total-s.Warmup)
	coeff := 0.5 * (1 + math.Cos(math.Pi*ratio))
	return minLR + coeff*(s.Peak-minLR)
}
