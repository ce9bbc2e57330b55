package numeric

import (
	"math"
)

// format describes a binary floating-point format narrower than float32.
type format struct {
	man       uint   // mantissa (fraction) bits
	bias      int    // exponent bias
	maxFinite uint32 // largest finite code (sign bit clear)
	inf       uint32 // code of +Inf, 0 if none
	nan       uint32 // canonical NaN code (sign bit clear)
	signBit   uint32
	saturate  bool // finite overflow -> maxFinite (else -> inf)
}

var (
	fp16 = format{man: 10, bias: 15, maxFinite: 0x7BFF, inf: 0x7C00, nan: 0x7E00, signBit: 0x8000}
	e5m2 = format{man: 2, bias: 15, maxFinite: 0x7B, inf: 0x7C, nan: 0x7E, signBit: 0x80}
	e4m3 = format{man: 3, bias: 7, maxFinite: 0x7E, inf: 0, nan: 0x7F, signBit: 0x80, saturate: true}
)

// encode rounds f to the nearest value of the format (ties to even) and
// returns its code.
func (t format) encode(f float32) uint32 {
	bits := math.Float32bits(f)
	var sign uint32
	if bits>>31 != 0 {
		sign = t.signBit
	}
	abs := bits & 0x7FFFFFFF
	switch {
	case abs > 0x7F800000: // NaN
		return sign | t.nan
	case abs == 0x7F800000: // Inf
		if t.inf == 0 {
			return sign | t.nan
		}
		return sign | t.inf
	case abs < 0x00800000:
		// Zero or a float32 subnormal (< 2^-126): far below half of the
		// smallest subnormal of every format here, so it rounds to zero.
		return sign
	}
	e := int(abs>>23) - 127                   // unbiased exponent
	sig := abs&0x7FFFFF | 0x800000            // 24-bit significand, value sig*2^(e-23)
	emin := 1 - t.bias                        // exponent of the smallest normal
	shift := 23 - int(t.man) + max(0, emin-e) // bits dropped from sig
	if shift > 25 {
		return sign // below half of the smallest subnormal
	}
	q := sig >> shift
	rem := sig & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rem > half || rem == half && q&1 == 1 {
		q++
	}
	var code uint32
	if e < emin {
		// Subnormal: the code is the significand itself; rounding up to
		// 1<<man carries into the exponent field, giving the smallest normal.
		code = q
	} else {
		// Normal: rounding up to 1<<(man+1) carries into the exponent.
		code = uint32(e+t.bias)<<t.man + q - 1<<t.man
	}
	if code > t.maxFinite {
		if t.saturate {
			code = t.maxFinite
		} else {
			code = t.inf
		}
	}
	return sign | code
}

// decode returns the float32 value of code (exact: every value of these
// formats is a float32).
func (t format) decode(code uint32) float32 {
	neg := code&t.signBit != 0
	c := code &^ t.signBit
	var v float32
	switch {
	case t.inf != 0 && c == t.inf:
		v = float32(math.Inf(1))
	case c > t.maxFinite:
		v = float32(math.NaN())
	default:
		exp := int(c >> t.man)
		man := c & (1<<t.man - 1)
		if exp == 0 {
			v = float32(math.Ldexp(float64(man), 1-t.bias-int(t.man)))
		} else {
			v = float32(math.Ldexp(float64(man|1<<t.man), exp-t.bias-int(t.man)))
		}
	}
	if neg {
		v = -v
	}
	return v
}

// F16FromFloat32 rounds f to IEEE binary16 (ties to even).
func F16FromFloat32(f float32) uint16 { return uint16(fp16.encode(f)) }

// F16ToFloat32 widens a binary16 value exactly.
func F16ToFloat32(h uint16) float32 { return fp16.decode(uint32(h)) }

// E5M2FromFloat32 rounds f to fp8 E5M2 (ties to even; overflow to Inf).
func E5M2FromFloat32(f float32) uint8 { return uint8(e5m2.encode(f)) }

// E5M2ToFloat32 widens an fp8 E5M2 value exactly.
func E5M2ToFloat32(b uint8) float32 { return e5m2.decode(uint32(b)) }

// E4M3FromFloat32 rounds f to fp8 E4M3FN (ties to even; finite overflow
// saturates to +-448, +-Inf becomes NaN).
func E4M3FromFloat32(f float32) uint8 { return uint8(e4m3.encode(f)) }

// E4M3ToFloat32 widens an fp8 E4M3FN value exactly.
func E4M3ToFloat32(b uint8) float32 { return e4m3.decode(uint32(b)) }

// BF16FromFloat32 rounds f to bfloat16 (ties to even). bf16 is the top half
// of a float32, so rounding is an add on the bits; NaN is kept quiet (the
// rounding add could otherwise carry a NaN with a low payload into Inf).
func BF16FromFloat32(f float32) uint16 {
	bits := math.Float32bits(f)
	if bits&0x7FFFFFFF > 0x7F800000 {
		return uint16(bits>>16) | 0x0040
	}
	bits += 0x7FFF + (bits>>16)&1
	return uint16(bits >> 16)
}

// BF16ToFloat32 widens a bfloat16 value exactly.
func BF16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }
