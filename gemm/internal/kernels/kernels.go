package kernels

// Func is the signature shared by all micro-kernels. a points at a packed
// MR x kc panel of A (MR values per k step), b at a packed kc x NR panel of B
// (NR values per k step), c at the top-left element of an MR x NR tile of C
// with row stride ldc (elements). The kernel sums over k in order, one FMA
// per step, then stores C = alpha*acc when load == 0 (C is not read, so
// garbage or NaN in C does not leak through) or C = alpha*acc + beta*C.
//
// The caller guarantees kc >= 0 and that all three regions are in bounds;
// the kernels do no checking of their own.
type Func func(kc int, a, b, c *float32, ldc int, alpha, beta float32, load int)

// Transpose is the signature of the packing transposes; see Micro.
type Transpose func(dst, src *float32, ld, blocks, dstStride, mask int)

// Micro describes one micro-kernel: its name (for logs), its tile shape and
// the function.
type Micro struct {
	Name   string
	MR, NR int
	Fn     Func
	// T16 and T12, when non-nil (AVX-512), pack 16 or 12 rows of a
	// row-major matrix transposed: for each of blocks blocks of 16 columns,
	// rows x 16 floats (row j at src + j*ld bytes) are transposed in
	// registers and column p is stored at dst + p*dstStride bytes, only the
	// lanes set in mask. The caller checks bounds.
	T16, T12 Transpose
	// Copy, when non-nil (AVX-512), copies rows of up to 32 floats: for each
	// of rows rows, src (advancing ld bytes per row) to dst (dstStride
	// bytes), with lanes outside the load masks read as zero. masks packs
	// four 16-bit lane masks, low to high: load 0-15, load 16-31, store 0-15,
	// store 16-31. The caller checks bounds.
	Copy func(dst, src *float32, ld, rows, dstStride, masks int)
}

// Available lists the micro-kernels this CPU (and OS) can run, fastest
// first. It is empty on CPUs without AVX2+FMA and on other architectures.
func Available() []Micro { return available() }

// FuncBF16 is the signature of the bf16 micro-kernels: like Func, but a and
// b are packed bf16 panels in k pairs (a: for each pair, MR rows x 2 values;
// b: for each pair, NR columns x 2 values) and kp counts pairs. Products
// are summed in float32.
type FuncBF16 func(kp int, a, b *uint16, c *float32, ldc int, alpha, beta float32, load int)

// MicroBF16 describes a bf16 micro-kernel.
type MicroBF16 struct {
	Name   string
	MR, NR int
	Fn     FuncBF16
	// Interleave packs pairs of bf16 rows: for each of pairs row pairs
	// (even row at src, odd row ld bytes further, next pair 2*ld further),
	// up to 32 columns j become dst pairs (even[j], odd[j]), dstStride bytes
	// per row pair. masks packs, low to high, the 32-bit column load mask and
	// two 16-bit pair store masks; idx is InterleaveIndex. The caller checks
	// bounds.
	Interleave func(dst *uint32, src *uint16, ld, pairs, dstStride, masks int, idx *uint16)
}

// InterleaveIndex returns the VPERMI2W indices Interleave needs:
// 0, 32, 1, 33, ..., 31, 63.
func InterleaveIndex() [64]uint16 {
	var x [64]uint16
	for j := range 32 {
		x[2*j], x[2*j+1] = uint16(j), uint16(32+j)
	}
	return x
}

// AvailableBF16 returns the bf16 micro-kernel this CPU can run (AVX512-BF16),
// or nil.
func AvailableBF16() *MicroBF16 { return availableBF16() }
