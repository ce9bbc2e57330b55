// Tail masks of the AVX2 kernels (included by the *_avx2_amd64.s files;
// each gets its own copy of the table).
//
// AVX2 has no mask registers: a tail of r < 8 floats is read and written
// with VMASKMOVPS, whose mask is a YMM register with the sign bit set in
// the lanes to touch. masktab<> is 16 set lanes then 16 clear ones, so the
// 32 bytes at masktab<>+64-4r have exactly the first r lanes set.

DATA masktab<>+0(SB)/8, $-1
DATA masktab<>+8(SB)/8, $-1
DATA masktab<>+16(SB)/8, $-1
DATA masktab<>+24(SB)/8, $-1
DATA masktab<>+32(SB)/8, $-1
DATA masktab<>+40(SB)/8, $-1
DATA masktab<>+48(SB)/8, $-1
DATA masktab<>+56(SB)/8, $-1
DATA masktab<>+64(SB)/8, $0
DATA masktab<>+72(SB)/8, $0
DATA masktab<>+80(SB)/8, $0
DATA masktab<>+88(SB)/8, $0
DATA masktab<>+96(SB)/8, $0
DATA masktab<>+104(SB)/8, $0
DATA masktab<>+112(SB)/8, $0
DATA masktab<>+120(SB)/8, $0
GLOBL masktab<>(SB), RODATA|NOPTR, $128

// MASK8(r) loads into r the mask of the first CX lanes (CX in 0..8),
// using AX; CX is lost.
#define MASK8(r) \
	LEAQ masktab<>+64(SB), AX \
	SHLQ $2, CX \
	SUBQ CX, AX \
	VMOVUPS (AX), r

// MASK16(lo, hi) is MASK8 for 16 lanes (CX in 0..16): lanes 0-7 in lo,
// 8-15 in hi.
#define MASK16(lo, hi) \
	MASK8(lo) \
	VMOVUPS 32(AX), hi
