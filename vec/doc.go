// Package vec holds the vectorized element-wise kernels of a training step
// that are not matrix products: the exponential of a softmax row, the tanh
// GELU and its derivative, and the AdamW update.
//
// On amd64 with AVX-512 each kernel is Go assembly working on 16 floats
// per instruction (the tail through a lane mask); elsewhere, or when
// Disable is set in tests, the portable Go versions in generic.go run.
// Both compute the same formulas; the assembly exponential is a degree-6
// polynomial after range reduction (Cephes expf), accurate to about 2 ulp,
// so results differ from the portable path by float rounding only.
// Arguments are never clamped for NaN: callers pass finite values.
package vec
