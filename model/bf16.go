package model

import "github.com/strand-ml/strand/vec"

// Mixed precision (bf16). With SetBF16(true) the model's large products --
// the four linear layers of every block and the tied head, forward and
// backward -- take bfloat16 operands and accumulate in float32
// (gemm.Engine.GemmBF16, AVX512-BF16's VDPBF16PS where the CPU has it):
//
//   - weights: a bf16 copy of Params.Data, refreshed by SyncBF16 after each
//     optimizer step; the float32 parameters stay the master copy that
//     AdamW updates;
//   - activations and output gradients: rounded into a scratch buffer just
//     before each product (never stored in bf16, so saved activations,
//     LayerNorm, softmax, GELU and the loss stay float32);
//   - results and parameter gradients: float32.
//
// Attention's per-head products stay float32: they are small, and the
// online softmax's rescaling wants the precision.
type bf16State = lowPrecision[uint16]

// SetBF16 turns bf16 products on or off. Turning them on allocates the
// bf16 weight copy and scratch, and syncs the weights.
func (m *GPT) SetBF16(on bool) {
	if !on {
		m.b16 = bf16State{}
		return
	}
	m.SetFP16(false)
	m.b16.enable(m, vec.ToBF16)
}

// BF16 reports whether bf16 products are on.
func (m *GPT) BF16() bool { return m.b16.on }

// SyncBF16 rounds the float32 parameters into the bf16 copy. Call it after
// anything changes Params.Data (the trainer does, once per step).
func (m *GPT) SyncBF16() { m.b16.sync(m.Params.Data) }

// bf16Bytes is the memory of the bf16 or fp16 copy and scratch.
func (m *GPT) bf16Bytes() int64 { return m.b16.bytes() + m.f16.bytes() }

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
