//go:build amd64

#include "textflag.h"

// Constants of the exponential (Cephes expf): clamp bounds, log2(e), ln(2)
// split in a high part exact in float32 and a low correction, and the
// polynomial for exp(r) - 1 - r on |r| <= ln(2)/2. Then the GELU constants.
DATA expc<>+0(SB)/4, $88.72283		// 0: hi clamp
DATA expc<>+4(SB)/4, $-87.33654		// 4: lo clamp (smallest normal)
DATA expc<>+8(SB)/4, $1.44269504	// 8: log2(e)
DATA expc<>+12(SB)/4, $0.693359375	// 12: ln2 hi
DATA expc<>+16(SB)/4, $-2.12194440e-4	// 16: ln2 lo
DATA expc<>+20(SB)/4, $1.9875691500e-4	// 20: p0
DATA expc<>+24(SB)/4, $1.3981999507e-3	// 24: p1
DATA expc<>+28(SB)/4, $8.3334519073e-3	// 28: p2
DATA expc<>+32(SB)/4, $4.1665795894e-2	// 32: p3
DATA expc<>+36(SB)/4, $1.6666665459e-1	// 36: p4
DATA expc<>+40(SB)/4, $5.0000001201e-1	// 40: p5
DATA expc<>+44(SB)/4, $1.0		// 44: one
DATA expc<>+48(SB)/4, $-1.5957691216	// 48: a = -2*sqrt(2/pi)
DATA expc<>+52(SB)/4, $-0.0713548162	// 52: b = -2*sqrt(2/pi)*0.044715
DATA expc<>+56(SB)/4, $0.7978845608	// 56: s = sqrt(2/pi)
DATA expc<>+60(SB)/4, $0.1070322243	// 60: 3*0.044715*sqrt(2/pi)
GLOBL expc<>(SB), RODATA|NOPTR, $64

// EXPCONSTS loads the exponential's constants into Z19..Z31.
#define EXPCONSTS \
	VBROADCASTSS expc<>+44(SB), Z19 \
	VBROADCASTSS expc<>+8(SB), Z20 \
	VBROADCASTSS expc<>+12(SB), Z21 \
	VBROADCASTSS expc<>+16(SB), Z22 \
	VBROADCASTSS expc<>+4(SB), Z24 \
	VBROADCASTSS expc<>+0(SB), Z25 \
	VBROADCASTSS expc<>+20(SB), Z26 \
	VBROADCASTSS expc<>+24(SB), Z27 \
	VBROADCASTSS expc<>+28(SB), Z28 \
	VBROADCASTSS expc<>+32(SB), Z29 \
	VBROADCASTSS expc<>+36(SB), Z30 \
	VBROADCASTSS expc<>+40(SB), Z31

// EXP replaces Z0 by exp(Z0), using Z1..Z3:
// n = round(x*log2e); r = x - n*ln2; exp(x) = (1 + r + r^2*p(r)) * 2^n.
#define EXP \
	VMINPS Z25, Z0, Z0 \
	VMAXPS Z24, Z0, Z0 \
	VMULPS Z20, Z0, Z1 \
	VRNDSCALEPS $0, Z1, Z1 \
	VFNMADD231PS Z21, Z1, Z0 \
	VFNMADD231PS Z22, Z1, Z0 \
	VMOVAPS Z26, Z2 \
	VFMADD213PS Z27, Z0, Z2 \
	VFMADD213PS Z28, Z0, Z2 \
	VFMADD213PS Z29, Z0, Z2 \
	VFMADD213PS Z30, Z0, Z2 \
	VFMADD213PS Z31, Z0, Z2 \
	VMULPS Z0, Z0, Z3 \
	VFMADD213PS Z0, Z3, Z2 \
	VADDPS Z19, Z2, Z2 \
	VSCALEFPS Z1, Z2, Z0

// TAILMASK sets K1 to the low CX bits (CX in 1..15), using AX.
#define TAILMASK \
	MOVL $1, AX \
	SHLL CX, AX \
	DECL AX \
	KMOVW AX, K1

// func expShiftSumAVX512(x *float32, n int, shift float32) float32
TEXT ·expShiftSumAVX512(SB), NOSPLIT, $0-28
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS shift+16(FP), Z18
	EXPCONSTS
	VXORPS Z17, Z17, Z17

esloop:
	CMPQ CX, $16
	JLT estail
	VMOVUPS (SI), Z0
	VSUBPS Z18, Z0, Z0
	EXP
	VMOVUPS Z0, (SI)
	VADDPS Z0, Z17, Z17
	ADDQ $64, SI
	SUBQ $16, CX
	JMP esloop

estail:
	TESTQ CX, CX
	JZ esdone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z0
	VSUBPS Z18, Z0, Z0
	EXP
	VMOVUPS Z0, K1, (SI)
	VADDPS Z0, Z17, K1, Z17

esdone:
	VMOVAPS Z17, Z0
	VEXTRACTF64X4 $1, Z0, Y1
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	MOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// GELUFWD computes Z0 = gelu(Z4) = x / (1 + exp(x*(a + b*x^2))), using Z0..Z3.
#define GELUFWD \
	VMULPS Z4, Z4, Z0 \
	VFMADD213PS Z15, Z14, Z0 \
	VMULPS Z4, Z0, Z0 \
	EXP \
	VADDPS Z19, Z0, Z0 \
	VDIVPS Z0, Z4, Z0

// func geluTanhAVX512(out, x *float32, n int)
TEXT ·geluTanhAVX512(SB), NOSPLIT, $0-24
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	EXPCONSTS
	VBROADCASTSS expc<>+48(SB), Z15
	VBROADCASTSS expc<>+52(SB), Z14

gfloop:
	CMPQ CX, $16
	JLT gftail
	VMOVUPS (SI), Z4
	GELUFWD
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JMP gfloop

gftail:
	TESTQ CX, CX
	JZ gfdone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z4
	GELUFWD
	VMOVUPS Z0, K1, (DI)

gfdone:
	VZEROUPPER
	RET

// func geluTanhBiasAVX512(out, x, b *float32, n int)
// x[i] += b[i] (stored back), then out[i] = gelu(x[i]): the bias add and
// the activation in one pass over x.
TEXT ·geluTanhBiasAVX512(SB), NOSPLIT, $0-32
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ n+24(FP), CX
	EXPCONSTS
	VBROADCASTSS expc<>+48(SB), Z15
	VBROADCASTSS expc<>+52(SB), Z14

gzloop:
	CMPQ CX, $16
	JLT gztail
	VMOVUPS (SI), Z4
	VADDPS (DX), Z4, Z4
	VMOVUPS Z4, (SI)
	GELUFWD
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	SUBQ $16, CX
	JMP gzloop

gztail:
	TESTQ CX, CX
	JZ gzdone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z4
	VMOVUPS.Z (DX), K1, Z5
	VADDPS Z5, Z4, Z4
	VMOVUPS Z4, K1, (SI)
	GELUFWD
	VMOVUPS Z0, K1, (DI)

gzdone:
	VZEROUPPER
	RET

// GELUBWD computes Z8 = dout(Z9) * gelu'(x=Z4):
// sig = 1/(1+exp(-2u)); gelu' = sig + 2*x*sig*(1-sig)*u', u' = s + 3cs*x^2.
#define GELUBWD \
	VMULPS Z4, Z4, Z5 \
	VMOVAPS Z5, Z0 \
	VFMADD213PS Z15, Z14, Z0 \
	VMULPS Z4, Z0, Z0 \
	EXP \
	VADDPS Z19, Z0, Z0 \
	VDIVPS Z0, Z19, Z6 \
	VSUBPS Z6, Z19, Z7 \
	VMOVAPS Z5, Z8 \
	VFMADD213PS Z12, Z13, Z8 \
	VMULPS Z4, Z8, Z8 \
	VMULPS Z7, Z8, Z8 \
	VMULPS Z6, Z8, Z8 \
	VADDPS Z8, Z8, Z8 \
	VADDPS Z6, Z8, Z8 \
	VMULPS Z9, Z8, Z8

// func geluTanhBackwardAVX512(dx, x, dout *float32, n int)
TEXT ·geluTanhBackwardAVX512(SB), NOSPLIT, $0-32
	MOVQ dx+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ dout+16(FP), DX
	MOVQ n+24(FP), CX
	EXPCONSTS
	VBROADCASTSS expc<>+48(SB), Z15
	VBROADCASTSS expc<>+52(SB), Z14
	VBROADCASTSS expc<>+56(SB), Z12
	VBROADCASTSS expc<>+60(SB), Z13

gbloop:
	CMPQ CX, $16
	JLT gbtail
	VMOVUPS (SI), Z4
	VMOVUPS (DX), Z9
	GELUBWD
	VMOVUPS Z8, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	SUBQ $16, CX
	JMP gbloop

gbtail:
	TESTQ CX, CX
	JZ gbdone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z4
	VMOVUPS.Z (DX), K1, Z9
	GELUBWD
	VMOVUPS Z8, K1, (DI)

gbdone:
	VZEROUPPER
	RET

// func geluTanhBackwardBiasAVX512(dx, x, dout, db *float32, n int)
// dx[i] = dout[i]*gelu'(x[i]) as geluTanhBackwardAVX512, then db[i] += dx[i]:
// one row's share of the bias gradient in the same pass.
TEXT ·geluTanhBackwardBiasAVX512(SB), NOSPLIT, $0-40
	MOVQ dx+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ dout+16(FP), DX
	MOVQ db+24(FP), BX
	MOVQ n+32(FP), CX
	EXPCONSTS
	VBROADCASTSS expc<>+48(SB), Z15
	VBROADCASTSS expc<>+52(SB), Z14
	VBROADCASTSS expc<>+56(SB), Z12
	VBROADCASTSS expc<>+60(SB), Z13

gdloop:
	CMPQ CX, $16
	JLT gdtail
	VMOVUPS (SI), Z4
	VMOVUPS (DX), Z9
	GELUBWD
	VMOVUPS Z8, (DI)
	VADDPS (BX), Z8, Z8
	VMOVUPS Z8, (BX)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	ADDQ $64, BX
	SUBQ $16, CX
	JMP gdloop

gdtail:
	TESTQ CX, CX
	JZ gddone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z4
	VMOVUPS.Z (DX), K1, Z9
	GELUBWD
	VMOVUPS Z8, K1, (DI)
	VMOVUPS.Z (BX), K1, Z10
	VADDPS Z10, Z8, Z8
	VMOVUPS Z8, K1, (BX)

gddone:
	VZEROUPPER
	RET

// ADAMW updates p=Z3, m=Z1, v=Z2 from g=Z0, in the portable loop's order
// (no fused multiply-adds), using Z4..Z8.
#define ADAMW \
	VMULPS Z1, Z20, Z4 \
	VMULPS Z0, Z21, Z5 \
	VADDPS Z5, Z4, Z1 \
	VMULPS Z0, Z23, Z5 \
	VMULPS Z0, Z5, Z5 \
	VMULPS Z2, Z22, Z4 \
	VADDPS Z5, Z4, Z2 \
	VSQRTPS Z2, Z6 \
	VMULPS Z26, Z6, Z6 \
	VADDPS Z24, Z6, Z6 \
	VMULPS Z27, Z3, Z7 \
	VMULPS Z1, Z25, Z8 \
	VDIVPS Z6, Z8, Z8 \
	VSUBPS Z8, Z7, Z3

// func adamwAVX512(p, grad, m, v *float32, n int, s *AdamWStep, gradScale float32)
TEXT ·adamwAVX512(SB), NOSPLIT, $0-52
	MOVQ p+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ m+16(FP), R8
	MOVQ v+24(FP), R9
	MOVQ n+32(FP), CX
	MOVQ s+40(FP), DX
	VBROADCASTSS 0(DX), Z20  // beta1
	VBROADCASTSS 4(DX), Z21  // 1-beta1
	VBROADCASTSS 8(DX), Z22  // beta2
	VBROADCASTSS 12(DX), Z23 // 1-beta2
	VBROADCASTSS 16(DX), Z24 // eps
	VBROADCASTSS 20(DX), Z25 // step size
	VBROADCASTSS 24(DX), Z26 // 1/sqrt(bc2)
	VBROADCASTSS 28(DX), Z27 // decay
	VBROADCASTSS gradScale+48(FP), Z28

awloop:
	CMPQ CX, $16
	JLT awtail
	VMOVUPS (SI), Z0
	VMULPS Z28, Z0, Z0
	VMOVUPS (R8), Z1
	VMOVUPS (R9), Z2
	VMOVUPS (DI), Z3
	ADAMW
	VMOVUPS Z1, (R8)
	VMOVUPS Z2, (R9)
	VMOVUPS Z3, (DI)
	ADDQ $64, SI
	ADDQ $64, R8
	ADDQ $64, R9
	ADDQ $64, DI
	SUBQ $16, CX
	JMP awloop

awtail:
	TESTQ CX, CX
	JZ awdone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z0
	VMULPS Z28, Z0, Z0
	VMOVUPS.Z (R8), K1, Z1
	VMOVUPS.Z (R9), K1, Z2
	VMOVUPS.Z (DI), K1, Z3
	ADAMW
	VMOVUPS Z1, K1, (R8)
	VMOVUPS Z2, K1, (R9)
	VMOVUPS Z3, K1, (DI)

awdone:
	VZEROUPPER
	RET

// SWIGLUFWD computes Z0 = silu(g=Z4) * up(Z5) = g/(1+exp(-g)) * up, using
// Z0..Z3 and Z16 (zero).
#define SWIGLUFWD \
	VSUBPS Z4, Z16, Z0 \
	EXP \
	VADDPS Z19, Z0, Z0 \
	VDIVPS Z0, Z4, Z0 \
	VMULPS Z5, Z0, Z0

// func swigluAVX512(out, gate, up *float32, n int)
TEXT ·swigluAVX512(SB), NOSPLIT, $0-32
	MOVQ out+0(FP), DI
	MOVQ gate+8(FP), SI
	MOVQ up+16(FP), DX
	MOVQ n+24(FP), CX
	EXPCONSTS
	VXORPS Z16, Z16, Z16

sfloop:
	CMPQ CX, $16
	JLT sftail
	VMOVUPS (SI), Z4
	VMOVUPS (DX), Z5
	SWIGLUFWD
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	SUBQ $16, CX
	JMP sfloop

sftail:
	TESTQ CX, CX
	JZ sfdone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z4
	VMOVUPS.Z (DX), K1, Z5
	SWIGLUFWD
	VMOVUPS Z0, K1, (DI)

sfdone:
	VZEROUPPER
	RET

// SWIGLUBWD computes, from g=Z4, up=Z5 and dout=Z9, Z10 = dup = dout*silu
// and Z8 = dgate = dout*up*(s + silu*(1-s)), with e = exp(-g), s = 1/(1+e),
// silu = g/(1+e) and 1-s as e*s (no cancellation when s is near 1); uses
// Z0..Z3, Z6, Z7 and Z16 (zero).
#define SWIGLUBWD \
	VSUBPS Z4, Z16, Z0 \
	EXP \
	VADDPS Z19, Z0, Z1 \
	VDIVPS Z1, Z19, Z6 \
	VDIVPS Z1, Z4, Z7 \
	VMULPS Z7, Z9, Z10 \
	VMULPS Z6, Z0, Z8 \
	VFMADD213PS Z6, Z7, Z8 \
	VMULPS Z5, Z9, Z1 \
	VMULPS Z1, Z8, Z8

// func swigluBackwardAVX512(dgate, dup, gate, up, dout *float32, n int)
TEXT ·swigluBackwardAVX512(SB), NOSPLIT, $0-48
	MOVQ dgate+0(FP), DI
	MOVQ dup+8(FP), R8
	MOVQ gate+16(FP), SI
	MOVQ up+24(FP), DX
	MOVQ dout+32(FP), BX
	MOVQ n+40(FP), CX
	EXPCONSTS
	VXORPS Z16, Z16, Z16

sbloop:
	CMPQ CX, $16
	JLT sbtail
	VMOVUPS (SI), Z4
	VMOVUPS (DX), Z5
	VMOVUPS (BX), Z9
	SWIGLUBWD
	VMOVUPS Z8, (DI)
	VMOVUPS Z10, (R8)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, BX
	ADDQ $64, DI
	ADDQ $64, R8
	SUBQ $16, CX
	JMP sbloop

sbtail:
	TESTQ CX, CX
	JZ sbdone
	TAILMASK
	VMOVUPS.Z (SI), K1, Z4
	VMOVUPS.Z (DX), K1, Z5
	VMOVUPS.Z (BX), K1, Z9
	SWIGLUBWD
	VMOVUPS Z8, K1, (DI)
	VMOVUPS Z10, K1, (R8)

sbdone:
	VZEROUPPER
	RET
