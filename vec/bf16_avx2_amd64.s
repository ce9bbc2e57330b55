//go:build amd64

#include "textflag.h"
#include "avx2_amd64.h"

// BF16ROUND turns the 8 floats in Y0 into their bfloat16 patterns in the
// low halves of Y1's dwords, as toBF16AVX512 does (AVX2 has neither
// VCVTNEPS2BF16 nor mask registers): bits + 0x7FFF + lsb of the kept half
// rounds to nearest even; NaN lanes (VCMPPS unordered) take bits|0x00400000
// instead, quiet and never rounded into Inf. Uses Y2, Y3; constants in
// Y10 (0x7FFF), Y11 (1), Y13 (0x00400000).
#define BF16ROUND \
	VPSRLD $16, Y0, Y1 \
	VPAND Y11, Y1, Y1 \
	VPADDD Y10, Y1, Y1 \
	VPADDD Y0, Y1, Y1 \
	VCMPPS $3, Y0, Y0, Y2 \
	VPOR Y13, Y0, Y3 \
	VBLENDVPS Y2, Y3, Y1, Y1 \
	VPSRLD $16, Y1, Y1

// func toBF16AVX2(dst *uint16, src *float32, n int)
// 16 floats per iteration: two YMM of rounded dwords packed into one of
// words (VPACKUSDW packs within 128-bit halves, VPERMQ puts the four
// quarters back in order); then 8; then the last 1..7 from a masked load,
// stored a word at a time.
TEXT ·toBF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MOVL $0x7FFF, AX
	VMOVD AX, X10
	VPBROADCASTD X10, Y10
	MOVL $1, AX
	VMOVD AX, X11
	VPBROADCASTD X11, Y11
	MOVL $0x00400000, AX
	VMOVD AX, X13
	VPBROADCASTD X13, Y13

b16:
	CMPQ CX, $16
	JLT b8
	VMOVUPS (SI), Y0
	BF16ROUND
	VMOVDQU Y1, Y4
	VMOVUPS 32(SI), Y0
	BF16ROUND
	VPACKUSDW Y1, Y4, Y4
	VPERMQ $0xD8, Y4, Y4
	VMOVDQU Y4, (DI)
	ADDQ $64, SI
	ADDQ $32, DI
	SUBQ $16, CX
	JMP b16

b8:
	CMPQ CX, $8
	JLT btail
	VMOVUPS (SI), Y0
	BF16ROUND
	VEXTRACTI128 $1, Y1, X2
	VPACKUSDW X2, X1, X1
	VMOVDQU X1, (DI)
	ADDQ $32, SI
	ADDQ $16, DI
	SUBQ $8, CX

btail:
	TESTQ CX, CX
	JZ bdone
	MOVQ CX, DX
	MASK8(Y12)
	VMASKMOVPS (SI), Y12, Y0
	BF16ROUND
	VEXTRACTI128 $1, Y1, X2
	VPACKUSDW X2, X1, X1

bword:
	VMOVD X1, AX
	MOVW AX, (DI)
	VPSRLDQ $2, X1, X1
	ADDQ $2, DI
	DECQ DX
	JNZ bword

bdone:
	VZEROUPPER
	RET
