package vec

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/strand-ml/strand/numeric"
)

func TestToBF16MatchesScalarRounding(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 1))
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, float32(math.Inf(1)), float32(math.Inf(-1)),
		math.Float32frombits(0x7F800001), // NaN with a low payload: must not round to Inf
		math.Float32frombits(0x3F808000), // tie, even kept half: rounds down
		math.Float32frombits(0x3F818000), // tie, odd kept half: rounds up
		math.Float32frombits(0x00000001), // smallest subnormal
		math.Float32frombits(0x7F7FFFFF), // max float: rounds to Inf
		math.Float32frombits(0x007FFFFF), 1e-40}
	for _, n := range lengths {
		src := randSlice(r, n, 100)
		copy(src, special)
		want, got := make([]uint16, n), make([]uint16, n+1)
		got[n] = 0xABCD
		for i, f := range src {
			want[i] = numeric.BF16FromFloat32(f)
		}
		ToBF16(got[:n], src)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("n=%d: bf16(%g = %#08x) = %#04x, scalar %#04x", n, src[i], math.Float32bits(src[i]), got[i], want[i])
			}
		}
		if got[n] != 0xABCD {
			t.Fatalf("n=%d: wrote past the end", n)
		}
	}
}
