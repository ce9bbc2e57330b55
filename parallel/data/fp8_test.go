package data

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/strand-ml/strand/collective"
	"github.com/strand-ml/strand/transport/loopback"
)

// fp8Reduce runs an fp8-compressed Bucketer over ranks goroutines, rank r
// contributing grads[r], and returns every rank's result.
func fp8Reduce(t *testing.T, grads [][]float32, format string, zero bool) [][]float32 {
	t.Helper()
	ranks := len(grads)
	trs := loopback.New(ranks)
	ids := make([]int, ranks)
	for i := range ids {
		ids[i] = i
	}
	out := make([][]float32, ranks)
	var wg sync.WaitGroup
	for r := 0; r < ranks; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			comm, err := collective.New(trs[r], ids, collective.Options{Name: "dp"})
			if err != nil {
				t.Error(err)
				return
			}
			g := append([]float32(nil), grads[r]...)
			b, err := NewBucketer(comm, g, Options{BucketBytes: 4 * 100, FP8: format, ZeRO1: zero})
			if err != nil {
				t.Error(err)
				return
			}
			ctx := context.Background()
			b.Ready(ctx, 150)
			if err := b.Finish(ctx); err != nil {
				t.Error(err)
				return
			}
			out[r] = g
		}()
	}
	wg.Wait()
	return out
}

// TestFP8BucketsSumWithinFormatPrecision: every rank gets the same sum to
// the bit, reruns are bit-identical, and each element is within the
// formats' quantization error of the exact sum (per rank: 2^-4 relative
// for E4M3, 2^-3 for E5M2, plus the subnormal step of the bucket's scale).
func TestFP8BucketsSumWithinFormatPrecision(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 1))
	const ranks, n = 3, 437 // odd: a partial bucket and an odd code count
	grads := make([][]float32, ranks)
	for i := range grads {
		grads[i] = make([]float32, n)
		for j := range grads[i] {
			// magnitudes over several decades, as gradients have
			grads[i][j] = float32(r.NormFloat64() * math.Pow(10, -3*r.Float64()))
		}
	}
	for _, c := range []struct {
		format  string
		rel     float64
		maxCode float64
	}{{"e4m3", 1.0 / 16, 448}, {"e5m2", 1.0 / 8, 57344}} {
		for _, zero := range []bool{false, true} {
			got := fp8Reduce(t, grads, c.format, zero)
			again := fp8Reduce(t, grads, c.format, zero)
			for j := 0; j < n; j++ {
				var exact, bound float64
				b := j / 100
				for i := range grads {
					x := float64(grads[i][j])
					exact += x
					amax := 0.0
					for _, v := range grads[i][b*100 : min(n, (b+1)*100)] {
						amax = math.Max(amax, math.Abs(float64(v)))
					}
					// relative rounding, or the absolute step near zero
					bound += c.rel*math.Abs(x) + amax/c.maxCode*math.Ldexp(1, -9)
				}
				for rk := range got {
					if got[rk][j] != got[0][j] || again[rk][j] != got[0][j] {
						t.Fatalf("%s zero=%v element %d: rank %d has %g, rank 0 %g, rerun %g", c.format, zero, j, rk, got[rk][j], got[0][j], again[rk][j])
					}
				}
				if e := math.Abs(float64(got[0][j]) - exact); e > bound {
					t.Fatalf("%s element %d: fp8 sum %g, exact %g (error %.3g > bound %.3g)", c.format, j, got[0][j], exact, e, bound)
				}
			}
		}
	}
}

func TestFP8OptionsRejected(t *testing.T) {
	trs := loopback.New(1)
	comm, err := collective.New(trs[0], []int{0}, collective.Options{Name: "dp"})
	if err != nil {
		t.Fatal(err)
	}
	g := make([]float32, 10)
	if _, err := NewBucketer(comm, g, Options{FP8: "e3m4"}); err == nil {
		t.Fatal("fp8 format e3m4 accepted")
	}
	if _, err := NewBucketer(comm, g, Options{FP8: "e4m3", BF16: true}); err == nil {
		t.Fatal("fp8 and bf16 together accepted")
	}
}
