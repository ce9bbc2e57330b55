package model

// The model's matrix products go through here: mm picks float32, bf16 or
// fp16-rounded operands by the model's precision (precision.go), and the
// linear layers' forward and backward are built on it.

// mm is C = alpha*op(A)*op(B) + beta*C on the model's engine, with bf16
// operands when bf16 products are on.
func (m *GPT) mm(transA, transB bool, M, N, K int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m.f16.on {
		p := m.Params.Data
		a, b = m.f16.operand(p, a, transA, M, K, lda, 0), m.f16.operand(p, b, transB, K, N, ldb, 1)
	}
	if !m.b16.on {
		m.gemm.Sgemm(transA, transB, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	a16 := m.b16.operand(m.Params.Data, a, transA, M, K, lda, 0)
	b16 := m.b16.operand(m.Params.Data, b, transB, K, N, ldb, 1)
	m.gemm.GemmBF16(transA, transB, M, N, K, alpha, a16, lda, b16, ldb, beta, c, ldc)
}

// linearForward is LinearForward through mm, the bias added on the
// compute goroutines.
func (m *GPT) linearForward(out, inp, w, b []float32, N, C, OC int) {
	m.mm(false, false, N, OC, C, 1, inp, C, w, OC, 0, out, OC)
	if b != nil {
		m.addBias(out, b, N, OC)
	}
}

// linearBackward is LinearBackward through mm, the bias gradient summed on
// the compute goroutines.
func (m *GPT) linearBackward(dinp, dw, db, dout, inp, w []float32, N, C, OC int, accumulate bool) {
	var beta float32
	if accumulate {
		beta = 1
	}
	if dw != nil && m.deferTo != nil { // a split backward: the weight and bias gradients wait
		m.deferWeight(dw, db, dout, inp, N, C, OC)
		dw, db = nil, nil
	}
	switch {
	case dinp != nil && dw != nil: // the two products at once (pair.go)
		m.mmPair(mmArgs{false, true, N, C, OC, 1, dout, OC, w, OC, beta, dinp, C},
			mmArgs{true, false, C, OC, N, 1, inp, C, dout, OC, m.gradBeta(dw), dw, OC})
	case dinp != nil:
		m.mm(false, true, N, C, OC, 1, dout, OC, w, OC, beta, dinp, C)
	case dw != nil: // (dw nil: a frozen weight, LoRA)
		m.mm(true, false, C, OC, N, 1, inp, C, dout, OC, m.gradBeta(dw), dw, OC)
	}
	if db != nil {
		m.biasGrad(db, dout, N, OC)
	}
}
