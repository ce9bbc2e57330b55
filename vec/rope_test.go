package vec

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestRotate: the exported rotation has the portable loop's bits (both
// rotate with rounded products), is within float32 rounding of the
// float64 rotation, and dir -1 undoes dir +1 up to rounding.
func TestRotate(t *testing.T) {
	r := rand.New(rand.NewPCG(70, 1))
	for _, n := range append(lengths, 32, 64) {
		x1, x2 := randSlice(r, n, 1), randSlice(r, n, 1)
		cos, sin := make([]float32, n), make([]float32, n)
		for i := range cos {
			th := r.Float64() * 2 * math.Pi
			cos[i], sin[i] = float32(math.Cos(th)), float32(math.Sin(th))
		}
		for _, dir := range []float32{1, -1} {
			a1, a2 := append([]float32(nil), x1...), append([]float32(nil), x2...)
			g1, g2 := append([]float32(nil), x1...), append([]float32(nil), x2...)
			Rotate(a1, a2, cos, sin, dir)
			rotateGo(g1, g2, cos, sin, dir)
			if i := firstBitDiff(a1, g1); i >= 0 {
				t.Fatalf("n=%d dir=%g: x1[%d] %g, portable %g", n, dir, i, a1[i], g1[i])
			}
			if i := firstBitDiff(a2, g2); i >= 0 {
				t.Fatalf("n=%d dir=%g: x2[%d] %g, portable %g", n, dir, i, a2[i], g2[i])
			}
			for i := range x1 {
				c, s := float64(cos[i]), float64(dir)*float64(sin[i])
				w1 := float64(x1[i])*c - float64(x2[i])*s
				w2 := float64(x2[i])*c + float64(x1[i])*s
				sc := math.Abs(float64(x1[i])) + math.Abs(float64(x2[i]))
				if math.Abs(float64(a1[i])-w1) > 3e-7*sc || math.Abs(float64(a2[i])-w2) > 3e-7*sc {
					t.Fatalf("n=%d dir=%g [%d]: (%g, %g), float64 (%g, %g)", n, dir, i, a1[i], a2[i], w1, w2)
				}
			}
			Rotate(a1, a2, cos, sin, -dir)
			for i := range x1 {
				sc := math.Abs(float64(x1[i])) + math.Abs(float64(x2[i]))
				if math.Abs(float64(a1[i]-x1[i])) > 1e-6*sc || math.Abs(float64(a2[i]-x2[i])) > 1e-6*sc {
					t.Fatalf("n=%d dir=%g [%d]: rotated back (%g, %g), started at (%g, %g)", n, dir, i, a1[i], a2[i], x1[i], x2[i])
				}
			}
		}
	}
}
