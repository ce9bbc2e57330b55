//go:build amd64

#include "textflag.h"

// func copyRows(dst, src *float32, ld, rows, dstStride, masks int)
//
// For each of rows rows: load up to 32 floats from src (two ZMM loads,
// masked with zeroing: lanes outside the masks read as 0 and cannot fault),
// store them to dst (masked), then advance src by ld bytes and dst by
// dstStride bytes. masks packs four 16-bit lane masks: load lanes 0-15,
// load lanes 16-31, store lanes 0-15, store lanes 16-31 (low to high).
TEXT ·copyRows(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	MOVQ rows+24(FP), CX
	MOVQ dstStride+32(FP), DX
	MOVQ masks+40(FP), AX
	KMOVW AX, K1
	SHRQ $16, AX
	KMOVW AX, K2
	SHRQ $16, AX
	KMOVW AX, K3
	SHRQ $16, AX
	KMOVW AX, K4
	TESTQ CX, CX
	JZ copyRows_done
copyRows_loop:
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z 64(SI), K2, Z1
	VMOVUPS Z0, K3, (DI)
	VMOVUPS Z1, K4, 64(DI)
	ADDQ R8, SI
	ADDQ DX, DI
	DECQ CX
	JNZ copyRows_loop
copyRows_done:
	VZEROUPPER
	RET
