package gemmbench

import (
	"fmt"
	"math/rand/v2"

	"github.com/strand-ml/strand/model"
)

// Shape is one GEMM: C (m x n) = op(A) (m x k) * op(B) (k x n).
type Shape struct {
	Name    string // preset/what, e.g. "gpt2s/fc fwd"
	TA, TB  bool
	M, N, K int
}

// Flops is the multiply-add count times two.
func (s Shape) Flops() float64 { return 2 * float64(s.M) * float64(s.N) * float64(s.K) }

func (s Shape) String() string {
	op := map[[2]bool]string{{false, false}: "A*B", {true, false}: "At*B", {false, true}: "A*Bt", {true, true}: "At*Bt"}
	return fmt.Sprintf("%s %dx%dx%d %s", s.Name, s.M, s.N, s.K, op[[2]bool{s.TA, s.TB}])
}

// Square is 1024^3 in the three transpose cases training uses.
func Square() []Shape {
	return []Shape{
		{Name: "square", M: 1024, N: 1024, K: 1024},
		{Name: "square", TA: true, M: 1024, N: 1024, K: 1024},
		{Name: "square", TB: true, M: 1024, N: 1024, K: 1024},
	}
}

// PresetShapes lists the GEMMs of one training step of a preset, as
// model/layers.go and model/attention.go issue them (weights stored
// C x OC; N = batch*seq tokens): the MLP up-projection forward and its two
// backward products, the MLP down-projection and QKV forward, the tied LM
// head (logits = x * wte^T) with its two backward products, and one head's attention scores and weighting.
// Each shape appears once however many times a step runs it.
func PresetShapes(preset string) ([]Shape, error) {
	cfg, err := model.Preset(preset)
	if err != nil {
		return nil, err
	}
	T := cfg.NPositions
	N := model.PresetBatch(preset) * T
	C, H, V := cfg.NEmbd, cfg.Hidden(), cfg.VocabSize
	HS := C / cfg.NHead
	p := preset + "/"
	return []Shape{
		{Name: p + "qkv fwd", M: N, N: 3 * C, K: C},
		{Name: p + "fc fwd", M: N, N: H, K: C},
		{Name: p + "fc dx", TB: true, M: N, N: C, K: H},
		{Name: p + "fc dw", TA: true, M: C, N: H, K: N},
		{Name: p + "proj fwd", M: N, N: C, K: H},
		{Name: p + "head fwd", TB: true, M: N, N: V, K: C},
		{Name: p + "head dx", M: N, N: C, K: V},
		{Name: p + "head dw", TA: true, M: V, N: C, K: N},
		{Name: p + "attn qk", TB: true, M: T, N: T, K: HS},
		{Name: p + "attn pv", M: T, N: HS, K: T},
	}, nil
}

// All is Square followed by the shapes of tiny, small and gpt2s.
func All() ([]Shape, error) {
	all := Square()
	for _, p := range []string{"tiny", "small", "gpt2s"} {
		s, err := PresetShapes(p)
		if err != nil {
			return nil, err
		}
		all = append(all, s...)
	}
	return all, nil
}

// Operands allocates random A, B and a C for s, stored the way Sgemm
// expects for its transposes (tight leading dimensions).
func Operands(s Shape, seed uint64) (a, b, c []float32, lda, ldb int) {
	r := rand.New(rand.NewPCG(seed, seed+1))
	a, b, c = make([]float32, s.M*s.K), make([]float32, s.K*s.N), make([]float32, s.M*s.N)
	for i := range a {
		a[i] = float32(r.NormFloat64())
	}
	for i := range b {
		b[i] = float32(r.NormFloat64())
	}
	lda, ldb = s.K, s.N
	if s.TA {
		lda = s.M
	}
	if s.TB {
		ldb = s.K
	}
	return a, b, c, lda, ldb
}
