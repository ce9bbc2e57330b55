//go:build amd64

package vec

import "golang.org/x/sys/cpu"

// useAVX512 selects the assembly kernels. It is set once from the CPU
// features and never changed afterwards (tests compare the two paths by
// calling the Go versions directly).
var useAVX512 = cpu.X86.HasAVX512F

//go:noescape
func expShiftSumAVX512(x *float32, n int, shift float32) float32

//go:noescape
func geluTanhAVX512(out, x *float32, n int)

//go:noescape
func geluTanhBiasAVX512(out, x, b *float32, n int)

//go:noescape
func geluTanhBackwardAVX512(dx, x, dout *float32, n int)

//go:noescape
func geluTanhBackwardBiasAVX512(dx, x, dout, db *float32, n int)

//go:noescape
func adamwAVX512(p, grad, m, v *float32, n int, s *AdamWStep, gradScale float32)

//go:noescape
func sumAVX512(x *float32, n int) float32

//go:noescape
func sumSqDevAVX512(x *float32, n int, m float32) float32

//go:noescape
func normAffineAVX512(out, x, w, b *float32, n int, m, s float32)

//go:noescape
func lnBwdDotsAVX512(dout, x, w *float32, n int, m, s float32) (dnSum, dnNormSum float32)

//go:noescape
func lnBwdApplyAVX512(dinp, dw, db, dout, x, w *float32, n int, m, s, dnMean, dnNormMean float32)

//go:noescape
func toBF16AVX512(dst *uint16, src *float32, n int)

//go:noescape
func addAVX512(dst, src *float32, n int)

//go:noescape
func scaleAVX512(x *float32, n int, s float32)

//go:noescape
func scaleF64AVX512(x *float32, n int, s float64)

//go:noescape
func sumSquaresAVX512(x *float32, n int) float64

//go:noescape
func maxAVX512(x *float32, n int) float32

//go:noescape
func subMulAVX512(d, p *float32, n int, c float32)

//go:noescape
func lnBwdDxAVX512(dinp, dout, x, w *float32, n int, m, s, dnMean, dnNormMean float32)

//go:noescape
func lnBwdParamsAVX512(dw, db, dout, x *float32, n int, m, s float32)
