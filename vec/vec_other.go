//go:build !amd64

package vec

const (
	useAVX512 = false
	useAVX2   = false
)

func expShiftSumAVX512(x *float32, n int, shift float32) float32       { panic("unreachable") }
func geluTanhAVX512(out, x *float32, n int)                            { panic("unreachable") }
func geluTanhBackwardAVX512(dx, x, dout *float32, n int)               { panic("unreachable") }
func geluTanhBiasAVX512(out, x, b *float32, n int)                     { panic("unreachable") }
func geluTanhBackwardBiasAVX512(dx, x, dout, db *float32, n int)       { panic("unreachable") }
func adamwAVX512(p, g, m, v *float32, n int, s *AdamWStep, gs float32) { panic("unreachable") }

func sumAVX512(x *float32, n int) float32                         { panic("unreachable") }
func sumSqDevAVX512(x *float32, n int, m float32) float32         { panic("unreachable") }
func normAffineAVX512(out, x, w, b *float32, n int, m, s float32) { panic("unreachable") }
func lnBwdDotsAVX512(dout, x, w *float32, n int, m, s float32) (float32, float32) {
	panic("unreachable")
}
func lnBwdApplyAVX512(dinp, dw, db, dout, x, w *float32, n int, m, s, dnMean, dnNormMean float32) {
	panic("unreachable")
}

func toBF16AVX512(dst *uint16, src *float32, n int) { panic("unreachable") }

func addAVX512(dst, src *float32, n int) { panic("unreachable") }

func scaleAVX512(x *float32, n int, s float32)     { panic("unreachable") }
func scaleF64AVX512(x *float32, n int, s float64)  { panic("unreachable") }
func sumSquaresAVX512(x *float32, n int) float64   { panic("unreachable") }
func maxAVX512(x *float32, n int) float32          { panic("unreachable") }
func subMulAVX512(d, p *float32, n int, c float32) { panic("unreachable") }
func lnBwdDxAVX512(dinp, dout, x, w *float32, n int, m, s, dnMean, dnNormMean float32) {
	panic("unreachable")
}
func lnBwdParamsAVX512(dw, db, dout, x *float32, n int, m, s float32) { panic("unreachable") }

func expShiftSumAVX2(x *float32, n int, shift float32) float32       { panic("unreachable") }
func geluTanhAVX2(out, x *float32, n int)                            { panic("unreachable") }
func geluTanhBackwardAVX2(dx, x, dout *float32, n int)               { panic("unreachable") }
func geluTanhBiasAVX2(out, x, b *float32, n int)                     { panic("unreachable") }
func geluTanhBackwardBiasAVX2(dx, x, dout, db *float32, n int)       { panic("unreachable") }
func adamwAVX2(p, g, m, v *float32, n int, s *AdamWStep, gs float32) { panic("unreachable") }

func sumAVX2(x *float32, n int) float32                         { panic("unreachable") }
func sumSqDevAVX2(x *float32, n int, m float32) float32         { panic("unreachable") }
func normAffineAVX2(out, x, w, b *float32, n int, m, s float32) { panic("unreachable") }
func lnBwdDotsAVX2(dout, x, w *float32, n int, m, s float32) (float32, float32) {
	panic("unreachable")
}
func lnBwdApplyAVX2(dinp, dw, db, dout, x, w *float32, n int, m, s, dnMean, dnNormMean float32) {
	panic("unreachable")
}

func toBF16AVX2(dst *uint16, src *float32, n int) { panic("unreachable") }

func addAVX2(dst, src *float32, n int) { panic("unreachable") }

func scaleAVX2(x *float32, n int, s float32)     { panic("unreachable") }
func scaleF64AVX2(x *float32, n int, s float64)  { panic("unreachable") }
func sumSquaresAVX2(x *float32, n int) float64   { panic("unreachable") }
func maxAVX2(x *float32, n int) float32          { panic("unreachable") }
func subMulAVX2(d, p *float32, n int, c float32) { panic("unreachable") }
func lnBwdDxAVX2(dinp, dout, x, w *float32, n int, m, s, dnMean, dnNormMean float32) {
	panic("unreachable")
}
func lnBwdParamsAVX2(dw, db, dout, x *float32, n int, m, s float32) { panic("unreachable") }

func swigluAVX512(out, gate, up *float32, n int)                      { panic("unreachable") }
func swigluBackwardAVX512(dgate, dup, gate, up, dout *float32, n int) { panic("unreachable") }
func swigluAVX2(out, gate, up *float32, n int)                        { panic("unreachable") }
func swigluBackwardAVX2(dgate, dup, gate, up, dout *float32, n int)   { panic("unreachable") }

func rmsScaleAVX512(out, x, w *float32, n int, s float32)       { panic("unreachable") }
func rmsBwdParamsAVX512(dw, dout, x *float32, n int, s float32) { panic("unreachable") }
func rmsScaleAVX2(out, x, w *float32, n int, s float32)         { panic("unreachable") }
func rmsBwdParamsAVX2(dw, dout, x *float32, n int, s float32)   { panic("unreachable") }

func rotateAVX512(x1, x2, cos, sin *float32, n int, dir float32) { panic("unreachable") }
func rotateAVX2(x1, x2, cos, sin *float32, n int, dir float32)   { panic("unreachable") }
