package model

import (
	"unsafe"

	"github.com/strand-ml/strand/numeric"
)

// fp16 products, emulated. This CPU class has no fp16 matrix instructions
// (AVX512-FP16 and AMX-FP16 are absent here), so SetFP16 rounds each
// operand of the same products as bf16 mode to IEEE half precision and
// multiplies the rounded values in float32. The numerics are fp16's --
// 11-bit mantissa, values above 65504 become Inf, below 6e-8 become zero
// -- which is what dynamic loss scaling (optim.LossScaler) exists for; the
// speed is float32's plus the rounding. It is for checking that a model
// trains in fp16, not for throughput.
type fp16State struct {
	on   bool
	w    []float32    // Params.Data rounded to fp16
	slot [2][]float32 // rounded non-parameter operands of one product
}

// SetFP16 turns fp16-rounded products on or off (at most one of bf16 and
// fp16 is on: turning one on turns the other off).
func (m *GPT) SetFP16(on bool) {
	if !on {
		m.f16 = fp16State{}
		return
	}
	m.SetBF16(false)
	m.f16.on = true
	d := m.local
	widest := max(d.C, 3*d.Cl, d.FCl, d.Hl, d.Vl)
	for i := range m.f16.slot {
		m.f16.slot[i] = make([]float32, m.MaxB*m.MaxT*widest)
	}
	m.SyncFP16()
}

// FP16 reports whether fp16-rounded products are on.
func (m *GPT) FP16() bool { return m.f16.on }

// SyncFP16 rounds the parameters into the fp16 copy; call it after anything
// changes Params.Data (the trainer does, once per step).
func (m *GPT) SyncFP16() {
	if !m.f16.on {
		return
	}
	if len(m.f16.w) != len(m.Params.Data) { // Params rebuilt (e.g. adapters added)
		m.f16.w = make([]float32, len(m.Params.Data))
	}
	roundF16(m.f16.w, m.Params.Data)
}

func roundF16(dst, src []float32) {
	for i, v := range src {
		dst[i] = numeric.F16ToFloat32(numeric.F16FromFloat32(v))
	}
}

// operandF16 is operand16's fp16 counterpart.
func (m *GPT) operandF16(x []float32, trans bool, rows, cols, ld, slot int) []float32 {
	if trans {
		rows, cols = cols, rows
	}
	n := (rows-1)*ld + cols
	if p := m.Params.Data; len(p) > 0 && len(x) > 0 {
		base, at := uintptr(unsafe.Pointer(&p[0])), uintptr(unsafe.Pointer(&x[0]))
		if at >= base && at < base+uintptr(len(p))*4 {
			off := int(at-base) / 4
			return m.f16.w[off : off+n]
		}
	}
	s := m.f16.slot[slot]
	if n > len(s) {
		s = make([]float32, n) // see operand16
		m.f16.slot[slot] = s
	}
	roundF16(s[:n], x[:n])
	return s[:n]
}
