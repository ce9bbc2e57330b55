package vec

import (
	"math/rand/v2"
	"testing"
)

func TestAddMatchesScalarToTheBit(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 1))
	for _, n := range append(lengths, 47, 48, 63, 64, 65) {
		dst, src := randSlice(r, n+1, 1), randSlice(r, n, 1)
		want := append([]float32(nil), dst...)
		for i := 0; i < n; i++ {
			want[i] += src[i]
		}
		Add(dst[:n], src)
		for i := range want {
			if dst[i] != want[i] {
				t.Fatalf("n=%d: element %d = %g, want %g (index n must stay)", n, i, dst[i], want[i])
			}
		}
	}
}
