package gemmbench

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/strand-ml/strand/gemm"
)

func TestPresetShapes(t *testing.T) {
	s, err := PresetShapes("gpt2s")
	if err != nil {
		t.Fatal(err)
	}
	// gpt2s: batch 4 x seq 256 = 1024 tokens, C = 384, hidden 1536.
	if got := s[1]; got.M != 1024 || got.N != 1536 || got.K != 384 {
		t.Fatalf("gpt2s fc fwd = %v, want 1024x1536x384", got)
	}
	if _, err := PresetShapes("nope"); err == nil {
		t.Fatal("unknown preset accepted")
	}
}

// BenchmarkGEMM: every shape of All(), 1 and 2 threads, the default kernel.
func BenchmarkGEMM(b *testing.B) {
	shapes, err := All()
	if err != nil {
		b.Fatal(err)
	}
	for _, threads := range []int{1, 2} {
		e := gemm.New(threads)
		for _, s := range shapes {
			b.Run(fmt.Sprintf("%s/t%d/%s", e.KernelName(), threads, s), func(b *testing.B) {
				x, y, z, lda, ldb := Operands(s, 1)
				// at 1 thread the calling goroutine does all the work:
				// pin it so its thread's CPU time is the call's
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				cpu0 := threadCPU()
				for b.Loop() {
					e.Sgemm(s.TA, s.TB, s.M, s.N, s.K, 1, x, lda, y, ldb, 0, z, s.N)
				}
				b.ReportMetric(s.Flops()*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				if threads == 1 {
					// per CPU-second: discounts time spent waiting for a
					// core on a shared machine
					b.ReportMetric(s.Flops()*float64(b.N)/(threadCPU()-cpu0)/1e9, "GFLOP/cpu-s")
				}
			})
		}
	}
}

// threadCPU is the calling thread's user+system CPU time in seconds.
func threadCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
