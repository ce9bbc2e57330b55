//go:build !amd64

package vec

const useAVX512 = false

func expShiftSumAVX512(x *float32, n int, shift float32) float32 { panic("unreachable") }
func geluTanhAVX512(out, x *float32, n int)                      { panic("unreachable") }
func geluTanhBackwardAVX512(dx, x, dout *float32, n int)         { panic("unreachable") }
func adamwAVX512(p, g, m, v *float32, n int, s *AdamWStep)       { panic("unreachable") }
