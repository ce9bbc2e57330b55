package model

import "fmt"

// Precision is the operand precision of the model's large products (the
// linear layers and the head, forward and backward); everything else,
// parameters, activations and gradients included, stays float32.
type Precision string

// The precisions.
const (
	FP32 Precision = "fp32" // float32 products
	BF16 Precision = "bf16" // bfloat16 operands, float32 accumulation (bf16.go)
	FP16 Precision = "fp16" // fp16-rounded operands, float32 products (fp16.go)
)

// ParsePrecision reads "fp32", "bf16" or "fp16" ("" is fp32).
func ParsePrecision(s string) (Precision, error) {
	switch p := Precision(s); p {
	case "", FP32:
		return FP32, nil
	case BF16, FP16:
		return p, nil
	}
	return "", fmt.Errorf("precision %q is not one of fp32, bf16, fp16", s)
}

// SetPrecision sets the products' precision. A low precision allocates
// its rounded weight copy and operand scratch and syncs the copy; fp32
// drops them.
func (m *GPT) SetPrecision(p Precision) error {
	switch p {
	case "", FP32:
		m.b16, m.f16 = bf16State{}, fp16State{}
	case BF16:
		m.SetBF16(true)
	case FP16:
		m.SetFP16(true)
	default:
		return fmt.Errorf("model: precision %q is not one of fp32, bf16, fp16", p)
	}
	return nil
}

// Precision is the products' precision.
func (m *GPT) Precision() Precision {
	switch {
	case m.b16.on:
		return BF16
	case m.f16.on:
		return FP16
	}
	return FP32
}

// SyncPrecision rounds the float32 parameters into the low-precision copy
// the products read (nothing at fp32): call it after anything changes
// Params.Data (an optimizer step, a checkpoint load).
func (m *GPT) SyncPrecision() {
	m.b16.sync(m.Params.Data)
	m.f16.sync(m.Params.Data)
}
