//go:build amd64

#include "textflag.h"

// func toBF16AVX512(dst *uint16, src *float32, n int)
// Rounds to nearest even on the bits (bits + 0x7FFF + lsb of the kept
// half), keeps NaN quiet (| 0x00400000 before truncating), and narrows 16
// dwords to 16 words with VPMOVDW.
TEXT ·toBF16AVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MOVL $0x7FFF, AX
	VPBROADCASTD AX, Z10
	MOVL $1, AX
	VPBROADCASTD AX, Z11
	MOVL $0x00400000, AX
	VPBROADCASTD AX, Z13

bloop:
	CMPQ CX, $16
	JLT btail
	VMOVUPS (SI), Z0
	VPSRLD $16, Z0, Z1
	VPANDD Z11, Z1, Z1
	VPADDD Z10, Z1, Z1
	VPADDD Z0, Z1, Z1
	VCMPPS $3, Z0, Z0, K2
	VPORD Z13, Z0, K2, Z1
	VPSRLD $16, Z1, Z1
	VPMOVDW Z1, (DI)
	ADDQ $64, SI
	ADDQ $32, DI
	SUBQ $16, CX
	JMP bloop

btail:
	TESTQ CX, CX
	JZ bdone
	MOVL $1, AX
	SHLL CX, AX
	DECL AX
	KMOVW AX, K1
	VMOVUPS.Z (SI), K1, Z0
	VPSRLD $16, Z0, Z1
	VPANDD Z11, Z1, Z1
	VPADDD Z10, Z1, Z1
	VPADDD Z0, Z1, Z1
	VCMPPS $3, Z0, Z0, K2
	VPORD Z13, Z0, K2, Z1
	VPSRLD $16, Z1, Z1
	VPMOVDW Z1, K1, (DI)

bdone:
	VZEROUPPER
	RET
