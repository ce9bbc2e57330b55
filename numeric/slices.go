package numeric

import (
	"fmt"
	"math"
)

// EncodeBF16 rounds src into dst (same length).
func EncodeBF16(dst []uint16, src []float32) error {
	if len(dst) != len(src) {
		return fmt.Errorf("numeric: bf16 encode: dst has %d elements, src %d", len(dst), len(src))
	}
	for i, v := range src {
		dst[i] = BF16FromFloat32(v)
	}
	return nil
}

// DecodeBF16 widens src into dst (same length).
func DecodeBF16(dst []float32, src []uint16) error {
	if len(dst) != len(src) {
		return fmt.Errorf("numeric: bf16 decode: dst has %d elements, src %d", len(dst), len(src))
	}
	for i, h := range src {
		dst[i] = BF16ToFloat32(h)
	}
	return nil
}

// EncodeF16 rounds src into dst (same length).
func EncodeF16(dst []uint16, src []float32) error {
	if len(dst) != len(src) {
		return fmt.Errorf("numeric: fp16 encode: dst has %d elements, src %d", len(dst), len(src))
	}
	for i, v := range src {
		dst[i] = F16FromFloat32(v)
	}
	return nil
}

// DecodeF16 widens src into dst (same length).
func DecodeF16(dst []float32, src []uint16) error {
	if len(dst) != len(src) {
		return fmt.Errorf("numeric: fp16 decode: dst has %d elements, src %d", len(dst), len(src))
	}
	for i, h := range src {
		dst[i] = F16ToFloat32(h)
	}
	return nil
}

// FP8 names an 8-bit float format.
type FP8 int

const (
	E4M3 FP8 = iota // more precision, range +-448
	E5M2            // more range, +-57344, with Inf
)

func (f FP8) String() string {
	switch f {
	case E4M3:
		return "e4m3"
	case E5M2:
		return "e5m2"
	}
	return fmt.Sprintf("FP8(%d)", int(f))
}

func (f FP8) format() (format, error) {
	switch f {
	case E4M3:
		return e4m3, nil
	case E5M2:
		return e5m2, nil
	}
	return format{}, fmt.Errorf("numeric: unknown fp8 format %d", int(f))
}

// MaxFinite is the largest finite value of the format.
func (f FP8) MaxFinite() float32 {
	t, err := f.format()
	if err != nil {
		return 0
	}
	return t.decode(t.maxFinite)
}

// Quantize stores src in dst (same length) as fp8 with one scale for the
// whole tensor: scale = max|x| / MaxFinite over the finite values (1 when
// all are zero, at least 2^-126), dst[i] = fp8(src[i] / scale). NaN stays NaN; Inf becomes
// Inf (E5M2) or NaN (E4M3). Dequantize with the returned scale.
func Quantize(dst []uint8, src []float32, f FP8) (scale float32, err error) {
	t, err := f.format()
	if err != nil {
		return 0, err
	}
	if len(dst) != len(src) {
		return 0, fmt.Errorf("numeric: %v quantize: dst has %d elements, src %d", f, len(dst), len(src))
	}
	var amax float32
	for _, v := range src {
		if a := float32(math.Abs(float64(v))); a > amax && a <= math.MaxFloat32 {
			amax = a
		}
	}
	scale = 1
	if amax > 0 {
		// Keep the scale a normal float32 so that 1/scale is finite; tensors
		// that tiny (< 448 * 2^-126) lose precision, not range.
		scale = max(amax/t.decode(t.maxFinite), 0x1p-126)
	}
	inv := 1 / scale
	for i, v := range src {
		dst[i] = uint8(t.encode(v * inv))
	}
	return scale, nil
}

// Dequantize widens fp8 src into dst (same length) and multiplies by scale.
func Dequantize(dst []float32, src []uint8, scale float32, f FP8) error {
	t, err := f.format()
	if err != nil {
		return err
	}
	if len(dst) != len(src) {
		return fmt.Errorf("numeric: %v dequantize: dst has %d elements, src %d", f, len(dst), len(src))
	}
	for i, b := range src {
		dst[i] = t.decode(uint32(b)) * scale
	}
	return nil
}
