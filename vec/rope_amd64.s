//go:build amd64

#include "textflag.h"

// TAILMASK sets K1 to the low CX bits (CX in 1..15), using AX.
#define TAILMASK \
	MOVL $1, AX \
	SHLL CX, AX \
	DECL AX \
	KMOVW AX, K1

// ROTATE turns (a=Z0, b=Z1) by (c=Z2, sin=Z3, dir in Z8):
// Z4 = a*c - b*s, Z6 = b*c + a*s, s = dir*sin; no fused multiply-adds.
#define ROTATE \
	VMULPS Z8, Z3, Z3 \
	VMULPS Z2, Z0, Z4 \
	VMULPS Z3, Z1, Z5 \
	VSUBPS Z5, Z4, Z4 \
	VMULPS Z2, Z1, Z6 \
	VMULPS Z3, Z0, Z7 \
	VADDPS Z7, Z6, Z6

// func rotateAVX512(x1, x2, cos, sin *float32, n int, dir float32)
TEXT ·rotateAVX512(SB), NOSPLIT, $0-44
	MOVQ x1+0(FP), DI
	MOVQ x2+8(FP), SI
	MOVQ cos+16(FP), R8
	MOVQ sin+24(FP), R9
	MOVQ n+32(FP), CX
	VBROADCASTSS dir+40(FP), Z8
rtloop:
	CMPQ CX, $16
	JLT rttail
	VMOVUPS (DI), Z0
	VMOVUPS (SI), Z1
	VMOVUPS (R8), Z2
	VMOVUPS (R9), Z3
	ROTATE
	VMOVUPS Z4, (DI)
	VMOVUPS Z6, (SI)
	ADDQ $64, DI
	ADDQ $64, SI
	ADDQ $64, R8
	ADDQ $64, R9
	SUBQ $16, CX
	JMP rtloop
rttail:
	TESTQ CX, CX
	JZ rtdone
	TAILMASK
	VMOVUPS.Z (DI), K1, Z0
	VMOVUPS.Z (SI), K1, Z1
	VMOVUPS.Z (R8), K1, Z2
	VMOVUPS.Z (R9), K1, Z3
	ROTATE
	VMOVUPS Z4, K1, (DI)
	VMOVUPS Z6, K1, (SI)
rtdone:
	VZEROUPPER
	RET
