//go:build amd64

package kernels

import "golang.org/x/sys/cpu"

//go:generate go run gen.go

// avx512Kernel12x32 computes a 12 x 32 tile of C; see gen.go for the contract.
//
//go:noescape
func avx512Kernel12x32(kc int, a, b, c *float32, ldc int, alpha, beta float32, load int)

// avx2Kernel6x16 computes a 6 x 16 tile of C; see gen.go for the contract.
//
//go:noescape
func avx2Kernel6x16(kc int, a, b, c *float32, ldc int, alpha, beta float32, load int)

// transpose16x16 and transpose12x16 pack 16 or 12 strided rows, 16
// columns at a time; see emitTranspose in gen.go.
//
//go:noescape
func transpose16x16(dst, src *float32, ld, blocks, dstStride, mask int)

//go:noescape
func transpose12x16(dst, src *float32, ld, blocks, dstStride, mask int)

// copyRows copies up to 32 floats per row with masks; see copy_amd64.s.
//
//go:noescape
func copyRows(dst, src *float32, ld, rows, dstStride, masks int)

func available() []Micro {
	var ks []Micro
	if cpu.X86.HasAVX512F {
		ks = append(ks, Micro{Name: "avx512", MR: 12, NR: 32, Fn: avx512Kernel12x32, T16: transpose16x16, T12: transpose12x16, Copy: copyRows})
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, Micro{Name: "avx2", MR: 6, NR: 16, Fn: avx2Kernel6x16})
	}
	return ks
}

// avx512bf16Kernel12x32 computes a 12 x 32 float32 tile of C from bf16
// panels with VDPBF16PS; see emitBF16 in gen.go for the contract (kp counts
// pairs of k).
//
//go:noescape
func avx512bf16Kernel12x32(kp int, a, b *uint16, c *float32, ldc int, alpha, beta float32, load int)

// interleave16 packs pairs of bf16 rows; see interleave_amd64.s.
//
//go:noescape
func interleave16(dst *uint32, src *uint16, ld, pairs, dstStride, masks int, idx *uint16)

func availableBF16() *MicroBF16 {
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512BF16 && cpu.X86.HasAVX512BW {
		return &MicroBF16{Name: "avx512bf16", MR: 12, NR: 32, Fn: avx512bf16Kernel12x32, Interleave: interleave16}
	}
	return nil
}
