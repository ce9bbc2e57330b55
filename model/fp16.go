package model

import "github.com/strand-ml/strand/numeric"

// fp16 products, emulated. This CPU class has no fp16 matrix instructions
// (AVX512-FP16 and AMX-FP16 are absent here), so SetFP16 rounds each
// operand of the same products as bf16 mode to IEEE half precision and
// multiplies the rounded values in float32. The numerics are fp16's --
// 11-bit mantissa, values above 65504 become Inf, below 6e-8 become zero
// -- which is what dynamic loss scaling (optim.LossScaler) exists for; the
// speed is float32's plus the rounding. It is for checking that a model
// trains in fp16, not for throughput.
type fp16State = lowPrecision[float32]

// SetFP16 turns fp16-rounded products on or off (at most one of bf16 and
// fp16 is on: turning one on turns the other off).
func (m *GPT) SetFP16(on bool) {
	if !on {
		m.f16 = fp16State{}
		return
	}
	m.SetBF16(false)
	m.f16.enable(m, roundF16)
}

// FP16 reports whether fp16-rounded products are on.
func (m *GPT) FP16() bool { return m.f16.on }

// SyncFP16 rounds the parameters into the fp16 copy, if fp16 is on.
// SyncPrecision does it for whichever precision is on.
func (m *GPT) SyncFP16() { m.f16.sync(m.Params.Data) }

// roundF16 stores each value of src rounded to IEEE half precision.
func roundF16(dst, src []float32) {
	for i, v := range src {
		dst[i] = numeric.F16ToFloat32(numeric.F16FromFloat32(v))
	}
}
