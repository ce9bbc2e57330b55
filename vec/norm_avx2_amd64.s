//go:build amd64

#include "textflag.h"
#include "avx2_amd64.h"

// AVX2+FMA versions of the LayerNorm row kernels in norm_amd64.s, with
// their bits. The sums keep the AVX-512 order: element i goes to lane
// i%16 (lanes 0-7 in one YMM accumulator, 8-15 in another), and the 16
// lanes are combined as HSUM16 below does for the AVX-512 code's ZMM. The
// element-wise kernels walk 8 floats at a time with the AVX-512 code's
// per-element instructions, then a masked tail (avx2_amd64.h).

// HSUM16 reduces the 16 lanes lo (0-7) and hi (8-15) into X0 (lane 0),
// using Y1/X1: lo+hi, then the two 128-bit halves, then two horizontal
// adds, as norm_amd64.s's HSUM does.
#define HSUM16(lo, hi) \
	VADDPS hi, lo, Y0 \
	VEXTRACTF128 $1, Y0, X1 \
	VADDPS X1, X0, X0 \
	VHADDPS X0, X0, X0 \
	VHADDPS X0, X0, X0

// func sumAVX2(x *float32, n int) float32
TEXT ·sumAVX2(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
sloop:
	CMPQ CX, $16
	JLT stail
	VADDPS (SI), Y6, Y6
	VADDPS 32(SI), Y7, Y7
	ADDQ $64, SI
	SUBQ $16, CX
	JMP sloop
stail:
	TESTQ CX, CX
	JZ sdone
	MASK16(Y10, Y11)
	VMASKMOVPS (SI), Y10, Y2
	VMASKMOVPS 32(SI), Y11, Y3
	VADDPS Y2, Y6, Y6
	VADDPS Y3, Y7, Y7
sdone:
	HSUM16(Y6, Y7)
	MOVSS X0, ret+16(FP)
	VZEROUPPER
	RET

// func sumSqDevAVX2(x *float32, n int, m float32) float32
// Tail lanes outside the mask are cleared after x-m, as AVX-512's merge
// mask leaves them zero.
TEXT ·sumSqDevAVX2(SB), NOSPLIT, $0-28
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS m+16(FP), Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
qloop:
	CMPQ CX, $16
	JLT qtail
	VMOVUPS (SI), Y2
	VMOVUPS 32(SI), Y3
	VSUBPS Y5, Y2, Y2
	VSUBPS Y5, Y3, Y3
	VFMADD231PS Y2, Y2, Y6
	VFMADD231PS Y3, Y3, Y7
	ADDQ $64, SI
	SUBQ $16, CX
	JMP qloop
qtail:
	TESTQ CX, CX
	JZ qdone
	MASK16(Y10, Y11)
	VMASKMOVPS (SI), Y10, Y2
	VMASKMOVPS 32(SI), Y11, Y3
	VSUBPS Y5, Y2, Y2
	VSUBPS Y5, Y3, Y3
	VANDPS Y10, Y2, Y2
	VANDPS Y11, Y3, Y3
	VFMADD231PS Y2, Y2, Y6
	VFMADD231PS Y3, Y3, Y7
qdone:
	HSUM16(Y6, Y7)
	MOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// AFFINE computes Y0 = (x-m)*s*w + b for x, w, b in Y0, Y1, Y2 (m, s in
// Y3, Y4), without fused multiply-adds, as normAffineAVX512.
#define AFFINE \
	VSUBPS Y3, Y0, Y0 \
	VMULPS Y4, Y0, Y0 \
	VMULPS Y1, Y0, Y0 \
	VADDPS Y2, Y0, Y0

// func normAffineAVX2(out, x, w, b *float32, n int, m, s float32)
// out = (x-m)*s*w + b
TEXT ·normAffineAVX2(SB), NOSPLIT, $0-48
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), R8
	MOVQ b+24(FP), R9
	MOVQ n+32(FP), CX
	VBROADCASTSS m+40(FP), Y3
	VBROADCASTSS s+44(FP), Y4
aloop:
	CMPQ CX, $8
	JLT atail
	VMOVUPS (SI), Y0
	VMOVUPS (R8), Y1
	VMOVUPS (R9), Y2
	AFFINE
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $32, R8
	ADDQ $32, R9
	SUBQ $8, CX
	JMP aloop
atail:
	TESTQ CX, CX
	JZ adone
	MASK8(Y10)
	VMASKMOVPS (SI), Y10, Y0
	VMASKMOVPS (R8), Y10, Y1
	VMASKMOVPS (R9), Y10, Y2
	AFFINE
	VMASKMOVPS Y0, Y10, (DI)
adone:
	VZEROUPPER
	RET

// DOTS adds dn = dout*w (dout, w in Y0, Y1) to dsum and dn*norm to nsum,
// norm = (x-m)*s for x in Y2 (m, s in Y3, Y4).
#define DOTS(dsum, nsum) \
	VMULPS Y1, Y0, Y0 \
	VSUBPS Y3, Y2, Y2 \
	VMULPS Y4, Y2, Y2 \
	VADDPS Y0, dsum, dsum \
	VFMADD231PS Y2, Y0, nsum

// func lnBwdDotsAVX2(dout, x, w *float32, n int, m, s float32) (dnSum, dnNormSum float32)
// dnSum = sum w*d ; dnNormSum = sum w*d*(x-m)*s. Lanes 0-7 of each 16
// sum in Y5 and Y7, lanes 8-15 in Y6 and Y8. In the tail, lanes outside
// the mask add dn = 0*0 (as the AVX-512 code's zeroed lanes do).
TEXT ·lnBwdDotsAVX2(SB), NOSPLIT, $0-48
	MOVQ dout+0(FP), DX
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), R8
	MOVQ n+24(FP), CX
	VBROADCASTSS m+32(FP), Y3
	VBROADCASTSS s+36(FP), Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
dloop:
	CMPQ CX, $16
	JLT dtail
	VMOVUPS (DX), Y0
	VMOVUPS (R8), Y1
	VMOVUPS (SI), Y2
	DOTS(Y5, Y7)
	VMOVUPS 32(DX), Y0
	VMOVUPS 32(R8), Y1
	VMOVUPS 32(SI), Y2
	DOTS(Y6, Y8)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, R8
	SUBQ $16, CX
	JMP dloop
dtail:
	TESTQ CX, CX
	JZ ddone
	MASK16(Y10, Y11)
	VMASKMOVPS (DX), Y10, Y0
	VMASKMOVPS (R8), Y10, Y1
	VMASKMOVPS (SI), Y10, Y2
	DOTS(Y5, Y7)
	VMASKMOVPS 32(DX), Y11, Y0
	VMASKMOVPS 32(R8), Y11, Y1
	VMASKMOVPS 32(SI), Y11, Y2
	DOTS(Y6, Y8)
ddone:
	HSUM16(Y5, Y6)
	MOVSS X0, dnSum+40(FP)
	HSUM16(Y7, Y8)
	MOVSS X0, dnNormSum+44(FP)
	VZEROUPPER
	RET

// LNNORM sets Y2 = norm = (x-m)*s for x in Y2 (m, s in Y3, Y4).
#define LNNORM \
	VSUBPS Y3, Y2, Y2 \
	VMULPS Y4, Y2, Y2

// LNPARAMS: Y7 = db + d and Y8 = dw + norm*d for d = Y0, norm = Y2,
// db and dw in Y7 and Y8.
#define LNPARAMS \
	VADDPS Y7, Y0, Y7 \
	VFMADD231PS Y0, Y2, Y8

// LNDX: Y9 = dinp + s*(w*d - dnMean - norm*dnNormMean) for d = Y0,
// w = Y1, norm = Y2, dinp in Y9 (s, dnMean, dnNormMean in Y4, Y5, Y6),
// using Y1.
#define LNDX \
	VMULPS Y1, Y0, Y1 \
	VSUBPS Y5, Y1, Y1 \
	VFNMADD231PS Y6, Y2, Y1 \
	VFMADD231PS Y1, Y4, Y9

// func lnBwdApplyAVX2(dinp, dw, db, dout, x, w *float32, n int, m, s, dnMean, dnNormMean float32)
// norm = (x-m)*s ; db += d ; dw += norm*d ; dinp += s*(w*d - dnMean - norm*dnNormMean)
TEXT ·lnBwdApplyAVX2(SB), NOSPLIT, $0-72
	MOVQ dinp+0(FP), DI
	MOVQ dw+8(FP), R10
	MOVQ db+16(FP), R11
	MOVQ dout+24(FP), DX
	MOVQ x+32(FP), SI
	MOVQ w+40(FP), R8
	MOVQ n+48(FP), CX
	VBROADCASTSS m+56(FP), Y3
	VBROADCASTSS s+60(FP), Y4
	VBROADCASTSS dnMean+64(FP), Y5
	VBROADCASTSS dnNormMean+68(FP), Y6
ploop:
	CMPQ CX, $8
	JLT ptail
	VMOVUPS (DX), Y0
	VMOVUPS (SI), Y2
	LNNORM
	VMOVUPS (R11), Y7
	VMOVUPS (R10), Y8
	LNPARAMS
	VMOVUPS Y7, (R11)
	VMOVUPS Y8, (R10)
	VMOVUPS (R8), Y1
	VMOVUPS (DI), Y9
	LNDX
	VMOVUPS Y9, (DI)
	ADDQ $32, DI
	ADDQ $32, R10
	ADDQ $32, R11
	ADDQ $32, DX
	ADDQ $32, SI
	ADDQ $32, R8
	SUBQ $8, CX
	JMP ploop
ptail:
	TESTQ CX, CX
	JZ pdone
	MASK8(Y10)
	VMASKMOVPS (DX), Y10, Y0
	VMASKMOVPS (SI), Y10, Y2
	LNNORM
	VMASKMOVPS (R11), Y10, Y7
	VMASKMOVPS (R10), Y10, Y8
	LNPARAMS
	VMASKMOVPS Y7, Y10, (R11)
	VMASKMOVPS Y8, Y10, (R10)
	VMASKMOVPS (R8), Y10, Y1
	VMASKMOVPS (DI), Y10, Y9
	LNDX
	VMASKMOVPS Y9, Y10, (DI)
pdone:
	VZEROUPPER
	RET

// func lnBwdDxAVX2(dinp, dout, x, w *float32, n int, m, s, dnMean, dnNormMean float32)
// The dinp half of lnBwdApplyAVX2, same instructions.
TEXT ·lnBwdDxAVX2(SB), NOSPLIT, $0-56
	MOVQ dinp+0(FP), DI
	MOVQ dout+8(FP), DX
	MOVQ x+16(FP), SI
	MOVQ w+24(FP), R8
	MOVQ n+32(FP), CX
	VBROADCASTSS m+40(FP), Y3
	VBROADCASTSS s+44(FP), Y4
	VBROADCASTSS dnMean+48(FP), Y5
	VBROADCASTSS dnNormMean+52(FP), Y6
dxloop:
	CMPQ CX, $8
	JLT dxtail
	VMOVUPS (DX), Y0
	VMOVUPS (SI), Y2
	LNNORM
	VMOVUPS (R8), Y1
	VMOVUPS (DI), Y9
	LNDX
	VMOVUPS Y9, (DI)
	ADDQ $32, DI
	ADDQ $32, DX
	ADDQ $32, SI
	ADDQ $32, R8
	SUBQ $8, CX
	JMP dxloop
dxtail:
	TESTQ CX, CX
	JZ dxdone
	MASK8(Y10)
	VMASKMOVPS (DX), Y10, Y0
	VMASKMOVPS (SI), Y10, Y2
	LNNORM
	VMASKMOVPS (R8), Y10, Y1
	VMASKMOVPS (DI), Y10, Y9
	LNDX
	VMASKMOVPS Y9, Y10, (DI)
dxdone:
	VZEROUPPER
	RET

// func lnBwdParamsAVX2(dw, db, dout, x *float32, n int, m, s float32)
// The dw/db half of lnBwdApplyAVX2, same instructions.
TEXT ·lnBwdParamsAVX2(SB), NOSPLIT, $0-48
	MOVQ dw+0(FP), R10
	MOVQ db+8(FP), R11
	MOVQ dout+16(FP), DX
	MOVQ x+24(FP), SI
	MOVQ n+32(FP), CX
	VBROADCASTSS m+40(FP), Y3
	VBROADCASTSS s+44(FP), Y4
pmloop:
	CMPQ CX, $8
	JLT pmtail
	VMOVUPS (DX), Y0
	VMOVUPS (SI), Y2
	LNNORM
	VMOVUPS (R11), Y7
	VMOVUPS (R10), Y8
	LNPARAMS
	VMOVUPS Y7, (R11)
	VMOVUPS Y8, (R10)
	ADDQ $32, R10
	ADDQ $32, R11
	ADDQ $32, DX
	ADDQ $32, SI
	SUBQ $8, CX
	JMP pmloop
pmtail:
	TESTQ CX, CX
	JZ pmdone
	MASK8(Y10)
	VMASKMOVPS (DX), Y10, Y0
	VMASKMOVPS (SI), Y10, Y2
	LNNORM
	VMASKMOVPS (R11), Y10, Y7
	VMASKMOVPS (R10), Y10, Y8
	LNPARAMS
	VMASKMOVPS Y7, Y10, (R11)
	VMASKMOVPS Y8, Y10, (R10)
pmdone:
	VZEROUPPER
	RET

// func rmsScaleAVX2(out, x, w *float32, n int, s float32)
// out = x*s*w, as rmsScaleAVX512.
TEXT ·rmsScaleAVX2(SB), NOSPLIT, $0-36
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), R8
	MOVQ n+24(FP), CX
	VBROADCASTSS s+32(FP), Y4
rsloop:
	CMPQ CX, $8
	JLT rstail
	VMOVUPS (SI), Y0
	VMULPS Y4, Y0, Y0
	VMULPS (R8), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $32, R8
	SUBQ $8, CX
	JMP rsloop
rstail:
	TESTQ CX, CX
	JZ rsdone
	MASK8(Y10)
	VMASKMOVPS (SI), Y10, Y0
	VMASKMOVPS (R8), Y10, Y1
	VMULPS Y4, Y0, Y0
	VMULPS Y1, Y0, Y0
	VMASKMOVPS Y0, Y10, (DI)
rsdone:
	VZEROUPPER
	RET

// func rmsBwdParamsAVX2(dw, dout, x *float32, n int, s float32)
// dw += norm*d, norm = x*s, as rmsBwdParamsAVX512.
TEXT ·rmsBwdParamsAVX2(SB), NOSPLIT, $0-36
	MOVQ dw+0(FP), R10
	MOVQ dout+8(FP), DX
	MOVQ x+16(FP), SI
	MOVQ n+24(FP), CX
	VBROADCASTSS s+32(FP), Y4
rploop:
	CMPQ CX, $8
	JLT rptail
	VMOVUPS (DX), Y0
	VMOVUPS (SI), Y2
	VMULPS Y4, Y2, Y2
	VMOVUPS (R10), Y8
	VFMADD231PS Y0, Y2, Y8
	VMOVUPS Y8, (R10)
	ADDQ $32, R10
	ADDQ $32, DX
	ADDQ $32, SI
	SUBQ $8, CX
	JMP rploop
rptail:
	TESTQ CX, CX
	JZ rpdone
	MASK8(Y10)
	VMASKMOVPS (DX), Y10, Y0
	VMASKMOVPS (SI), Y10, Y2
	VMULPS Y4, Y2, Y2
	VMASKMOVPS (R10), Y10, Y8
	VFMADD231PS Y0, Y2, Y8
	VMASKMOVPS Y8, Y10, (R10)
rpdone:
	VZEROUPPER
	RET
