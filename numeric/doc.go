// Package numeric converts float32 to and from the narrow floating-point
// formats used for mixed precision and communication compression:
//
//	format   bits  exponent  mantissa  bias  max finite   inf  NaN
//	bf16     16    8         7         127   3.39e38      yes  yes
//	fp16     16    5         10        15    65504        yes  yes
//	E5M2     8     5         2         15    57344        yes  yes
//	E4M3     8     4         3         7     448          no   0x7F/0xFF
//
// (E4M3 is the OCP "E4M3FN" variant: no infinities, one NaN pattern per
// sign.) Every conversion from float32 rounds to nearest, ties to even, and
// keeps subnormals (gradual underflow) and the sign of zero. NaN stays NaN.
// Overflow goes to infinity in the formats that have one; E4M3 saturates
// finite overflow to +-448 and maps +-Inf to NaN, so an overflow that a loss
// scaler must see is not silently turned into a finite value.
//
// Values are carried as their bit patterns (uint16, uint8), which is how
// buffers are sent over the wire and stored in checkpoints.
//
// For fp8 the range is small, so tensors are scaled per tensor: Quantize
// picks scale = max|x| / max finite, stores x/scale, and Dequantize
// multiplies back.
package numeric
