package model

// This file runs the two products of a linear layer's backward (the input
// gradient and the weight gradient) at the same time, one per goroutine,
// each single-threaded, when the model has exactly two compute threads.
// Both products have the same multiply-add count (N*C*OC), so the two
// goroutines finish together, and neither product pays for splitting: no
// shared-operand prepack phase, no strips, one wake-up per pair instead of
// two per product. A GEMM's bits do not depend on how it is split
// (gemm's determinism test), so the results are those of the serial path.

// mmArgs is one mm call: C = alpha*op(A)*op(B) + beta*C.
type mmArgs struct {
	transA, transB bool
	M, N, K        int
	alpha          float32
	a              []float32
	lda            int
	b              []float32
	ldb            int
	beta           float32
	c              []float32
	ldc            int
}

// pairTask is two independent products, item i computing p[i] on the
// model's single-threaded engine. It lives in the GPT and is reused, so a
// pair allocates nothing.
type pairTask struct {
	m *GPT
	p [2]mmArgs
}

func (t *pairTask) run(_, i int) {
	g := &t.p[i]
	t.m.attn.gemm.Sgemm(g.transA, g.transB, g.M, g.N, g.K, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc)
}

// minPairWork is the least multiply-add count of each product worth
// running the pair on two goroutines rather than splitting each product:
// below it a split product is short and the wake-up cost dominates either
// way. gpt2s's smallest backward product is 1024x384x384 (1.5e8).
const minPairWork = 1 << 22

// mmPair computes x and y, which must write disjoint outputs and read
// neither output. With two float32 compute threads and both products large
// enough it runs them concurrently (see above), else one after the other
// through mm.
func (m *GPT) mmPair(x, y mmArgs) {
	big := x.M*x.N*x.K >= minPairWork && y.M*y.N*y.K >= minPairWork
	if m.threads() != 2 || m.f16.on || m.b16.on || m.attn.gemm == nil || !(big || m.splitMin > 0) {
		for _, g := range [2]*mmArgs{&x, &y} {
			m.mm(g.transA, g.transB, g.M, g.N, g.K, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc)
		}
		return
	}
	t := &m.pair
	t.m, t.p = m, [2]mmArgs{x, y}
	m.pool.p.run(t, 2, 2)
	*t = pairTask{} // drop references to the operands
}
