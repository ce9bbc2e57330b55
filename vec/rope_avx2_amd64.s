//go:build amd64

#include "textflag.h"
#include "avx2_amd64.h"

// ROTATE is rope_amd64.s's rotation on 8 lanes: (a=Y0, b=Y1) by (c=Y2,
// sin=Y3, dir in Y8) into Y4 = a*c - b*s and Y6 = b*c + a*s.
#define ROTATE \
	VMULPS Y8, Y3, Y3 \
	VMULPS Y2, Y0, Y4 \
	VMULPS Y3, Y1, Y5 \
	VSUBPS Y5, Y4, Y4 \
	VMULPS Y2, Y1, Y6 \
	VMULPS Y3, Y0, Y7 \
	VADDPS Y7, Y6, Y6

// func rotateAVX2(x1, x2, cos, sin *float32, n int, dir float32)
TEXT ·rotateAVX2(SB), NOSPLIT, $0-44
	MOVQ x1+0(FP), DI
	MOVQ x2+8(FP), SI
	MOVQ cos+16(FP), R8
	MOVQ sin+24(FP), R9
	MOVQ n+32(FP), CX
	VBROADCASTSS dir+40(FP), Y8
rtloop:
	CMPQ CX, $8
	JLT rttail
	VMOVUPS (DI), Y0
	VMOVUPS (SI), Y1
	VMOVUPS (R8), Y2
	VMOVUPS (R9), Y3
	ROTATE
	VMOVUPS Y4, (DI)
	VMOVUPS Y6, (SI)
	ADDQ $32, DI
	ADDQ $32, SI
	ADDQ $32, R8
	ADDQ $32, R9
	SUBQ $8, CX
	JMP rtloop
rttail:
	TESTQ CX, CX
	JZ rtdone
	MASK8(Y10)
	VMASKMOVPS (DI), Y10, Y0
	VMASKMOVPS (SI), Y10, Y1
	VMASKMOVPS (R8), Y10, Y2
	VMASKMOVPS (R9), Y10, Y3
	ROTATE
	VMASKMOVPS Y4, Y10, (DI)
	VMASKMOVPS Y6, Y10, (SI)
rtdone:
	VZEROUPPER
	RET
