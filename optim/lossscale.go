package optim

import (
	"fmt"
	"math"
)

// LossScaler is dynamic loss scaling for fp16 training (as
// torch.cuda.amp.GradScaler): the backward starts from loss*Scale so small
// gradients do not flush to zero in fp16; the optimizer sees gradients
// divided by Scale. A step whose gradients hold Inf or NaN is skipped and
// the scale shrinks by Backoff; after Interval good steps in a row it grows
// by Growth.
type LossScaler struct {
	Scale    float64
	Growth   float64 // > 1
	Backoff  float64 // in (0, 1)
	Interval int     // good steps before growing
	MinScale float64 // the scale never shrinks below this (0: no bound)
	good     int     // good steps since the last change
}

// NewLossScaler returns GradScaler's defaults: scale 2^16, growth 2,
// backoff 0.5, interval 2000.
func NewLossScaler() *LossScaler {
	return &LossScaler{Scale: 65536, Growth: 2, Backoff: 0.5, Interval: 2000}
}

// Validate reports an unusable setting.
func (s *LossScaler) Validate() error {
	switch {
	case !(s.Scale > 0) || math.IsInf(s.Scale, 0):
		return fmt.Errorf("loss scale %g must be positive and finite", s.Scale)
	case !(s.Growth > 1):
		return fmt.Errorf("loss scale growth %g must exceed 1", s.Growth)
	case !(s.Backoff > 0 && s.Backoff < 1):
		return fmt.Errorf("loss scale backoff %g outside (0, 1)", s.Backoff)
	case s.Interval < 1:
		return fmt.Errorf("loss scale interval %d must be positive", s.Interval)
	}
	return nil
}

// Update records whether this step's gradients were finite and returns
// whether the optimizer step must be skipped. Call it once per step, after
// the gradients are complete (and reduced), before the optimizer.
func (s *LossScaler) Update(finite bool) (skip bool) {
	if !finite {
		s.Scale = max(s.Scale*s.Backoff, s.MinScale)
		s.good = 0
		return true
	}
	s.good++
	if s.good >= s.Interval {
		s.Scale *= s.Growth
		s.good = 0
	}
	return false
}

// Finite reports whether every value of g is finite.
func Finite(g []float32) bool {
	for _, v := range g {
		if v-v != 0 { // Inf - Inf and NaN - NaN are NaN
			return false
		}
	}
	return true
}
