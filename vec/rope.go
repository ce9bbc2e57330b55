package vec

import "fmt"

// Rotate turns the pairs (x1[i], x2[i]) by the angles whose cosines and
// sines are cos[i] and sin[i] (the RoPE rotation of one head's two halves
// at one position), in place:
//
//	x1[i], x2[i] = x1*cos - x2*s, x2*cos + x1*s   with s = dir*sin[i]
//
// dir is +1, or -1 for the inverse rotation (the backward pass). Each
// product is rounded before the sum, no fused multiply-adds, on every path:
// the same bits everywhere.
func Rotate(x1, x2, cos, sin []float32, dir float32) {
	n := len(x1)
	if len(x2) < n || len(cos) < n || len(sin) < n {
		panic(fmt.Sprintf("vec: Rotate lengths x2 %d, cos %d, sin %d for %d pairs", len(x2), len(cos), len(sin), n))
	}
	if n == 0 {
		return
	}
	switch {
	case useAVX512:
		rotateAVX512(&x1[0], &x2[0], &cos[0], &sin[0], n, dir)
	case useAVX2:
		rotateAVX2(&x1[0], &x2[0], &cos[0], &sin[0], n, dir)
	default:
		rotateGo(x1, x2, cos, sin, dir)
	}
}

func rotateGo(x1, x2, cos, sin []float32, dir float32) {
	n := len(x1)
	x2, cos, sin = x2[:n], cos[:n], sin[:n]
	for i, a := range x1 {
		b, c, s := x2[i], cos[i], dir*sin[i]
		// the conversions keep each product rounded (no fusing)
		x1[i] = float32(a*c) - float32(b*s)
		x2[i] = float32(b*c) + float32(a*s)
	}
}
