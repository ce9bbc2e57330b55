//go:build amd64

package vec

import "golang.org/x/sys/cpu"

// useAVX512 and useAVX2 select the assembly kernels: AVX-512 where the CPU
// has it, else AVX2 with FMA (Haswell and later, AMD Zen 1-3), else the
// portable Go loops. Both are set once from the CPU features and never
// changed afterwards, and at most one is true (tests compare the paths by
// calling each kernel directly).
var (
	useAVX512 = cpu.X86.HasAVX512F
	useAVX2   = !useAVX512 && cpu.X86.HasAVX2 && cpu.X86.HasFMA
)

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

// The AVX2+FMA kernels: the same contracts and the same bits as their
// AVX-512 twins above, 8 lanes per instruction.

//go:noescape
func expShiftSumAVX2(x *float32, n int, shift float32) float32

//go:noescape
func geluTanhAVX2(out, x *float32, n int)

//go:noescape
func geluTanhBiasAVX2(out, x, b *float32, n int)

//go:noescape
func geluTanhBackwardAVX2(dx, x, dout *float32, n int)

//go:noescape
func geluTanhBackwardBiasAVX2(dx, x, dout, db *float32, n int)

//go:noescape
func adamwAVX2(p, grad, m, v *float32, n int, s *AdamWStep, gradScale float32)

//go:noescape
func sumAVX2(x *float32, n int) float32

//go:noescape
func sumSqDevAVX2(x *float32, n int, m float32) float32

//go:noescape
func normAffineAVX2(out, x, w, b *float32, n int, m, s float32)

//go:noescape
func lnBwdDotsAVX2(dout, x, w *float32, n int, m, s float32) (dnSum, dnNormSum float32)

//go:noescape
func lnBwdApplyAVX2(dinp, dw, db, dout, x, w *float32, n int, m, s, dnMean, dnNormMean float32)

//go:noescape
func toBF16AVX2(dst *uint16, src *float32, n int)

//go:noescape
func addAVX2(dst, src *float32, n int)

//go:noescape
func scaleAVX2(x *float32, n int, s float32)

//go:noescape
func scaleF64AVX2(x *float32, n int, s float64)

//go:noescape
func sumSquaresAVX2(x *float32, n int) float64

//go:noescape
func maxAVX2(x *float32, n int) float32

//go:noescape
func subMulAVX2(d, p *float32, n int, c float32)

//go:noescape
func lnBwdDxAVX2(dinp, dout, x, w *float32, n int, m, s, dnMean, dnNormMean float32)

//go:noescape
func lnBwdParamsAVX2(dw, db, dout, x *float32, n int, m, s float32)

//go:noescape
func swigluAVX512(out, gate, up *float32, n int)

//go:noescape
func swigluBackwardAVX512(dgate, dup, gate, up, dout *float32, n int)

//go:noescape
func swigluAVX2(out, gate, up *float32, n int)

//go:noescape
func swigluBackwardAVX2(dgate, dup, gate, up, dout *float32, n int)

//go:noescape
func rmsScaleAVX512(out, x, w *float32, n int, s float32)

//go:noescape
func rmsBwdParamsAVX512(dw, dout, x *float32, n int, s float32)

//go:noescape
func rmsScaleAVX2(out, x, w *float32, n int, s float32)

//go:noescape
func rmsBwdParamsAVX2(dw, dout, x *float32, n int, s float32)

//go:noescape
func rotateAVX512(x1, x2, cos, sin *float32, n int, dir float32)

//go:noescape
func rotateAVX2(x1, x2, cos, sin *float32, n int, dir float32)
