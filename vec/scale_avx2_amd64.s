//go:build amd64

#include "textflag.h"

// AVX2 versions of scale_amd64.s, with its contracts (n a positive
// multiple of 16; the callers finish the rest in Go) and its bits: each
// iteration covers the 16 floats a ZMM register holds with two YMM
// registers, and reductions keep the AVX-512 code's lanes and combining
// order.

// func scaleAVX2(x *float32, n int, s float32)
// x *= s
TEXT ·scaleAVX2(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS s+16(FP), Y8

scloop:
	VMULPS (SI), Y8, Y0
	VMULPS 32(SI), Y8, Y1
	VMOVUPS Y0, (SI)
	VMOVUPS Y1, 32(SI)
	ADDQ $64, SI
	SUBQ $16, CX
	JNZ scloop
	VZEROUPPER
	RET

// func scaleF64AVX2(x *float32, n int, s float64)
// x = float32(float64(x) * s), 4 values per quarter.
TEXT ·scaleF64AVX2(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSD s+16(FP), Y8

sdloop:
	VCVTPS2PD (SI), Y0
	VCVTPS2PD 16(SI), Y1
	VCVTPS2PD 32(SI), Y2
	VCVTPS2PD 48(SI), Y3
	VMULPD Y8, Y0, Y0
	VMULPD Y8, Y1, Y1
	VMULPD Y8, Y2, Y2
	VMULPD Y8, Y3, Y3
	VCVTPD2PSY Y0, X0
	VCVTPD2PSY Y1, X1
	VCVTPD2PSY Y2, X2
	VCVTPD2PSY Y3, X3
	VMOVUPS X0, (SI)
	VMOVUPS X1, 16(SI)
	VMOVUPS X2, 32(SI)
	VMOVUPS X3, 48(SI)
	ADDQ $64, SI
	SUBQ $16, CX
	JNZ sdloop
	VZEROUPPER
	RET

// func sumSquaresAVX2(x *float32, n int) float64
// Four float64 accumulators hold sumSquaresGo's a[0..3], a[4..7],
// a[8..11] and a[12..15]; then a[j] += a[j+8], +4, +2, +1.
TEXT ·sumSquaresAVX2(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VXORPD Y4, Y4, Y4
	VXORPD Y5, Y5, Y5
	VXORPD Y6, Y6, Y6
	VXORPD Y7, Y7, Y7

ssloop:
	VCVTPS2PD (SI), Y0
	VCVTPS2PD 16(SI), Y1
	VCVTPS2PD 32(SI), Y2
	VCVTPS2PD 48(SI), Y3
	VMULPD Y0, Y0, Y0 // exact: a float32 squared fits a float64
	VMULPD Y1, Y1, Y1
	VMULPD Y2, Y2, Y2
	VMULPD Y3, Y3, Y3
	VADDPD Y0, Y4, Y4
	VADDPD Y1, Y5, Y5
	VADDPD Y2, Y6, Y6
	VADDPD Y3, Y7, Y7
	ADDQ $64, SI
	SUBQ $16, CX
	JNZ ssloop

	VADDPD Y6, Y4, Y4 // a[j] += a[j+8]
	VADDPD Y7, Y5, Y5
	VADDPD Y5, Y4, Y4 // a[j] += a[j+4]
	VEXTRACTF128 $1, Y4, X5
	VADDPD X5, X4, X4 // a[j] += a[j+2]
	VPERMILPD $1, X4, X5
	VADDSD X5, X4, X4 // a[0] += a[1]
	MOVSD X4, ret+16(FP)
	VZEROUPPER
	RET

// func maxAVX2(x *float32, n int) float32
// Lane-wise maxima (lanes 0-7 of each 16 in Y1, 8-15 in Y2), then across
// lanes as maxAVX512 combines its ZMM.
TEXT ·maxAVX2(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VMOVUPS (SI), Y1
	VMOVUPS 32(SI), Y2
	ADDQ $64, SI
	SUBQ $16, CX

mxloop:
	TESTQ CX, CX
	JZ mxdone
	VMAXPS (SI), Y1, Y1
	VMAXPS 32(SI), Y2, Y2
	ADDQ $64, SI
	SUBQ $16, CX
	JMP mxloop

mxdone:
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

// func subMulAVX2(d, p *float32, n int, c float32)
// d = p * (d - c)
TEXT ·subMulAVX2(SB), NOSPLIT, $0-28
	MOVQ d+0(FP), DI
	MOVQ p+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS c+24(FP), Y8

smloop:
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VSUBPS Y8, Y0, Y0
	VSUBPS Y8, Y1, Y1
	VMULPS (SI), Y0, Y0
	VMULPS 32(SI), Y1, Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JNZ smloop
	VZEROUPPER
	RET
