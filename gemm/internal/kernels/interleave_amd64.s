//go:build amd64

#include "textflag.h"

// func interleave16(dst *uint32, src *uint16, ld, pairs, dstStride, masks int, idx *uint16)
//
// For each of pairs pairs of rows: load up to 32 16-bit values from the even
// row (src) and the odd row (src + ld bytes), masked with zeroing, and store
// them interleaved, (even[j], odd[j]) as one 32-bit pair per column j, to
// dst (two ZMM stores, masked); then advance src by 2*ld and dst by
// dstStride bytes. masks packs, low to high: the 32-bit word load mask, the
// 16-bit store mask of pairs 0-15, the 16-bit store mask of pairs 16-31.
// idx holds 64 VPERMI2W indices: 0, 32, 1, 33, ..., 31, 63.
TEXT ·interleave16(SB), NOSPLIT, $0-56
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	MOVQ pairs+24(FP), CX
	MOVQ dstStride+32(FP), DX
	MOVQ masks+40(FP), AX
	MOVQ idx+48(FP), BX
	KMOVD AX, K1
	SHRQ $32, AX
	KMOVW AX, K2
	SHRQ $16, AX
	KMOVW AX, K3
	VMOVDQU16 (BX), Z4
	VMOVDQU16 64(BX), Z5
	TESTQ CX, CX
	JZ interleave16_done
interleave16_loop:
	VMOVDQU16.Z (SI), K1, Z0
	VMOVDQU16.Z (SI)(R8*1), K1, Z1
	VMOVDQA64 Z4, Z2
	VMOVDQA64 Z5, Z3
	VPERMI2W Z1, Z0, Z2
	VPERMI2W Z1, Z0, Z3
	VMOVDQU32 Z2, K2, (DI)
	VMOVDQU32 Z3, K3, 64(DI)
	LEAQ (SI)(R8*2), SI
	ADDQ DX, DI
	DECQ CX
	JNZ interleave16_loop
interleave16_done:
	VZEROUPPER
	RET
