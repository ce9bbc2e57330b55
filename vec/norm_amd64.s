//go:build amd64

#include "textflag.h"

// Row kernels of LayerNorm. Each walks n floats 16 at a time and finishes
// with a masked vector (K1 = low CX bits).

// HSUM reduces Z0's 16 lanes into X0 (lane 0), using Y1/X1.
#define HSUM \
	VEXTRACTF64X4 $1, Z0, Y1 \
	VADDPS Y1, Y0, Y0 \
	VEXTRACTF128 $1, Y0, X1 \
	VADDPS X1, X0, X0 \
	VHADDPS X0, X0, X0 \
	VHADDPS X0, X0, X0

#define TAILMASK \
	MOVL $1, AX \
	SHLL CX, AX \
	DECL AX \
	KMOVW AX, K1

// func sumAVX512(x *float32, n int) float32
TEXT ·sumAVX512(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VXORPS Z0, Z0, Z0
sloop:
	CMPQ CX, $16
	JLT stail
	VADDPS (SI), Z0, Z0
	ADDQ $64, SI
	SUBQ $16, CX
	JMP sloop
stail:
	TESTQ CX, CX
	JZ sdone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z2
	VADDPS Z2, Z0, Z0
sdone:
	HSUM
	MOVSS X0, ret+16(FP)
	VZEROUPPER
	RET

// func sumSqDevAVX512(x *float32, n int, m float32) float32
TEXT ·sumSqDevAVX512(SB), NOSPLIT, $0-28
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS m+16(FP), Z3
	VXORPS Z0, Z0, Z0
qloop:
	CMPQ CX, $16
	JLT qtail
	VMOVUPS (SI), Z2
	VSUBPS Z3, Z2, Z2
	VFMADD231PS Z2, Z2, Z0
	ADDQ $64, SI
	SUBQ $16, CX
	JMP qloop
qtail:
	TESTQ CX, CX
	JZ qdone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z2
	VSUBPS Z3, Z2, K1, Z2
	VFMADD231PS Z2, Z2, Z0
qdone:
	HSUM
	MOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// func normAffineAVX512(out, x, w, b *float32, n int, m, s float32)
// out = (x-m)*s*w + b
TEXT ·normAffineAVX512(SB), NOSPLIT, $0-48
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), R8
	MOVQ b+24(FP), R9
	MOVQ n+32(FP), CX
	VBROADCASTSS m+40(FP), Z3
	VBROADCASTSS s+44(FP), Z4
aloop:
	CMPQ CX, $16
	JLT atail
	VMOVUPS (SI), Z0
	VSUBPS Z3, Z0, Z0
	VMULPS Z4, Z0, Z0
	VMULPS (R8), Z0, Z0
	VADDPS (R9), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	ADDQ $64, R8
	ADDQ $64, R9
	SUBQ $16, CX
	JMP aloop
atail:
	TESTQ CX, CX
	JZ adone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z (R8), K1, Z1
	VMOVUPS.Z (R9), K1, Z2
	VSUBPS Z3, Z0, Z0
	VMULPS Z4, Z0, Z0
	VMULPS Z1, Z0, Z0
	VADDPS Z2, Z0, Z0
	VMOVUPS Z0, K1, (DI)
adone:
	VZEROUPPER
	RET

// func lnBwdDotsAVX512(dout, x, w *float32, n int, m, s float32) (dnSum, dnNormSum float32)
// dnSum = sum w*d ; dnNormSum = sum w*d*(x-m)*s
TEXT ·lnBwdDotsAVX512(SB), NOSPLIT, $0-48
	MOVQ dout+0(FP), DX
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), R8
	MOVQ n+24(FP), CX
	VBROADCASTSS m+32(FP), Z3
	VBROADCASTSS s+36(FP), Z4
	VXORPS Z5, Z5, Z5
	VXORPS Z6, Z6, Z6
dloop:
	CMPQ CX, $16
	JLT dtail
	VMOVUPS (DX), Z0
	VMULPS (R8), Z0, Z0
	VMOVUPS (SI), Z2
	VSUBPS Z3, Z2, Z2
	VMULPS Z4, Z2, Z2
	VADDPS Z0, Z5, Z5
	VFMADD231PS Z2, Z0, Z6
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, R8
	SUBQ $16, CX
	JMP dloop
dtail:
	TESTQ CX, CX
	JZ ddone
	TAILMASK
	VMOVUPS.Z (DX), K1, Z0
	VMOVUPS.Z (R8), K1, Z1
	VMULPS Z1, Z0, Z0
	VMOVUPS.Z (SI), K1, Z2
	VSUBPS Z3, Z2, Z2
	VMULPS Z4, Z2, Z2
	VADDPS Z0, Z5, Z5
	VFMADD231PS Z2, Z0, Z6
ddone:
	VMOVAPS Z5, Z0
	HSUM
	MOVSS X0, dnSum+40(FP)
	VMOVAPS Z6, Z0
	HSUM
	MOVSS X0, dnNormSum+44(FP)
	VZEROUPPER
	RET

// func lnBwdApplyAVX512(dinp, dw, db, dout, x, w *float32, n int, m, s, dnMean, dnNormMean float32)
// norm = (x-m)*s ; db += d ; dw += norm*d ; dinp += s*(w*d - dnMean - norm*dnNormMean)
TEXT ·lnBwdApplyAVX512(SB), NOSPLIT, $0-72
	MOVQ dinp+0(FP), DI
	MOVQ dw+8(FP), R10
	MOVQ db+16(FP), R11
	MOVQ dout+24(FP), DX
	MOVQ x+32(FP), SI
	MOVQ w+40(FP), R8
	MOVQ n+48(FP), CX
	VBROADCASTSS m+56(FP), Z3
	VBROADCASTSS s+60(FP), Z4
	VBROADCASTSS dnMean+64(FP), Z5
	VBROADCASTSS dnNormMean+68(FP), Z6
ploop:
	CMPQ CX, $16
	JLT ptail
	VMOVUPS (DX), Z0
	VMOVUPS (SI), Z2
	VSUBPS Z3, Z2, Z2
	VMULPS Z4, Z2, Z2
	VADDPS (R11), Z0, Z7
	VMOVUPS Z7, (R11)
	VMOVUPS (R10), Z7
	VFMADD231PS Z0, Z2, Z7
	VMOVUPS Z7, (R10)
	VMULPS (R8), Z0, Z7
	VSUBPS Z5, Z7, Z7
	VFNMADD231PS Z6, Z2, Z7
	VMOVUPS (DI), Z8
	VFMADD231PS Z7, Z4, Z8
	VMOVUPS Z8, (DI)
	ADDQ $64, DI
	ADDQ $64, R10
	ADDQ $64, R11
	ADDQ $64, DX
	ADDQ $64, SI
	ADDQ $64, R8
	SUBQ $16, CX
	JMP ploop
ptail:
	TESTQ CX, CX
	JZ pdone
	TAILMASK
	VMOVUPS.Z (DX), K1, Z0
	VMOVUPS.Z (SI), K1, Z2
	VSUBPS Z3, Z2, Z2
	VMULPS Z4, Z2, Z2
	VMOVUPS.Z (R11), K1, Z7
	VADDPS Z0, Z7, Z7
	VMOVUPS Z7, K1, (R11)
	VMOVUPS.Z (R10), K1, Z7
	VFMADD231PS Z0, Z2, Z7
	VMOVUPS Z7, K1, (R10)
	VMOVUPS.Z (R8), K1, Z1
	VMULPS Z1, Z0, Z7
	VSUBPS Z5, Z7, Z7
	VFNMADD231PS Z6, Z2, Z7
	VMOVUPS.Z (DI), K1, Z8
	VFMADD231PS Z7, Z4, Z8
	VMOVUPS Z8, K1, (DI)
pdone:
	VZEROUPPER
	RET

// func lnBwdDxAVX512(dinp, dout, x, w *float32, n int, m, s, dnMean, dnNormMean float32)
// The dinp half of lnBwdApplyAVX512, same instructions:
// dinp += s*(w*d - dnMean - norm*dnNormMean), norm = (x-m)*s.
TEXT ·lnBwdDxAVX512(SB), NOSPLIT, $0-56
	MOVQ dinp+0(FP), DI
	MOVQ dout+8(FP), DX
	MOVQ x+16(FP), SI
	MOVQ w+24(FP), R8
	MOVQ n+32(FP), CX
	VBROADCASTSS m+40(FP), Z3
	VBROADCASTSS s+44(FP), Z4
	VBROADCASTSS dnMean+48(FP), Z5
	VBROADCASTSS dnNormMean+52(FP), Z6
dxloop:
	CMPQ CX, $16
	JLT dxtail
	VMOVUPS (DX), Z0
	VMOVUPS (SI), Z2
	VSUBPS Z3, Z2, Z2
	VMULPS Z4, Z2, Z2
	VMULPS (R8), Z0, Z7
	VSUBPS Z5, Z7, Z7
	VFNMADD231PS Z6, Z2, Z7
	VMOVUPS (DI), Z8
	VFMADD231PS Z7, Z4, Z8
	VMOVUPS Z8, (DI)
	ADDQ $64, DI
	ADDQ $64, DX
	ADDQ $64, SI
	ADDQ $64, R8
	SUBQ $16, CX
	JMP dxloop
dxtail:
	TESTQ CX, CX
	JZ dxdone
	TAILMASK
	VMOVUPS.Z (DX), K1, Z0
	VMOVUPS.Z (SI), K1, Z2
	VSUBPS Z3, Z2, Z2
	VMULPS Z4, Z2, Z2
	VMOVUPS.Z (R8), K1, Z1
	VMULPS Z1, Z0, Z7
	VSUBPS Z5, Z7, Z7
	VFNMADD231PS Z6, Z2, Z7
	VMOVUPS.Z (DI), K1, Z8
	VFMADD231PS Z7, Z4, Z8
	VMOVUPS Z8, K1, (DI)
dxdone:
	VZEROUPPER
	RET

// func lnBwdParamsAVX512(dw, db, dout, x *float32, n int, m, s float32)
// The dw/db half of lnBwdApplyAVX512, same instructions:
// db += d ; dw += norm*d, norm = (x-m)*s.
TEXT ·lnBwdParamsAVX512(SB), NOSPLIT, $0-48
	MOVQ dw+0(FP), R10
	MOVQ db+8(FP), R11
	MOVQ dout+16(FP), DX
	MOVQ x+24(FP), SI
	MOVQ n+32(FP), CX
	VBROADCASTSS m+40(FP), Z3
	VBROADCASTSS s+44(FP), Z4
pmloop:
	CMPQ CX, $16
	JLT pmtail
	VMOVUPS (DX), Z0
	VMOVUPS (SI), Z2
	VSUBPS Z3, Z2, Z2
	VMULPS Z4, Z2, Z2
	VADDPS (R11), Z0, Z7
	VMOVUPS Z7, (R11)
	VMOVUPS (R10), Z7
	VFMADD231PS Z0, Z2, Z7
	VMOVUPS Z7, (R10)
	ADDQ $64, R10
	ADDQ $64, R11
	ADDQ $64, DX
	ADDQ $64, SI
	SUBQ $16, CX
	JMP pmloop
pmtail:
	TESTQ CX, CX
	JZ pmdone
	TAILMASK
	VMOVUPS.Z (DX), K1, Z0
	VMOVUPS.Z (SI), K1, Z2
	VSUBPS Z3, Z2, Z2
	VMULPS Z4, Z2, Z2
	VMOVUPS.Z (R11), K1, Z7
	VADDPS Z0, Z7, Z7
	VMOVUPS Z7, K1, (R11)
	VMOVUPS.Z (R10), K1, Z7
	VFMADD231PS Z0, Z2, Z7
	VMOVUPS Z7, K1, (R10)
pmdone:
	VZEROUPPER
	RET

// func rmsScaleAVX512(out, x, w *float32, n int, s float32)
// out = x*s*w (RMSNorm's output; normAffine without the mean and bias)
TEXT ·rmsScaleAVX512(SB), NOSPLIT, $0-36
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), R8
	MOVQ n+24(FP), CX
	VBROADCASTSS s+32(FP), Z4
rsloop:
	CMPQ CX, $16
	JLT rstail
	VMOVUPS (SI), Z0
	VMULPS Z4, Z0, Z0
	VMULPS (R8), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	ADDQ $64, R8
	SUBQ $16, CX
	JMP rsloop
rstail:
	TESTQ CX, CX
	JZ rsdone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z (R8), K1, Z1
	VMULPS Z4, Z0, Z0
	VMULPS Z1, Z0, Z0
	VMOVUPS Z0, K1, (DI)
rsdone:
	VZEROUPPER
	RET

// func rmsBwdParamsAVX512(dw, dout, x *float32, n int, s float32)
// dw += norm*d, norm = x*s (lnBwdParams without the mean and db).
TEXT ·rmsBwdParamsAVX512(SB), NOSPLIT, $0-36
	MOVQ dw+0(FP), R10
	MOVQ dout+8(FP), DX
	MOVQ x+16(FP), SI
	MOVQ n+24(FP), CX
	VBROADCASTSS s+32(FP), Z4
rploop:
	CMPQ CX, $16
	JLT rptail
	VMOVUPS (DX), Z0
	VMOVUPS (SI), Z2
	VMULPS Z4, Z2, Z2
	VMOVUPS (R10), Z7
	VFMADD231PS Z0, Z2, Z7
	VMOVUPS Z7, (R10)
	ADDQ $64, R10
	ADDQ $64, DX
	ADDQ $64, SI
	SUBQ $16, CX
	JMP rploop
rptail:
	TESTQ CX, CX
	JZ rpdone
	TAILMASK
	VMOVUPS.Z (DX), K1, Z0
	VMOVUPS.Z (SI), K1, Z2
	VMULPS Z4, Z2, Z2
	VMOVUPS.Z (R10), K1, Z7
	VFMADD231PS Z0, Z2, Z7
	VMOVUPS Z7, K1, (R10)
rpdone:
	VZEROUPPER
	RET
