// Package gemm multiplies matrices: C = alpha*op(A)*op(B) + beta*C,
// row-major, where op(X) is X or its transpose. Every layer of the model
// calls Engine.Sgemm (float32), so kernels can be swapped behind it;
// Engine.GemmBF16 takes bfloat16 A and B (bit patterns, see package
// numeric) and a float32 C, for mixed precision.
//
// Kernels. New picks the fastest kernel the CPU supports (detected with
// golang.org/x/sys/cpu): a BLIS-style blocked GEMM around a Go-assembly
// micro-kernel (AVX-512, 12 x 32 tile; or AVX2+FMA, 6 x 16 tile; see
// internal/kernels), with the pure-Go Portable kernel as fallback and for
// tiny problems where packing costs more than it saves. NewPortable and
// NewNamed force a kernel. GemmBF16 uses the AVX512-BF16 (VDPBF16PS)
// micro-kernel when the CPU has it and otherwise widens to float32 and
// calls Sgemm.
//
// Blocked GEMM (blocked.go): op(B) is packed kc x nc at a time into NR-wide
// panels, op(A) mc x kc at a time into MR-high panels, so the micro-kernel
// reads both contiguously whatever the transposes; the micro-kernel keeps an
// MR x NR tile of C in registers for the whole kc block. Packing uses the
// AVX-512 helpers of internal/kernels where they apply (16x16 register
// transposes for strided operands, masked row copies for contiguous ones,
// and for bf16 a row-pair interleave), else scalar loops.
//
// Determinism. Parallelism splits C into strips of whole MR x NR tiles on a
// grid anchored at C[0,0] and never splits K, so each element of C is
// computed by one goroutine with the same operations in the same order:
// results are bit-identical whatever the thread count. The SIMD kernels
// differ from Portable by rounding only (FMA and summation order).
//
// Threads. An Engine owns up to threads-1 worker goroutines (team.go),
// started on first use and stopped when the Engine becomes unreachable; the
// calling goroutine runs one task itself. With several tasks, the operand
// all strips share (A when C is split by columns, B when by rows) is
// packed once, by all tasks together, before the strips start
// (blocked.prepackPart), not once per strip. Tasks claim strips that shrink
// as the work runs out (call.claim), and the workers and the caller spin
// briefly before they park, so back-to-back calls do not pay a goroutine
// wake-up each. Products under 2*2^22 multiply-adds run on one goroutine.
// Calls and packing buffers are recycled, so a steady-state call does not
// allocate.
package gemm
