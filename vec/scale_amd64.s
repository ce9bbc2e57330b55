//go:build amd64

#include "textflag.h"

// func scaleAVX512(x *float32, n int, s float32)
// x *= s; n is a positive multiple of 16.
TEXT ·scaleAVX512(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS s+16(FP), Z16

scloop:
	VMULPS (SI), Z16, Z0
	VMOVUPS Z0, (SI)
	ADDQ $64, SI
	SUBQ $16, CX
	JNZ scloop
	VZEROUPPER
	RET

// func scaleF64AVX512(x *float32, n int, s float64)
// x = float32(float64(x) * s), 8 values per half; n is a positive
// multiple of 16.
TEXT ·scaleF64AVX512(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSD s+16(FP), Z16

sdloop:
	VCVTPS2PD (SI), Z0
	VCVTPS2PD 32(SI), Z1
	VMULPD Z16, Z0, Z0
	VMULPD Z16, Z1, Z1
	VCVTPD2PS Z0, Y0
	VCVTPD2PS Z1, Y1
	VMOVUPS Y0, (SI)
	VMOVUPS Y1, 32(SI)
	ADDQ $64, SI
	SUBQ $16, CX
	JNZ sdloop
	VZEROUPPER
	RET

// func sumSquaresAVX512(x *float32, n int) float64
// Two float64 accumulators: Z2 takes elements i%16 in 0..7, Z3 8..15
// (sumSquaresGo's a[0..7] and a[8..15]); then a[j] += a[j+8], +4, +2, +1.
TEXT ·sumSquaresAVX512(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VXORPD Z2, Z2, Z2
	VXORPD Z3, Z3, Z3

ssloop:
	VCVTPS2PD (SI), Z0
	VCVTPS2PD 32(SI), Z1
	VMULPD Z0, Z0, Z0 // exact: a float32 squared fits a float64
	VMULPD Z1, Z1, Z1
	VADDPD Z0, Z2, Z2
	VADDPD Z1, Z3, Z3
	ADDQ $64, SI
	SUBQ $16, CX
	JNZ ssloop

	VADDPD Z3, Z2, Z2             // a[j] += a[j+8]
	VEXTRACTF64X4 $1, Z2, Y3
	VADDPD Y3, Y2, Y2             // a[j] += a[j+4]
	VEXTRACTF128 $1, Y2, X3
	VADDPD X3, X2, X2             // a[j] += a[j+2]
	VPERMILPD $1, X2, X3
	VADDSD X3, X2, X2             // a[0] += a[1]
	MOVSD X2, ret+16(FP)
	VZEROUPPER
	RET

// func maxAVX512(x *float32, n int) float32
// n is a positive multiple of 16: lane-wise maxima, then across lanes.
TEXT ·maxAVX512(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VMOVUPS (SI), Z1
	ADDQ $64, SI
	SUBQ $16, CX

mxloop:
	TESTQ CX, CX
	JZ mxdone
	VMAXPS (SI), Z1, Z1
	ADDQ $64, SI
	SUBQ $16, CX
	JMP mxloop

mxdone:
	VEXTRACTF64X4 $1, Z1, Y2
	VMAXPS Y2, Y1, Y1
	VEXTRACTF128 $1, Y1, X2
	VMAXPS X2, X1, X1
	VPERMILPS $0x4e, X1, X2
	VMAXPS X2, X1, X1
	VPERMILPS $0xb1, X1, X2
	VMAXPS X2, X1, X1
	MOVSS X1, ret+16(FP)
	VZEROUPPER
	RET

// func subMulAVX512(d, p *float32, n int, c float32)
// d = p * (d - c); n is a positive multiple of 16.
TEXT ·subMulAVX512(SB), NOSPLIT, $0-28
	MOVQ d+0(FP), DI
	MOVQ p+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS c+24(FP), Z16

smloop:
	VMOVUPS (DI), Z0
	VSUBPS Z16, Z0, Z0
	VMULPS (SI), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JNZ smloop
	VZEROUPPER
	RET
