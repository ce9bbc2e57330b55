package generate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// Sampling selects how the next token is chosen from the logits.
type Sampling struct {
	// Temperature divides the logits; 0 means greedy (argmax, lowest id on
	// ties), which ignores TopK and TopP as Hugging Face does without do_sample.
	Temperature float64
	// TopK keeps the K highest logits (and any tied with the K-th); 0 keeps all.
	TopK int
	// TopP keeps the smallest set of highest-probability tokens whose
	// probabilities sum to at least TopP (always at least one); 1 keeps all.
	// It must be in (0, 1]; 0 in Options means 1.
	TopP float64
}

// Validate reports a setting outside its range.
func (s Sampling) Validate() error {
	switch {
	case math.IsNaN(s.Temperature) || s.Temperature < 0 || math.IsInf(s.Temperature, 0):
		return fmt.Errorf("temperature %g must be a finite number >= 0", s.Temperature)
	case s.TopK < 0:
		return fmt.Errorf("top-k %d must not be negative (0 disables it)", s.TopK)
	case !(s.TopP > 0 && s.TopP <= 1):
		return fmt.Errorf("top-p %g must be in (0, 1]", s.TopP)
	}
	return nil
}

// Filter applies Hugging Face's sampling logits processors in their order
// — temperature, top-k, top-p — to logits, returning scores (float64, same
// length) where removed tokens are -Inf:
//
//   - temperature: scores = logits / T;
//   - top-k (TopKLogitsWarper): remove scores below the K-th highest;
//   - top-p (TopPLogitsWarper): sort ascending, take the cumulative softmax,
//     remove the tokens whose cumulative probability is <= 1 - TopP, but
//     never the highest one.
//
// s must be valid with Temperature > 0.
func Filter(scores []float64, logits []float32, s Sampling) []float64 {
	scores = scores[:0]
	for _, l := range logits {
		scores = append(scores, float64(l)/s.Temperature)
	}
	V := len(scores)
	if s.TopK > 0 && s.TopK < V {
		sorted := append([]float64(nil), scores...)
		sort.Sort(sort.Reverse(sort.Float64Slice(sorted)))
		kth := sorted[s.TopK-1]
		for i, v := range scores {
			if v < kth {
				scores[i] = math.Inf(-1)
			}
		}
	}
	if s.TopP < 1 {
		idx := make([]int, V)
		for i := range idx {
			idx[i] = i
		}
		// ascending by score; ties by descending id so the lowest id ends
		// up with the higher rank (kept first), as argmax would pick it
		sort.SliceStable(idx, func(a, b int) bool {
			if scores[idx[a]] != scores[idx[b]] {
				return scores[idx[a]] < scores[idx[b]]
			}
			return idx[a] > idx[b]
		})
		probs := softmax(nil, scores)
		var cum float64
		for r, i := range idx {
			cum += probs[i]
			if r < V-1 && cum <= 1-s.TopP {
				scores[i] = math.Inf(-1)
			}
		}
	}
	return scores
}

// softmax writes the probabilities of scores into dst (-Inf gives 0).
func softmax(dst, scores []float64) []float64 {
	dst = dst[:0]
	mx := math.Inf(-1)
	for _, v := range scores {
		mx = math.Max(mx, v)
	}
	var z float64
	for _, v := range scores {
		e := math.Exp(v - mx)
		dst = append(dst, e)
		z += e
	}
	for i := range dst {
		dst[i] /= z
	}
	return dst
}

// Probabilities is the distribution a Sampler draws from for these logits
// (Filter, then softmax). With Temperature 0 it is one-hot on the argmax.
func Probabilities(logits []float32, s Sampling) []float64 {
	if s.Temperature == 0 {
		p := make([]float64, len(logits))
		p[argmax(logits)] = 1
		return p
	}
	return softmax(nil, Filter(nil, logits, s))
}

func argmax(logits []float32) int {
	best := 0
	for i, v := range logits {
		if v > logits[best] {
			best = i
		}
	}
	return best
}

// Sampler draws token ids. Its random stream is a PCG seeded with the seed,
// so the same seed, settings and logits give the same tokens.
type Sampler struct {
	s      Sampling
	rng    *rand.Rand
	scores []float64
	probs  []float64
}

// NewSampler checks s and seeds the generator.
func NewSampler(s Sampling, seed uint64) (*Sampler, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &Sampler{s: s, rng: rand.New(rand.NewPCG(seed, 0x5eed))}, nil
}

// Next picks the next token id from logits (V).
func (sm *Sampler) Next(logits []float32) int {
	if sm.s.Temperature == 0 {
		return argmax(logits)
	}
	sm.scores = Filter(sm.scores, logits, sm.s)
	sm.probs = softmax(sm.probs, sm.scores)
	u := sm.rng.Float64()
	var cum float64
	last := 0
	for i, p := range sm.probs {
		if p == 0 {
			continue
		}
		cum += p
		last = i
		if u < cum {
			return i
		}
	}
	return last // rounding left u above the total
}
