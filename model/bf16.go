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

// SetBF16 turns bf16 products on or off (SetPrecision(BF16) or (FP32)). Turning them on allocates the
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

// SyncBF16 rounds the float32 parameters into the bf16 copy, if bf16 is
// on. SyncPrecision does it for whichever precision is on.
func (m *GPT) SyncBF16() { m.b16.sync(m.Params.Data) }

// bf16Bytes is the memory of the bf16 or fp16 copy and scratch.
func (m *GPT) bf16Bytes() int64 { return m.b16.bytes() + m.f16.bytes() }
