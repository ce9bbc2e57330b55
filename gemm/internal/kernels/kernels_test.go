package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestMicroKernels checks each micro-kernel alone against a float64 sum,
// for load = 0 (C not read, may hold NaN) and load = 1, and a padded ldc
// whose padding must survive.
func TestMicroKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, mk := range Available() {
		for _, kc := range []int{0, 1, 2, 3, 17, 256} {
			for _, load := range []int{0, 1} {
				a := make([]float32, mk.MR*kc+1)
				b := make([]float32, mk.NR*kc+1)
				for i := range a {
					a[i] = float32(r.NormFloat64())
				}
				for i := range b {
					b[i] = float32(r.NormFloat64())
				}
				ldc := mk.NR + 5
				c := make([]float32, mk.MR*ldc)
				for i := range c {
					c[i] = float32(r.NormFloat64())
					if load == 0 && i%ldc < mk.NR {
						c[i] = float32(math.NaN())
					}
				}
				orig := append([]float32(nil), c...)
				alpha, beta := float32(0.5), float32(-2)
				mk.Fn(kc, &a[0], &b[0], &c[0], ldc, alpha, beta, load)
				for i := 0; i < mk.MR; i++ {
					for j := 0; j < ldc; j++ {
						got := c[i*ldc+j]
						if j >= mk.NR {
							if got != orig[i*ldc+j] {
								t.Fatalf("%s kc=%d: padding C[%d,%d] overwritten", mk.Name, kc, i, j)
							}
							continue
						}
						var s, mag float64
						for p := 0; p < kc; p++ {
							x := float64(a[p*mk.MR+i]) * float64(b[p*mk.NR+j])
							s += x
							mag += math.Abs(x)
						}
						want := float64(alpha) * s
						if load == 1 {
							want += float64(beta) * float64(orig[i*ldc+j])
							mag += math.Abs(float64(beta) * float64(orig[i*ldc+j]))
						}
						if d := math.Abs(float64(got) - want); !(d <= float64(kc+2)*0x1p-23*mag+1e-30) {
							t.Fatalf("%s kc=%d load=%d: C[%d,%d]=%g want %g", mk.Name, kc, load, i, j, got, want)
						}
					}
				}
			}
		}
	}
}

// BenchmarkMicro runs each micro-kernel on L1/L2-resident panels: the
// ceiling the blocked GEMM can reach.
func BenchmarkMicro(b *testing.B) {
	for _, mk := range Available() {
		b.Run(mk.Name, func(b *testing.B) {
			kc := 256
			a := make([]float32, mk.MR*kc*16)
			bb := make([]float32, mk.NR*kc)
			c := make([]float32, mk.MR*mk.NR)
			for b.Loop() {
				for s := 0; s < 16; s++ {
					mk.Fn(kc, &a[s*mk.MR*kc], &bb[0], &c[0], mk.NR, 1, 1, 1)
				}
			}
			b.ReportMetric(2*float64(mk.MR*mk.NR*kc*16)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// TestMicroBF16 checks the bf16 micro-kernel against a float64 sum of the
// same bf16 products, with odd and even pair counts, load 0 and 1.
func TestMicroBF16(t *testing.T) {
	mk := AvailableBF16()
	if mk == nil {
		t.Skip("no AVX512-BF16 on this CPU")
	}
	r := rand.New(rand.NewPCG(2, 2))
	bf := func() uint16 { return uint16(math.Float32bits(float32(r.NormFloat64())) >> 16) }
	val := func(h uint16) float64 { return float64(math.Float32frombits(uint32(h) << 16)) }
	for _, kp := range []int{0, 1, 2, 7, 192} {
		for _, load := range []int{0, 1} {
			a := make([]uint16, mk.MR*2*kp+2)
			b := make([]uint16, mk.NR*2*kp+2)
			for i := range a {
				a[i] = bf()
			}
			for i := range b {
				b[i] = bf()
			}
			ldc := mk.NR + 3
			c := make([]float32, mk.MR*ldc)
			for i := range c {
				c[i] = float32(r.NormFloat64())
				if load == 0 && i%ldc < mk.NR {
					c[i] = float32(math.NaN())
				}
			}
			orig := append([]float32(nil), c...)
			alpha, beta := float32(1.5), float32(0.5)
			mk.Fn(kp, &a[0], &b[0], &c[0], ldc, alpha, beta, load)
			for i := 0; i < mk.MR; i++ {
				for j := 0; j < ldc; j++ {
					got := c[i*ldc+j]
					if j >= mk.NR {
						if got != orig[i*ldc+j] {
							t.Fatalf("kp=%d: padding C[%d,%d] overwritten", kp, i, j)
						}
						continue
					}
					var s, mag float64
					for q := 0; q < kp; q++ {
						for h := 0; h < 2; h++ {
							x := val(a[(q*mk.MR+i)*2+h]) * val(b[(q*mk.NR+j)*2+h])
							s += x
							mag += math.Abs(x)
						}
					}
					want := float64(alpha) * s
					if load == 1 {
						want += float64(beta) * float64(orig[i*ldc+j])
						mag += math.Abs(float64(beta) * float64(orig[i*ldc+j]))
					}
					if d := math.Abs(float64(got) - want); !(d <= float64(2*kp+2)*0x1p-23*mag*2+1e-30) {
						t.Fatalf("kp=%d load=%d: C[%d,%d]=%g want %g", kp, load, i, j, got, want)
					}
				}
			}
		}
	}
}

// BenchmarkMicroBF16 runs the bf16 micro-kernel on L1/L2-resident panels.
func BenchmarkMicroBF16(b *testing.B) {
	mk := AvailableBF16()
	if mk == nil {
		b.Skip("no AVX512-BF16 on this CPU")
	}
	kp := 192
	a := make([]uint16, mk.MR*2*kp*16)
	bb := make([]uint16, mk.NR*2*kp)
	c := make([]float32, mk.MR*mk.NR)
	for b.Loop() {
		for s := 0; s < 16; s++ {
			mk.Fn(kp, &a[s*mk.MR*2*kp], &bb[0], &c[0], mk.NR, 1, 1, 1)
		}
	}
	b.ReportMetric(2*float64(mk.MR*mk.NR*2*kp*16)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}
