//go:build amd64

#include "textflag.h"
#include "avx2_amd64.h"

// AVX2+FMA versions of the kernels in vec_amd64.s: 8 floats per YMM
// register instead of 16 per ZMM, the same instructions in the same order,
// so every element comes out with the AVX-512 kernel's bits. Where the
// AVX-512 code has what AVX2 lacks:
//   - masked tails: VMASKMOVPS with a lane mask from avx2_amd64.h, so
//     nothing outside [0, n) is read or written;
//   - VSCALEFPS (p * 2^n): two exact powers of two built in the exponent
//     field, 2^(n>>1) and 2^(n-(n>>1)), each a normal float for the
//     clamped n in [-126, 128]; p*2^(n>>1) is exact, so the second product
//     rounds once, as VSCALEFPS does (subnormal results included);
//   - 16-lane sums: two YMM accumulators, lanes 0-7 and 8-15, combined as
//     the AVX-512 code combines the halves of its ZMM.
// AVX2 has no embedded broadcast and only 16 vector registers, so most
// constants are read from memory, one 32-byte row of 8 copies each.

// ROW8 fills the 32-byte row at off with 8 copies of the 4-byte value v.
#define ROW8(off, v) \
	DATA avx2c<>+(off)(SB)/4, v \
	DATA avx2c<>+(off+4)(SB)/4, v \
	DATA avx2c<>+(off+8)(SB)/4, v \
	DATA avx2c<>+(off+12)(SB)/4, v \
	DATA avx2c<>+(off+16)(SB)/4, v \
	DATA avx2c<>+(off+20)(SB)/4, v \
	DATA avx2c<>+(off+24)(SB)/4, v \
	DATA avx2c<>+(off+28)(SB)/4, v

ROW8(0, $88.72283)         // hi clamp
ROW8(32, $-87.33654)       // lo clamp (smallest normal)
ROW8(64, $1.44269504)      // log2(e)
ROW8(96, $0.693359375)     // ln2 hi
ROW8(128, $-2.12194440e-4) // ln2 lo
ROW8(160, $1.9875691500e-4) // p0
ROW8(192, $1.3981999507e-3) // p1
ROW8(224, $8.3334519073e-3) // p2
ROW8(256, $4.1665795894e-2) // p3
ROW8(288, $1.6666665459e-1) // p4
ROW8(320, $5.0000001201e-1) // p5
ROW8(352, $1.0)             // one
ROW8(384, $-1.5957691216)   // a = -2*sqrt(2/pi)
ROW8(416, $-0.0713548162)   // b = -2*sqrt(2/pi)*0.044715
ROW8(448, $0.7978845608)    // s = sqrt(2/pi)
ROW8(480, $0.1070322243)    // 3*0.044715*sqrt(2/pi)
ROW8(512, $127)             // exponent bias (int32)
GLOBL avx2c<>(SB), RODATA|NOPTR, $544

// EXP replaces Y0 by exp(Y0), using Y1..Y3:
// n = round(x*log2e); r = x - n*ln2; exp(x) = (1 + r + r^2*p(r)) * 2^n.
#define EXP \
	VMINPS avx2c<>+0(SB), Y0, Y0 \
	VMAXPS avx2c<>+32(SB), Y0, Y0 \
	VMULPS avx2c<>+64(SB), Y0, Y1 \
	VROUNDPS $0, Y1, Y1 \
	VFNMADD231PS avx2c<>+96(SB), Y1, Y0 \
	VFNMADD231PS avx2c<>+128(SB), Y1, Y0 \
	VMOVUPS avx2c<>+160(SB), Y2 \
	VFMADD213PS avx2c<>+192(SB), Y0, Y2 \
	VFMADD213PS avx2c<>+224(SB), Y0, Y2 \
	VFMADD213PS avx2c<>+256(SB), Y0, Y2 \
	VFMADD213PS avx2c<>+288(SB), Y0, Y2 \
	VFMADD213PS avx2c<>+320(SB), Y0, Y2 \
	VMULPS Y0, Y0, Y3 \
	VFMADD213PS Y0, Y3, Y2 \
	VADDPS avx2c<>+352(SB), Y2, Y2 \
	VCVTPS2DQ Y1, Y1 \
	VPSRAD $1, Y1, Y3 \
	VPSUBD Y3, Y1, Y1 \
	VPADDD avx2c<>+512(SB), Y3, Y3 \
	VPADDD avx2c<>+512(SB), Y1, Y1 \
	VPSLLD $23, Y3, Y3 \
	VPSLLD $23, Y1, Y1 \
	VMULPS Y3, Y2, Y2 \
	VMULPS Y1, Y2, Y0

// EXPSHIFT replaces the 8 floats at off(SI) by exp(x-shift) (shift in Y9)
// and adds them to acc.
#define EXPSHIFT(off, acc) \
	VMOVUPS off(SI), Y0 \
	VSUBPS Y9, Y0, Y0 \
	EXP \
	VMOVUPS Y0, off(SI) \
	VADDPS Y0, acc, acc

// EXPSHIFTMASK is EXPSHIFT on the lanes of mask only. The others add +0,
// which leaves the (never -0) sums unchanged, as AVX-512's merge-masked
// add does.
#define EXPSHIFTMASK(off, mask, acc) \
	VMASKMOVPS off(SI), mask, Y0 \
	VSUBPS Y9, Y0, Y0 \
	EXP \
	VMASKMOVPS Y0, mask, off(SI) \
	VANDPS mask, Y0, Y0 \
	VADDPS Y0, acc, acc

// func expShiftSumAVX2(x *float32, n int, shift float32) float32
// Lanes 0-7 of each 16 floats sum in Y10, lanes 8-15 in Y11.
TEXT ·expShiftSumAVX2(SB), NOSPLIT, $0-28
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS shift+16(FP), Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

esloop:
	CMPQ CX, $16
	JLT estail
	EXPSHIFT(0, Y10)
	EXPSHIFT(32, Y11)
	ADDQ $64, SI
	SUBQ $16, CX
	JMP esloop

estail:
	TESTQ CX, CX
	JZ esdone
	MASK16(Y12, Y13)
	EXPSHIFTMASK(0, Y12, Y10)
	EXPSHIFTMASK(32, Y13, Y11)

esdone:
	VADDPS Y11, Y10, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	MOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// The GELU kernels keep one in Y12, 3*0.044715*sqrt(2/pi) in Y14 and
// b = -2*sqrt(2/pi)*0.044715 in Y15; Y13 is the tail mask.
#define GELUCONSTS \
	VMOVUPS avx2c<>+352(SB), Y12 \
	VMOVUPS avx2c<>+480(SB), Y14 \
	VMOVUPS avx2c<>+416(SB), Y15

// GELUFWD computes Y0 = gelu(Y4) = x / (1 + exp(x*(a + b*x^2))), using Y0..Y3.
#define GELUFWD \
	VMULPS Y4, Y4, Y0 \
	VFMADD213PS avx2c<>+384(SB), Y15, Y0 \
	VMULPS Y4, Y0, Y0 \
	EXP \
	VADDPS Y12, Y0, Y0 \
	VDIVPS Y0, Y4, Y0

// func geluTanhAVX2(out, x *float32, n int)
TEXT ·geluTanhAVX2(SB), NOSPLIT, $0-24
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	GELUCONSTS

gfloop:
	CMPQ CX, $8
	JLT gftail
	VMOVUPS (SI), Y4
	GELUFWD
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP gfloop

gftail:
	TESTQ CX, CX
	JZ gfdone
	MASK8(Y13)
	VMASKMOVPS (SI), Y13, Y4
	GELUFWD
	VMASKMOVPS Y0, Y13, (DI)

gfdone:
	VZEROUPPER
	RET

// func geluTanhBiasAVX2(out, x, b *float32, n int)
// x[i] += b[i] (stored back), then out[i] = gelu(x[i]).
TEXT ·geluTanhBiasAVX2(SB), NOSPLIT, $0-32
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ n+24(FP), CX
	GELUCONSTS

gzloop:
	CMPQ CX, $8
	JLT gztail
	VMOVUPS (SI), Y4
	VADDPS (DX), Y4, Y4
	VMOVUPS Y4, (SI)
	GELUFWD
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	SUBQ $8, CX
	JMP gzloop

gztail:
	TESTQ CX, CX
	JZ gzdone
	MASK8(Y13)
	VMASKMOVPS (SI), Y13, Y4
	VMASKMOVPS (DX), Y13, Y5
	VADDPS Y5, Y4, Y4
	VMASKMOVPS Y4, Y13, (SI)
	GELUFWD
	VMASKMOVPS Y0, Y13, (DI)

gzdone:
	VZEROUPPER
	RET

// GELUBWD computes Y8 = dout(Y9) * gelu'(x=Y4), using Y0..Y7:
// sig = 1/(1+exp(-2u)); gelu' = sig + 2*x*sig*(1-sig)*u', u' = s + 3cs*x^2.
#define GELUBWD \
	VMULPS Y4, Y4, Y5 \
	VMOVAPS Y5, Y0 \
	VFMADD213PS avx2c<>+384(SB), Y15, Y0 \
	VMULPS Y4, Y0, Y0 \
	EXP \
	VADDPS Y12, Y0, Y0 \
	VDIVPS Y0, Y12, Y6 \
	VSUBPS Y6, Y12, Y7 \
	VMOVAPS Y5, Y8 \
	VFMADD213PS avx2c<>+448(SB), Y14, Y8 \
	VMULPS Y4, Y8, Y8 \
	VMULPS Y7, Y8, Y8 \
	VMULPS Y6, Y8, Y8 \
	VADDPS Y8, Y8, Y8 \
	VADDPS Y6, Y8, Y8 \
	VMULPS Y9, Y8, Y8

// func geluTanhBackwardAVX2(dx, x, dout *float32, n int)
TEXT ·geluTanhBackwardAVX2(SB), NOSPLIT, $0-32
	MOVQ dx+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ dout+16(FP), DX
	MOVQ n+24(FP), CX
	GELUCONSTS

gbloop:
	CMPQ CX, $8
	JLT gbtail
	VMOVUPS (SI), Y4
	VMOVUPS (DX), Y9
	GELUBWD
	VMOVUPS Y8, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	SUBQ $8, CX
	JMP gbloop

gbtail:
	TESTQ CX, CX
	JZ gbdone
	MASK8(Y13)
	VMASKMOVPS (SI), Y13, Y4
	VMASKMOVPS (DX), Y13, Y9
	GELUBWD
	VMASKMOVPS Y8, Y13, (DI)

gbdone:
	VZEROUPPER
	RET

// func geluTanhBackwardBiasAVX2(dx, x, dout, db *float32, n int)
// dx[i] = dout[i]*gelu'(x[i]) as geluTanhBackwardAVX2, then db[i] += dx[i].
TEXT ·geluTanhBackwardBiasAVX2(SB), NOSPLIT, $0-40
	MOVQ dx+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ dout+16(FP), DX
	MOVQ db+24(FP), BX
	MOVQ n+32(FP), CX
	GELUCONSTS

gdloop:
	CMPQ CX, $8
	JLT gdtail
	VMOVUPS (SI), Y4
	VMOVUPS (DX), Y9
	GELUBWD
	VMOVUPS Y8, (DI)
	VADDPS (BX), Y8, Y8
	VMOVUPS Y8, (BX)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	ADDQ $32, BX
	SUBQ $8, CX
	JMP gdloop

gdtail:
	TESTQ CX, CX
	JZ gddone
	MASK8(Y13)
	VMASKMOVPS (SI), Y13, Y4
	VMASKMOVPS (DX), Y13, Y9
	GELUBWD
	VMASKMOVPS Y8, Y13, (DI)
	VMASKMOVPS (BX), Y13, Y10
	VADDPS Y10, Y8, Y8
	VMASKMOVPS Y8, Y13, (BX)

gddone:
	VZEROUPPER
	RET

// ADAMW updates p=Y3, m=Y1, v=Y2 from g=Y0 in the portable loop's order
// (no fused multiply-adds), using Y4..Y6; the step's scalars are in
// Y7..Y14 (see adamwAVX2).
#define ADAMW \
	VMULPS Y1, Y7, Y4 \
	VMULPS Y0, Y8, Y5 \
	VADDPS Y5, Y4, Y1 \
	VMULPS Y0, Y10, Y5 \
	VMULPS Y0, Y5, Y5 \
	VMULPS Y2, Y9, Y4 \
	VADDPS Y5, Y4, Y2 \
	VSQRTPS Y2, Y6 \
	VMULPS Y13, Y6, Y6 \
	VADDPS Y11, Y6, Y6 \
	VMULPS Y14, Y3, Y3 \
	VMULPS Y1, Y12, Y4 \
	VDIVPS Y6, Y4, Y4 \
	VSUBPS Y4, Y3, Y3

// func adamwAVX2(p, grad, m, v *float32, n int, s *AdamWStep, gradScale float32)
TEXT ·adamwAVX2(SB), NOSPLIT, $0-52
	MOVQ p+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ m+16(FP), R8
	MOVQ v+24(FP), R9
	MOVQ n+32(FP), CX
	MOVQ s+40(FP), DX
	VBROADCASTSS 0(DX), Y7   // beta1
	VBROADCASTSS 4(DX), Y8   // 1-beta1
	VBROADCASTSS 8(DX), Y9   // beta2
	VBROADCASTSS 12(DX), Y10 // 1-beta2
	VBROADCASTSS 16(DX), Y11 // eps
	VBROADCASTSS 20(DX), Y12 // step size
	VBROADCASTSS 24(DX), Y13 // 1/sqrt(bc2)
	VBROADCASTSS 28(DX), Y14 // decay
	VBROADCASTSS gradScale+48(FP), Y15

awloop:
	CMPQ CX, $8
	JLT awtail
	VMOVUPS (SI), Y0
	VMULPS Y15, Y0, Y0
	VMOVUPS (R8), Y1
	VMOVUPS (R9), Y2
	VMOVUPS (DI), Y3
	ADAMW
	VMOVUPS Y1, (R8)
	VMOVUPS Y2, (R9)
	VMOVUPS Y3, (DI)
	ADDQ $32, SI
	ADDQ $32, R8
	ADDQ $32, R9
	ADDQ $32, DI
	SUBQ $8, CX
	JMP awloop

awtail:
	TESTQ CX, CX
	JZ awdone
	// The mask lives in Y15's place once the gradient is scaled: no
	// register is free for it.
	MASK8(Y4)
	VMASKMOVPS (SI), Y4, Y0
	VMULPS Y15, Y0, Y0
	VMOVAPS Y4, Y15
	VMASKMOVPS (R8), Y15, Y1
	VMASKMOVPS (R9), Y15, Y2
	VMASKMOVPS (DI), Y15, Y3
	ADAMW
	VMASKMOVPS Y1, Y15, (R8)
	VMASKMOVPS Y2, Y15, (R9)
	VMASKMOVPS Y3, Y15, (DI)

awdone:
	VZEROUPPER
	RET

// SWIGLUFWD computes Y0 = silu(g=Y4) * up(Y5) = g/(1+exp(-g)) * up, using
// Y0..Y3, Y12 (one) and Y11 (zero), as the AVX-512 kernel.
#define SWIGLUFWD \
	VSUBPS Y4, Y11, Y0 \
	EXP \
	VADDPS Y12, Y0, Y0 \
	VDIVPS Y0, Y4, Y0 \
	VMULPS Y5, Y0, Y0

// func swigluAVX2(out, gate, up *float32, n int)
TEXT ·swigluAVX2(SB), NOSPLIT, $0-32
	MOVQ out+0(FP), DI
	MOVQ gate+8(FP), SI
	MOVQ up+16(FP), DX
	MOVQ n+24(FP), CX
	VMOVUPS avx2c<>+352(SB), Y12
	VXORPS Y11, Y11, Y11

sfloop:
	CMPQ CX, $8
	JLT sftail
	VMOVUPS (SI), Y4
	VMOVUPS (DX), Y5
	SWIGLUFWD
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	SUBQ $8, CX
	JMP sfloop

sftail:
	TESTQ CX, CX
	JZ sfdone
	MASK8(Y13)
	VMASKMOVPS (SI), Y13, Y4
	VMASKMOVPS (DX), Y13, Y5
	SWIGLUFWD
	VMASKMOVPS Y0, Y13, (DI)

sfdone:
	VZEROUPPER
	RET

// SWIGLUBWD computes, from g=Y4, up=Y5 and dout=Y9, Y10 = dup = dout*silu
// and Y8 = dgate = dout*up*(s + silu*e*s), as the AVX-512 kernel; uses
// Y0..Y3, Y6, Y7, Y12 (one) and Y11 (zero).
#define SWIGLUBWD \
	VSUBPS Y4, Y11, Y0 \
	EXP \
	VADDPS Y12, Y0, Y1 \
	VDIVPS Y1, Y12, Y6 \
	VDIVPS Y1, Y4, Y7 \
	VMULPS Y7, Y9, Y10 \
	VMULPS Y6, Y0, Y8 \
	VFMADD213PS Y6, Y7, Y8 \
	VMULPS Y5, Y9, Y1 \
	VMULPS Y1, Y8, Y8

// func swigluBackwardAVX2(dgate, dup, gate, up, dout *float32, n int)
TEXT ·swigluBackwardAVX2(SB), NOSPLIT, $0-48
	MOVQ dgate+0(FP), DI
	MOVQ dup+8(FP), R8
	MOVQ gate+16(FP), SI
	MOVQ up+24(FP), DX
	MOVQ dout+32(FP), BX
	MOVQ n+40(FP), CX
	VMOVUPS avx2c<>+352(SB), Y12
	VXORPS Y11, Y11, Y11

sbloop:
	CMPQ CX, $8
	JLT sbtail
	VMOVUPS (SI), Y4
	VMOVUPS (DX), Y5
	VMOVUPS (BX), Y9
	SWIGLUBWD
	VMOVUPS Y8, (DI)
	VMOVUPS Y10, (R8)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, BX
	ADDQ $32, DI
	ADDQ $32, R8
	SUBQ $8, CX
	JMP sbloop

sbtail:
	TESTQ CX, CX
	JZ sbdone
	MASK8(Y13)
	VMASKMOVPS (SI), Y13, Y4
	VMASKMOVPS (DX), Y13, Y5
	VMASKMOVPS (BX), Y13, Y9
	SWIGLUBWD
	VMASKMOVPS Y8, Y13, (DI)
	VMASKMOVPS Y10, Y13, (R8)

sbdone:
	VZEROUPPER
	RET
