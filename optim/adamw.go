package optim

import (
	"fmt"
	"math"

	"github.com/strand-ml/strand/vec"
)

// AdamWConfig holds the hyperparameters, named as in torch.optim.AdamW.
type AdamWConfig struct {
	Beta1, Beta2 float64
	Eps          float64
	WeightDecay  float64
}

// DefaultAdamW is GPT-2/llm.c's setting.
func DefaultAdamW() AdamWConfig {
	return AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}
}

// Validate reports an out-of-range hyperparameter.
func (c AdamWConfig) Validate() error {
	switch {
	case c.Beta1 < 0 || c.Beta1 >= 1:
		return fmt.Errorf("adamw: beta1 %g outside [0, 1)", c.Beta1)
	case c.Beta2 < 0 || c.Beta2 >= 1:
		return fmt.Errorf("adamw: beta2 %g outside [0, 1)", c.Beta2)
	case c.Eps <= 0:
		return fmt.Errorf("adamw: eps %g must be positive", c.Eps)
	case c.WeightDecay < 0:
		return fmt.Errorf("adamw: weight decay %g must not be negative", c.WeightDecay)
	}
	return nil
}

// Segment is a contiguous run of parameters sharing one decay setting.
type Segment struct {
	Offset, Size int
	Decay        bool
}

// Restrict keeps the parts of segs that fall inside the given ranges
// [lo, hi) (sorted, disjoint): the parameters one ZeRO-1 rank updates.
func Restrict(segs []Segment, ranges [][2]int) []Segment {
	var out []Segment
	for _, s := range segs {
		for _, r := range ranges {
			lo, hi := max(s.Offset, r[0]), min(s.Offset+s.Size, r[1])
			if hi > lo {
				out = append(out, Segment{Offset: lo, Size: hi - lo, Decay: s.Decay})
			}
		}
	}
	return out
}

// AdamW keeps first and second moments for the parameters it updates:
// the segments it was made with, packed one after another in M and V. When
// the segments cover the whole buffer, M and V are laid out exactly like
// the parameters.
type AdamW struct {
	Config AdamWConfig
	M, V   []float32 // moments of the updated parameters, packed in segment order
	Step   int       // number of updates applied so far
	// Threads is how many goroutines Update uses (0 or 1: the caller's
	// only); a trainer sets it to its compute thread count. The update is
	// memory-bound, and two cores move about twice the bytes of one.
	Threads int
	segs    []Segment
	upd     *updateRun // reused by every Update (allocation-free steps)
	workers *workerSet // started on the first Update with Threads > 1
}

// NewAdamW prepares state for the segments of an n-element parameter
// buffer. Segments must be in increasing order without overlap; they need
// not cover the buffer (a ZeRO-1 rank updates only its share).
func NewAdamW(cfg AdamWConfig, n int, segs []Segment) (*AdamW, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	end, total := 0, 0
	for i, s := range segs {
		if s.Offset < end || s.Size < 0 || s.Offset+s.Size > n {
			return nil, fmt.Errorf("adamw: segment %d at offset %d size %d overlaps or leaves [%d, %d)", i, s.Offset, s.Size, end, n)
		}
		end = s.Offset + s.Size
		total += s.Size
	}
	return &AdamW{Config: cfg, M: make([]float32, total), V: make([]float32, total), segs: segs}, nil
}

// run returns the reusable update state, starting workers if Threads asks
// for them.
func (o *AdamW) run() *updateRun {
	if o.upd == nil {
		o.upd = new(updateRun)
	}
	if o.Threads > 1 && o.workers == nil {
		o.workers = newWorkerSet(o)
	}
	return o.upd
}

// Covers reports whether the optimizer updates every parameter of an
// n-element buffer (so M and V are laid out like the parameters).
func (o *AdamW) Covers(n int) bool { return len(o.M) == n }

// Update applies one step with learning rate lr to params using grads,
// exactly as torch.optim.AdamW computes it:
//
//	p *= 1 - lr*wd                       (decoupled decay, decay segments only)
//	m = b1*m + (1-b1)*g ; v = b2*v + (1-b2)*g^2
//	p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
func (o *AdamW) Update(params, grads []float32, lr float64) {
	o.UpdateScaled(params, grads, lr, 1)
}

// UpdateScaled is Update with every gradient multiplied by gradScale as it
// is read (clipping and loss-scale division fused into the update: the same
// bits as Scale(grads, gradScale) followed by Update, one pass over memory
// fewer). grads itself is left unscaled. With Threads > 1 the parameters
// are split into that many contiguous ranges updated concurrently; every
// element sees the same operations, so the result does not depend on
// Threads.
func (o *AdamW) UpdateScaled(params, grads []float32, lr float64, gradScale float32) {
	o.Step++
	c := o.Config
	bc1 := 1 - math.Pow(c.Beta1, float64(o.Step))
	bc2 := 1 - math.Pow(c.Beta2, float64(o.Step))
	stepSize := float32(lr / bc1)
	invSqrtBc2 := float32(1 / math.Sqrt(bc2))
	r := o.run()
	r.params, r.grads, r.m, r.v, r.segs = params, grads, o.M, o.V, o.segs
	r.st = vec.AdamWStep{Beta1: float32(c.Beta1), OneMinusBeta1: float32(1 - c.Beta1),
		Beta2: float32(c.Beta2), OneMinusBeta2: float32(1 - c.Beta2), Eps: float32(c.Eps),
		StepSize: stepSize, InvSqrtBC2: invSqrtBc2, GradScale: gradScale}
	r.decay = float32(1 - lr*c.WeightDecay)
	r.parts = max(1, min(o.Threads, len(o.M)/minValuesPerPart))
	r.do(o.workers)
	r.params, r.grads, r.m, r.v, r.segs = nil, nil, nil, nil, nil
}

// GradNorm is the L2 norm of grads, accumulated in float64.
func GradNorm(grads []float32) float64 { return math.Sqrt(SumSquares(grads)) }

// SumSquares is sum(g^2) in float64, the per-shard piece of a global norm.
func SumSquares(grads []float32) float64 {
	var s float64
	for _, g := range grads {
		s += float64(g) * float64(g)
	}
	return s
}

// ClipScale returns the factor torch.nn.utils.clip_grad_norm_ applies for a
// total norm: min(1, maxNorm/(norm+1e-6)); maxNorm <= 0 disables clipping.
func ClipScale(norm, maxNorm float64) float32 {
	if maxNorm <= 0 {
		return 1
	}
	c := maxNorm / (norm + 1e-6)
	if c >= 1 {
		return 1
	}
	return float32(c)
}

// Scale multiplies every gradient by s (skipped when s == 1).
func Scale(grads []float32, s float32) {
	if s == 1 {
		return
	}
	for i := range grads {
		grads[i] *= s
	}
}

// Unpack writes the packed moments src (M or V) into dst, a buffer laid out
// like the parameters, at the positions of the optimizer's segments.
func (o *AdamW) Unpack(dst, src []float32) {
	state := 0
	for _, s := range o.segs {
		copy(dst[s.Offset:s.Offset+s.Size], src[state:state+s.Size])
		state += s.Size
	}
}

// Pack is the inverse of Unpack: it gathers the segments' values from src,
// laid out like the parameters, into the packed dst.
func (o *AdamW) Pack(dst, src []float32) {
	state := 0
	for _, s := range o.segs {
		copy(dst[state:state+s.Size], src[s.Offset:s.Offset+s.Size])
		state += s.Size
	}
}
