package train

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/optim"
	"github.com/strand-ml/strand/trainer"
)

// BenchmarkStep times whole single-process float32 training steps
// (forward, backward, clipping, AdamW) of the presets at 1 and 2 threads,
// in process, for profiling:
//
//	go test -run '^$' -bench 'Step/gpt2s/t1' -benchtime 8x -cpuprofile cpu.out ./bench/train/
//
// Besides ns/op it reports tokens/s and the process CPU seconds per step
// (robust on a shared machine: time spent waiting for a core is not in it).
func BenchmarkStep(b *testing.B) {
	for _, name := range []string{"tiny", "small", "gpt2s", "llama-gpt2s"} {
		for _, threads := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/t%d", name, threads), func(b *testing.B) {
				benchStep(b, name, threads)
			})
		}
	}
}

func benchStep(b *testing.B, name string, threads int) {
	cfg, err := model.Preset(name)
	if err != nil {
		b.Fatal(err)
	}
	B, T := model.PresetBatch(name), cfg.NPositions
	opts := trainer.Options{Model: cfg, Batch: B, Seq: T, Steps: 1 << 30, LR: 1e-4, GradClip: 1,
		AdamW: optim.DefaultAdamW(), Threads: threads, Precision: "fp32"}
	toks := make([]uint16, 4*B*(T+1))
	for i := range toks {
		toks[i] = uint16((i * 7919) % cfg.VocabSize)
	}
	loader, err := data.NewLoader(toks, data.LoaderConfig{Batch: B, Seq: T, DPSize: 1})
	if err != nil {
		b.Fatal(err)
	}
	tr, err := trainer.New(opts, loader, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	ctx := context.Background()
	for range 2 { // warm-up: buffers, worker pools
		if _, err := tr.TrainStep(ctx); err != nil {
			b.Fatal(err)
		}
	}
	cpu0 := cpuSeconds()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := tr.TrainStep(ctx); err != nil {
			b.Fatal(err)
		}
	}
	wall := time.Since(start).Seconds()
	b.StopTimer()
	b.ReportMetric(float64(b.N*B*T)/wall, "tok/s")
	b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/op")
}

// cpuSeconds is the process's user+system CPU time so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
