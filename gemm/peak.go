package gemm

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/strand-ml/strand/gemm/internal/kernels"
)

// PeakGFLOPS measures the float32 compute peak that MFU figures are quoted
// against: threads goroutines each run the fastest micro-kernel on
// cache-resident panels for about d (the FMA units' limit; no memory
// traffic), and the result is the sum over goroutines of each one's best
// rate over short batches, so time slices lost to other processes on a
// shared machine do not count. On CPUs without a SIMD kernel it times
// Portable on a 64x64x64 product instead. It returns ctx's error if ctx
// ends first.
func PeakGFLOPS(ctx context.Context, threads int, d time.Duration) (float64, error) {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	if d <= 0 {
		return 0, fmt.Errorf("gemm: peak measurement needs a positive duration, got %v", d)
	}
	deadline := time.Now().Add(d)
	rates := make([]float64, threads)
	var wg sync.WaitGroup
	for t := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch, flops := peakBatch()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				start := time.Now()
				batch()
				if el := time.Since(start).Seconds(); el > 0 {
					rates[t] = max(rates[t], flops/el/1e9)
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("gemm: peak measurement: %w", err)
	}
	var sum float64
	for _, r := range rates {
		sum += r
	}
	return sum, nil
}

// peakBatch returns one short unit of work (tens of microseconds) and its
// flop count, with its own buffers (one per goroutine).
func peakBatch() (func(), float64) {
	if ks := kernels.Available(); len(ks) > 0 {
		mk := ks[0]
		const kc, panels = 256, 8 // A: 8 panels in L1/L2, B: one kc x NR sliver
		a := make([]float32, mk.MR*kc*panels)
		b := make([]float32, kc*mk.NR)
		c := make([]float32, mk.MR*mk.NR)
		for i := range a {
			a[i] = 1e-3
		}
		for i := range b {
			b[i] = 1e-3
		}
		return func() {
			for s := 0; s < panels; s++ {
				mk.Fn(kc, &a[s*mk.MR*kc], &b[0], &c[0], mk.NR, 1, 1, 1)
			}
		}, 2 * float64(mk.MR*mk.NR*kc*panels)
	}
	const n = 64
	a, b, c := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	return func() { Portable(false, false, 0, n, n, n, 1, a, n, b, n, 0, c, n) }, 2 * n * n * n
}
