package vec

import "fmt"

// Add accumulates dst[i] += src[i] (residual connections, bias and
// gradient sums). Each element is one float32 addition on every path, so
// the result is the same to the bit.
func Add(dst, src []float32) {
	if len(src) < len(dst) {
		panic(fmt.Sprintf("vec: Add source %d shorter than destination %d", len(src), len(dst)))
	}
	if len(dst) == 0 {
		return
	}
	switch {
	case useAVX512:
		addAVX512(&dst[0], &src[0], len(dst))
	case useAVX2:
		addAVX2(&dst[0], &src[0], len(dst))
	default:
		for i := range dst {
			dst[i] += src[i]
		}
	}
}
