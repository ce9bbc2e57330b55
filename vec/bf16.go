package vec

import (
	"fmt"

	"github.com/strand-ml/strand/numeric"
)

// ToBF16 rounds src to bfloat16 bit patterns in dst (ties to even, NaN kept
// quiet), exactly as numeric.BF16FromFloat32 does element by element.
func ToBF16(dst []uint16, src []float32) {
	if len(dst) < len(src) {
		panic(fmt.Sprintf("vec: ToBF16 destination %d shorter than source %d", len(dst), len(src)))
	}
	if len(src) == 0 {
		return
	}
	switch {
	case useAVX512:
		toBF16AVX512(&dst[0], &src[0], len(src))
	case useAVX2:
		toBF16AVX2(&dst[0], &src[0], len(src))
	default:
		for i, f := range src {
			dst[i] = numeric.BF16FromFloat32(f)
		}
	}
}
