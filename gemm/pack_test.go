package gemm

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/strand-ml/strand/gemm/internal/kernels"
)

// TestPackFastPathsMatchScalar: the vector fast paths (register transposes,
// masked copies) pack exactly what the scalar loops pack, for A (panels of
// height MR) and B (panels of width NR), both transposes, full and partial
// panels, and write zeros into the padding.
func TestPackFastPathsMatchScalar(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, mk := range kernels.Available() {
		if mk.T16 == nil {
			continue
		}
		fast := newBlocked(mk)
		slowMK := mk
		slowMK.T16, slowMK.T12, slowMK.Copy = nil, nil, nil
		slow := newBlocked(slowMK)
		ld, rows := 301, 70
		src := randSlice(r, 300*ld)
		for _, kb := range []int{1, 7, 16, 37, 256} {
			for _, h := range []int{rows, mk.MR, mk.MR + 5, 3} {
				got := make([]float32, roundUp(h, mk.MR)*kb)
				want := make([]float32, len(got))
				for _, trans := range []bool{false, true} {
					clear(got)
					fast.packA(got, src, ld, trans, 3, h, 11, kb, make([]float32, 32*kb))
					slow.packA(want, src, ld, trans, 3, h, 11, kb, nil)
					for i := range got {
						if got[i] != want[i] {
							t.Fatalf("%s packA trans=%v h=%d kb=%d: [%d]=%g want %g", mk.Name, trans, h, kb, i, got[i], want[i])
						}
					}
				}
			}
			for _, w := range []int{rows - 5, mk.NR, mk.NR + 3, 1} {
				got := make([]float32, roundUp(w, mk.NR)*kb)
				want := make([]float32, len(got))
				for _, trans := range []bool{false, true} {
					for i := range got {
						got[i] = float32(math.NaN()) // padding must be written as zero
					}
					fast.packB(got, src, ld, trans, 5, kb, 2, w, make([]float32, 32*kb))
					slow.packB(want, src, ld, trans, 5, kb, 2, w, nil)
					for i := range got {
						if got[i] != want[i] {
							t.Fatalf("%s packB trans=%v w=%d kb=%d: [%d]=%g want %g", mk.Name, trans, w, kb, i, got[i], want[i])
						}
					}
				}
			}
		}
	}
}

// BenchmarkPack compares the transpose and scalar packing of a 192 x 256
// block of A (not transposed) and a 256 x 512 block of B^T.
func BenchmarkPack(b *testing.B) {
	r := rand.New(rand.NewPCG(23, 24))
	for _, mk := range kernels.Available() {
		for _, useGather := range []bool{true, false} {
			m := mk
			if !useGather {
				m.T16, m.T12, m.Copy = nil, nil, nil
			} else if m.T16 == nil {
				continue
			}
			bl := newBlocked(m)
			ld := 1024
			src := randSlice(r, 512*ld)
			dst := make([]float32, 512*256)
			name := mk.Name + map[bool]string{true: "/transpose", false: "/scalar"}[useGather]
			b.Run(name+"/A192x256", func(b *testing.B) {
				for b.Loop() {
					bl.packA(dst, src, ld, false, 0, 192, 0, 256, nil)
				}
				b.ReportMetric(float64(192*256)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
			})
			b.Run(name+"/BT256x512", func(b *testing.B) {
				for b.Loop() {
					bl.packB(dst, src, ld, true, 0, 256, 0, 512, nil)
				}
				b.ReportMetric(float64(512*256)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
			})
		}
	}
}
