package collective

import (
	"fmt"
	"math"
	"unsafe"
)

// DType is an element type on the wire.
type DType uint8

// Element types. 16-bit types travel as 16 bits; reductions convert to
// float32, combine, and round back (round to nearest even) once per hop.
const (
	Float32 DType = iota + 1
	BFloat16
	Float16
)

func (d DType) String() string {
	switch d {
	case Float32:
		return "f32"
	case BFloat16:
		return "bf16"
	case Float16:
		return "f16"
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// Size is the element size in bytes.
func (d DType) Size() int {
	if d == Float32 {
		return 4
	}
	return 2
}

// Buffer is a typed slice a collective works on in place: F32, BF16 or F16.
// Converting a slice is free: collective.F32(grads).
type Buffer interface {
	DType() DType
	Len() int
	bytes() []byte // the same memory viewed as bytes (host order)
}

// F32 is a float32 buffer.
type F32 []float32

// BF16 is a bfloat16 buffer: each element is the upper 16 bits of a float32.
type BF16 []uint16

// F16 is an IEEE 754 half-precision buffer, as bit patterns.
type F16 []uint16

func (b F32) DType() DType  { return Float32 }
func (b BF16) DType() DType { return BFloat16 }
func (b F16) DType() DType  { return Float16 }
func (b F32) Len() int      { return len(b) }
func (b BF16) Len() int     { return len(b) }
func (b F16) Len() int      { return len(b) }

func (b F32) bytes() []byte {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(b))), 4*len(b))
}
func (b BF16) bytes() []byte { return u16bytes(b) }
func (b F16) bytes() []byte  { return u16bytes(b) }

// view is buf's element type, length and bytes, found with a type switch
// rather than through buf's methods: a method call on an interface makes
// the compiler move the caller's converted slice to the heap (one
// allocation per call for AllReduce(ctx, collective.F32(grads), op)); a
// type switch does not. A Buffer of another type (one embedding these)
// reports DType 0, which callers refuse.
func view(buf Buffer) (dt DType, n int, b []byte) {
	switch v := buf.(type) {
	case F32:
		return Float32, len(v), v.bytes()
	case BF16:
		return BFloat16, len(v), v.bytes()
	case F16:
		return Float16, len(v), v.bytes()
	}
	return 0, 0, nil
}

func u16bytes(b []uint16) []byte {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(b))), 2*len(b))
}

func asF32(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/4)
}

func asU16(b []byte) []uint16 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/2)
}

// BF16FromFloat32 rounds f to the nearest bfloat16 (ties to even); NaN
// stays NaN.
func BF16FromFloat32(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep it quiet and non-zero
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// Float32FromBF16 widens a bfloat16 exactly.
func Float32FromBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// Float32FromF16 widens an IEEE half exactly.
func Float32FromF16(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp == 0:
		if man == 0 {
			return math.Float32frombits(sign)
		}
		// subnormal: value = man * 2^-24
		f := float32(man) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
}

// F16FromFloat32 rounds f to the nearest IEEE half (ties to even),
// overflowing to infinity.
func F16FromFloat32(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff { // inf / NaN
		if man != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 { // subnormal half (or zero)
		if e < -10 {
			return sign
		}
		man |= 0x800000
		shift := uint32(14 - e) // 13 + (1 - e)
		half := man >> shift
		rem := man & (1<<shift - 1)
		mid := uint32(1) << (shift - 1)
		if rem > mid || (rem == mid && half&1 == 1) {
			half++
		}
		return sign | uint16(half)
	}
	half := uint32(e)<<10 | man>>13
	rem := man & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && half&1 == 1) {
		half++ // may carry into the exponent, and to infinity: both correct
	}
	return sign | uint16(half)
}
