// Package vec holds the vectorized element-wise kernels of a training step
// that are not matrix products: the exponential of a softmax row, the tanh
// GELU and its derivative, SwiGLU and its input gradients, LayerNorm and
// RMSNorm rows, the RoPE rotation, residual adds, scaling, bf16 rounding
// and the AdamW update.
//
// Each kernel has three implementations, one chosen once at start-up from
// the CPU's features (vec_amd64.go):
//   - AVX-512 (Go assembly, *_amd64.s): 16 floats per instruction, the
//     tail through a lane mask;
//   - AVX2 with FMA (*_avx2_amd64.s), for CPUs without AVX-512 (Intel
//     client chips, AMD Zen 1-3): 8 floats per instruction, the tail
//     through VMASKMOVPS, and otherwise the AVX-512 kernel's instructions
//     in the same order, so its results are the AVX-512 bits (sums keep
//     the 16-lane order in two registers; only the payload of a NaN made
//     from two NaN operands may differ): a job mixing AVX2 and AVX-512
//     machines stays deterministic;
//   - portable Go (generic.go and the loops beside each exported function)
//     elsewhere.
//
// The assembly computes the same formulas as the Go code; the assembly
// exponential is a degree-6 polynomial after range reduction (Cephes
// expf), accurate to about 2 ulp, so results differ from the portable path
// by float rounding only, and each exported function says where they are
// bit-identical. (SwiGLU's portable path runs the same Cephes expf in
// float32, without fused multiply-adds; GELU's uses math.Tanh.) Arguments are never clamped for NaN: callers pass finite
// values. Tests compare the paths by calling each kernel directly; there is
// no switch to force a path. To run the exported functions' tests on the
// other paths of an AVX-512 machine, hide features from golang.org/x/sys/cpu
// for the whole test process: GODEBUG=cpu.avx512f=off go test ./vec (AVX2),
// GODEBUG=cpu.avx512f=off,cpu.avx2=off go test ./vec (portable Go).
package vec
